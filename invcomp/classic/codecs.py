"""The codecs the benchmark compares against: real libraries behind one small contract.

Each :class:`ClassicCodec` turns an RGB PIL image and a quality setting into the *whole file* it
would write (``bytes``) and decodes such bytes back to RGB. Pillow codes PNG, JPEG, WebP, AVIF and
JPEG 2000; pillow-heif codes HEIF (HEVC intra via x265, the stand-in for BPG); pillow-jxl-plugin codes
JPEG XL; ``thumbhash`` and ``blurhash`` are the placeholders of :mod:`invcomp.classic.placeholders`; ``kmeans`` is the
K=4 palette reference of :mod:`invcomp.classic.kmeans`; ``compressai-*`` are the learned peers of
:mod:`invcomp.nets.peers` (CompressAI models trained on the same faces). No codec here is hand-written.

Encoder options favour the other codecs (the strongest baseline): JPEG with optimised Huffman
tables, WebP at ``method=6``, JPEG 2000 as a bare codestream (no JP2 boxes) with the 9/7 wavelet,
JPEG XL as a bare codestream at effort 5 (its best SSIM at equal bytes on 64-px faces, from 250 to 600 B;
effort 9 writes the smallest files, 191 B at quality 0 against 219 B, but has lower SSIM at equal bytes:
``experiments/jpegxl_effort.py``).
"""
from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import Any, Callable, Optional

import PIL
from PIL import Image, features

from invcomp.errors import InvcompError
from invcomp.classic import kmeans
from invcomp.classic.search import Knob

log = logging.getLogger(__name__)

INVCOMP = "invcomp"
BENCH_EXTRA = "pip install .[bench]"


@dataclass(frozen=True)
class ClassicCodec:
    """A codec: ``encode(img, setting) -> file bytes`` and ``decode(bytes) -> RGB image``.

    ``fixed`` is the fixed-quality sweep (``(None,)`` for codecs without a knob); ``knob`` is what the
    equal-bytes search may turn (``None``: the codec has one operating point); ``knob_name`` names it.
    ``unavailable()`` returns ``None`` when the codec can run here, else a one-line reason.
    """

    name: str
    description: str
    encode: Callable[[Image.Image, Optional[float]], bytes]
    decode: Callable[[bytes], Image.Image]
    fixed: tuple[Optional[float], ...]
    knob: Optional[Knob]
    knob_name: str
    unavailable: Callable[[], Optional[str]]
    label: Optional[Callable[[Optional[float]], str]] = None
    placeholder: bool = False  # decodes to its own small picture, scaled to the coded size as a page would

    def setting_label(self, q: Optional[float]) -> str:
        """A short label for one setting, e.g. ``quality=10``, ``ratio=400``, ``lambda=0.002`` or ``default``."""
        if self.label is not None:
            return self.label(q)
        if q is None:
            return "default"
        return f"{self.knob_name}={q:g}"


