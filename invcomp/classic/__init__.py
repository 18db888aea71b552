"""The classic codecs (JPEG, WebP, AVIF, JPEG XL, HEIF, K-means) and the placeholder codes (ThumbHash, BlurHash) behind
one small contract: used by faces/ and bench/."""