def _save(img: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def _open(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img.convert("RGB")


def _pillow(feature: str, label: str, is_codec: bool = False) -> Callable[[], Optional[str]]:
    def check() -> Optional[str]:
        ok = features.check_codec(feature) if is_codec else features.check(feature)
        return None if ok else f"Pillow {PIL.__version__} was built without {label} support"
    return check


def _heif_module() -> Any:
    """pillow-heif, imported lazily and registered with Pillow; :class:`InvcompError` when missing."""
    try:
        import pillow_heif
    except ImportError:
        raise InvcompError(f"codec heif needs pillow-heif, which is not installed ({BENCH_EXTRA})") from None
    pillow_heif.register_heif_opener()
    return pillow_heif


def _heif_unavailable() -> Optional[str]:
    try:
        mod = _heif_module()
    except InvcompError as e:
        return str(e)
    if not mod.libheif_info().get("HEIF"):
        return f"codec heif: libheif {mod.libheif_info().get('libheif')} in pillow-heif has no HEVC encoder"
    return None


def _heif_encode(img: Image.Image, q: Optional[float]) -> bytes:
    _heif_module()
    return _save(img, "HEIF", quality=int(q if q is not None else 50))


def _heif_decode(data: bytes) -> Image.Image:
    _heif_module()
    return _open(data)


def _version(feature: str) -> str:
    try:
        return str(features.version(feature) or "?")
    except ValueError:
        return "?"


def _heif_description() -> str:
    try:
        import pillow_heif
    except ImportError:
        return "HEIF (HEVC intra) via pillow-heif (not installed)"
    info = pillow_heif.libheif_info()
    return f"HEIF (HEVC intra, stand-in for BPG) via pillow-heif {pillow_heif.__version__}, libheif {info.get('libheif')}, {info.get('HEIF')}"


def _always() -> Optional[str]:
    return None


JXL_EFFORT = 5


def _jxl_unavailable() -> Optional[str]:
    try:
        import pillow_jxl  # noqa: F401  (registers the JXL format with Pillow)
    except ImportError:
        return f"codec jpegxl needs pillow-jxl-plugin, which is not installed ({BENCH_EXTRA})"
    return None


def _jxl_ready() -> None:
    reason = _jxl_unavailable()
    if reason:
        raise InvcompError(reason)


def _jxl_encode(img: Image.Image, q: Optional[float]) -> bytes:
    _jxl_ready()
    return _save(img, "JXL", quality=int(q if q is not None else 75), effort=JXL_EFFORT, use_container=False)


def _jxl_decode(data: bytes) -> Image.Image:
    _jxl_ready()
    return _open(data)


def _jxl_description() -> str:
    try:
        import importlib.metadata as md

        v = md.version("pillow-jxl-plugin")
    except Exception:  # noqa: BLE001
        v = "(not installed)"
    return f"JPEG XL codestream via pillow-jxl-plugin {v} (libjxl), effort {JXL_EFFORT}, no container"


def _tiny_codecs() -> list[ClassicCodec]:
    from invcomp.classic import placeholders as tiny

    return [
        ClassicCodec("thumbhash", "ThumbHash (encoder: thumbhash-py): the binary hash (~25 B), decoded at <= 32 px and "
                     "scaled up bilinearly", tiny.thumbhash_encode, tiny.thumbhash_decode, (None,), None, "",
                     lambda: tiny.unavailable("thumbhash"), placeholder=True),
        ClassicCodec("blurhash", f"BlurHash (blurhash package): the base83 string, n x n components of a "
                     f"{tiny.BLURHASH_SIDE}-px copy, decoded at {tiny.BLURHASH_SIDE} px and scaled up bilinearly",
                     tiny.blurhash_encode, tiny.blurhash_decode, (3, 4, 5, 6, 9), Knob(1, 9), "components",
                     lambda: tiny.unavailable("blurhash"), placeholder=True),
    ]


def _peer_codecs() -> list[ClassicCodec]:
    from invcomp.nets import peers as learned

    out = []
    for fam in learned.read_manifest().values():
        n = len(fam.models)
        out.append(ClassicCodec(fam.name, fam.describe(), lambda im, q, f=fam: learned.encode(f, im, q),
                                lambda d, f=fam: learned.decode(f, d), tuple(range(n)), Knob(0, n - 1), "model",
                                learned.compressai_unavailable, label=fam.label))
    return out


def build_codecs() -> dict[str, ClassicCodec]:
    """All classic codecs by name (whether or not each is available here)."""
    pv = PIL.__version__
    return {c.name: c for c in (
        ClassicCodec("png", f"PNG (Pillow {pv}, zlib {_version('zlib')}, optimize=True), lossless",
                     lambda im, q: _save(im, "PNG", optimize=True), _open, (None,), None, "",
                     _pillow("zlib", "PNG (zlib)", True)),
        ClassicCodec("jpeg", f"JPEG (Pillow {pv}, libjpeg {_version('jpg')}, 4:2:0, optimize=True)",
                     lambda im, q: _save(im, "JPEG", quality=int(q if q is not None else 75), optimize=True), _open,
                     (1, 5, 10, 20, 30, 50, 75, 90), Knob(1, 95), "quality", _pillow("jpg", "JPEG", True)),
        ClassicCodec("webp", f"WebP lossy (Pillow {pv}, libwebp {_version('webp')}, method=6)",
                     lambda im, q: _save(im, "WEBP", quality=int(q if q is not None else 75), method=6), _open,
                     (0, 5, 10, 25, 50, 75, 90), Knob(0, 100), "quality", _pillow("webp", "WebP")),
        ClassicCodec("avif", f"AVIF (Pillow {pv}, libavif {_version('avif')}, speed 6)",
                     lambda im, q: _save(im, "AVIF", quality=int(q if q is not None else 75)), _open,
                     (0, 10, 25, 50, 75), Knob(0, 100), "quality", _pillow("avif", "AVIF (libavif)")),
        ClassicCodec("jpeg2000", f"JPEG 2000 codestream (Pillow {pv}, OpenJPEG {_version('jpg_2000')}, 9/7 wavelet, "
                                 "quality_mode=rates: setting = compression ratio)",
                     lambda im, q: _save(im, "JPEG2000", quality_mode="rates", quality_layers=[float(q if q is not None else 100)],
                                         irreversible=True, no_jp2=True), _open,
                     (400, 200, 100, 50, 25, 10), Knob(1000.0, 1.0, integer=False, log=True), "ratio",
                     _pillow("jpg_2000", "JPEG 2000 (OpenJPEG)", True)),
        ClassicCodec("heif", _heif_description(), _heif_encode, _heif_decode, (0, 10, 25, 50, 75), Knob(0, 100),
                     "quality", _heif_unavailable),
        ClassicCodec("jpegxl", _jxl_description(), _jxl_encode, _jxl_decode, (0, 10, 25, 50, 75), Knob(0, 99), "quality",
                     _jxl_unavailable),
        ClassicCodec("kmeans", f"K={kmeans.K} colour palette (scipy k-means, seed 0) + {kmeans.BITS} bits/pixel, "
                               "4-byte size header", lambda im, q: kmeans.encode(im), kmeans.decode, (None,), None, "",
                     _always),
        *_tiny_codecs(),
        *_peer_codecs(),
    )}


CLASSIC_NAMES = ("png", "jpeg", "webp", "avif", "jpeg2000", "heif", "jpegxl", "kmeans", "thumbhash", "blurhash")
CODEC_NAMES = CLASSIC_NAMES + (INVCOMP,)


def peer_names() -> tuple[str, ...]:
    """The learned peers shipped (or in ``$INVCOMP_PRETRAINED/peers``), e.g. ``compressai-hyperprior``."""
    from invcomp.nets.peers import read_manifest

    return tuple(read_manifest())


def parse_codecs(spec: str) -> list[str]:
    """A comma list of codec names (``all`` for every one) -> names in the given order, deduplicated.

    ``invcomp`` is invcomp with the default model and settings (what ``invcomp encode`` does);
    ``invcomp:SPEC`` is any model spec :func:`invcomp.codecs.load_codec` takes (``invcomp:vaegan-utkface64-c4``,
    ``invcomp:MODE:MODEL``).

    Raises :class:`InvcompError` naming an unknown codec and the known ones.
    """
    names: list[str] = []
    known = CLASSIC_NAMES + peer_names() + (INVCOMP,)
    for raw in spec.split(","):
        name = raw.strip()
        if name.lower().startswith(INVCOMP + ":"):  # invcomp:SPEC, any codec that invcomp.codecs.load_codec loads
            if len(name) == len(INVCOMP) + 1:
                raise InvcompError(f"{name!r} names no model; use invcomp:MODEL, e.g. invcomp:dcgan-utkface64")
            names.append(INVCOMP + name[len(INVCOMP):])
            continue
        name = name.lower()
        if not name:
            continue
        if name == "all":
            names.extend(known)
            continue
        if name not in known:
            raise InvcompError(f"unknown codec {raw.strip()!r}; choose from {', '.join(known)}, invcomp:MODEL "
                               "(or all)")
        names.append(name)
    if not names:
        raise InvcompError(f"--codecs is empty; choose from {', '.join(known)} (or all)")
    return list(dict.fromkeys(names))


def check_available(codec: ClassicCodec) -> Optional[str]:
    """``None`` when ``codec`` works here, else a reason: its library check, then a tiny encode/decode
    round trip (which also warms the encoder up so that the first timed call is not an outlier)."""
    reason = codec.unavailable()
    if reason is not None:
        return reason
    probe = Image.new("RGB", (16, 16), (120, 60, 30))
    try:
        out = codec.decode(codec.encode(probe, codec.fixed[0]))
    except InvcompError as e:
        return str(e)
    except Exception as e:  # a library present but broken
        return f"codec {codec.name}: probe encode/decode failed ({type(e).__name__}: {str(e)[:120]})"
    if out.size != probe.size and not codec.placeholder:
        return f"codec {codec.name}: probe decoded to {out.size}, not {probe.size}"
    return None


def is_invcomp(name: str) -> bool:
    """True for ``invcomp`` and ``invcomp:SPEC`` entries of :func:`parse_codecs`."""
    return name == INVCOMP or name.startswith(INVCOMP + ":")
