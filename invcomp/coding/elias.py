"""Elias gamma, delta and omega codes (pure, bit-exact).

Codes are strings of ``'0'``/``'1'`` characters, MSB first (fast enough for
latent-sized payloads: base-2 ``int`` conversions are linear time).

Definitions (as on Wikipedia), for an integer ``n >= 1`` with
``N = floor(log2 n)``:

- gamma: ``N`` zeros, then the ``N + 1`` binary digits of ``n``.
  ``gamma(5) = "00101"``.
- delta: ``gamma(N + 1)``, then the ``N`` low binary digits of ``n``
  (``n`` without its leading one). ``delta(10) = "00100010"``.
- omega: starting from ``"0"``, repeatedly prepend the binary digits of
  ``n`` and set ``n`` to their count minus one, until ``n == 1``.
  ``omega(4) = "101000"``.

Decoders never build values above :data:`MAX_VALUE`: a code that declares a
larger value raises :class:`~invcomp.errors.BitstreamError` before reading it.

Signed levels (:func:`encode_levels`) are written as ``Elias(|q| + 1)``
followed, for ``q != 0`` only, by one sign bit (``'1'`` = negative).
"""
from __future__ import annotations

import math
import operator
from collections import Counter
from typing import Callable, Sequence

from invcomp.errors import BitstreamError, InvcompError

CODERS: tuple[str, ...] = ("gamma", "delta", "omega")
MAX_VALUE: int = 2**40
_MAX_EXP: int = MAX_VALUE.bit_length() - 1  # floor(log2 MAX_VALUE) == 40


def _positive(n: int) -> int:
    """``n`` as a plain int; ``ValueError`` unless ``n >= 1``."""
    n = operator.index(n)
    if n < 1:
        raise ValueError(f"Elias codes are defined for integers >= 1, got {n}")
    return n


def _bin(bits: str, start: int, end: int) -> int:
    """The binary number ``bits[start:end]``; ``BitstreamError`` on non-binary characters."""
    chunk = bits[start:end]
    if chunk.strip("01"):
        raise BitstreamError(f"bit string contains characters other than '0'/'1' near index {start}")
    return int(chunk, 2)


def _check_pos(bits: str, pos: int) -> None:
    """``BitstreamError`` unless ``0 <= pos < len(bits)``."""
    if pos < 0:
        raise BitstreamError(f"negative bit position {pos}")
    if pos >= len(bits):
        raise BitstreamError(f"bitstream ended at bit {len(bits)} while reading an Elias code at bit {pos}")


def encode_gamma(n: int) -> str:
    """Elias gamma code of ``n >= 1``."""
    b = format(_positive(n), "b")
    return "0" * (len(b) - 1) + b


def encode_delta(n: int) -> str:
    """Elias delta code of ``n >= 1``."""
    b = format(_positive(n), "b")
    return encode_gamma(len(b)) + b[1:]


def encode_omega(n: int) -> str:
    """Elias omega code of ``n >= 1``."""
    n = _positive(n)
    groups = ["0"]
    while n > 1:
        b = format(n, "b")
        groups.append(b)
        n = len(b) - 1
    return "".join(reversed(groups))


def decode_gamma(bits: str, pos: int) -> tuple[int, int]:
    """Decode one gamma code at ``bits[pos:]``; returns ``(value, new_pos)``."""
    _check_pos(bits, pos)
    one = bits.find("1", pos, pos + _MAX_EXP + 1)
    if one < 0:
        if pos + _MAX_EXP + 1 > len(bits) and not bits[pos:].strip("0"):
            raise BitstreamError(f"bitstream ended inside the gamma prefix starting at bit {pos}")
        raise BitstreamError(
            f"gamma code at bit {pos} declares more than {_MAX_EXP} length bits (value above 2**{_MAX_EXP})"
        )
    if bits[pos:one].strip("0"):
        raise BitstreamError(f"bit string contains characters other than '0'/'1' near index {pos}")
    end = 2 * one - pos + 1
    if end > len(bits):
        raise BitstreamError(f"bitstream ended inside the gamma code starting at bit {pos}")
    value = _bin(bits, one, end)
    if value > MAX_VALUE:
        raise BitstreamError(f"gamma code at bit {pos} decodes to {value}, above the cap 2**{_MAX_EXP}")
    return value, end


def decode_delta(bits: str, pos: int) -> tuple[int, int]:
    """Decode one delta code at ``bits[pos:]``; returns ``(value, new_pos)``."""
    width, mid = decode_gamma(bits, pos)
    if width - 1 > _MAX_EXP:
        raise BitstreamError(
            f"delta code at bit {pos} declares {width} value bits (value above 2**{_MAX_EXP})"
        )
    end = mid + width - 1
    if end > len(bits):
        raise BitstreamError(f"bitstream ended inside the delta code starting at bit {pos}")
    value = (1 << (width - 1)) | (_bin(bits, mid, end) if end > mid else 0)
    if value > MAX_VALUE:
        raise BitstreamError(f"delta code at bit {pos} decodes to {value}, above the cap 2**{_MAX_EXP}")
    return value, end


def decode_omega(bits: str, pos: int) -> tuple[int, int]:
    """Decode one omega code at ``bits[pos:]``; returns ``(value, new_pos)``."""
    start = pos
    _check_pos(bits, pos)
    n = 1
    size = len(bits)
    while True:
        if pos >= size:
            raise BitstreamError(f"bitstream ended inside the omega code starting at bit {start}")
        bit = bits[pos]
        if bit == "0":
            return n, pos + 1
        if bit != "1":
            raise BitstreamError(f"bit string contains characters other than '0'/'1' near index {pos}")
        if n > _MAX_EXP:  # the next group has n + 1 bits, so its value is >= 2**n
            raise BitstreamError(f"omega code at bit {start} exceeds the cap 2**{_MAX_EXP}")
        end = pos + n + 1
        if end > size:
            raise BitstreamError(f"bitstream ended inside the omega code starting at bit {start}")
        n = _bin(bits, pos, end)
        if n > MAX_VALUE:
            raise BitstreamError(f"omega code at bit {start} decodes to {n}, above the cap 2**{_MAX_EXP}")
        pos = end


_ENCODERS: dict[str, Callable[[int], str]] = {"gamma": encode_gamma, "delta": encode_delta, "omega": encode_omega}
_DECODERS: dict[str, Callable[[str, int], tuple[int, int]]] = {
    "gamma": decode_gamma, "delta": decode_delta, "omega": decode_omega,
}


def _check_coder(coder: str) -> None:
    """``InvcompError`` unless ``coder`` is one of :data:`CODERS`."""
    if coder not in CODERS:
        raise InvcompError(f"unknown Elias coder {coder!r}; use one of {CODERS}")


def code_length(n: int, coder: str) -> int:
    """Number of bits of the ``coder`` code of ``n >= 1``, computed arithmetically."""
    _check_coder(coder)
    n = _positive(n)
    exp = n.bit_length() - 1
    if coder == "gamma":
        return 2 * exp + 1
    if coder == "delta":
        return 2 * (exp + 1).bit_length() - 1 + exp
    total = 1
    while n > 1:
        width = n.bit_length()
        total += width
        n = width - 1
    return total


def bits_to_bytes(bits: str) -> bytes:
    """Pack a ``'0'/'1'`` string MSB-first, zero-padded at the end to a whole byte."""
    nbytes = (len(bits) + 7) // 8
    if nbytes == 0:
        return b""
    padded = bits + "0" * (8 * nbytes - len(bits))
    if padded.strip("01"):
        raise ValueError("bit string contains characters other than '0'/'1'")
    return int(padded, 2).to_bytes(nbytes, "big")


def bytes_to_bits(data: bytes, nbits: int) -> str:
    """The first ``nbits`` bits of ``data``, MSB-first, as a ``'0'/'1'`` string."""
    if nbits < 0 or nbits > 8 * len(data):
        raise BitstreamError(f"payload of {len(data)} bytes cannot hold {nbits} bits")
    if nbits == 0:
        return ""
    return format(int.from_bytes(data, "big"), f"0{8 * len(data)}b")[:nbits]


def encode_levels(levels: Sequence[int], coder: str) -> tuple[bytes, int]:
    """Code signed levels as ``Elias(|q|+1)`` plus a sign bit for ``q != 0``; returns ``(payload, nbits)``."""
    _check_coder(coder)
    encode = _ENCODERS[coder]
    cache: dict[int, str] = {}
    parts: list[str] = []
    for q in levels:
        q = int(q)
        code = cache.get(q)
        if code is None:
            code = encode(abs(q) + 1) + ("" if q == 0 else ("1" if q < 0 else "0"))
            cache[q] = code
        parts.append(code)
    bits = "".join(parts)
    return bits_to_bytes(bits), len(bits)


def decode_levels(data: bytes, nbits: int, count: int, coder: str, max_level: int) -> list[int]:
    """Inverse of :func:`encode_levels`: read exactly ``count`` levels using exactly ``nbits`` bits."""
    _check_coder(coder)
    if count < 0:
        raise BitstreamError(f"negative level count {count}")
    decode = _DECODERS[coder]
    bits = bytes_to_bits(data, nbits)
    out: list[int] = []
    pos = 0
    for i in range(count):
        value, pos = decode(bits, pos)
        mag = value - 1
        if mag > max_level:
            raise BitstreamError(f"level {i} has magnitude {mag}, above the maximum {max_level}")
        if mag:
            if pos >= nbits:
                raise BitstreamError(f"bitstream ended before the sign bit of level {i}")
            if bits[pos] == "1":
                mag = -mag
            pos += 1
        out.append(mag)
    if pos != nbits:
        raise BitstreamError(f"levels used {pos} bits but the payload declares {nbits}")
    return out


def best_coder(levels: Sequence[int]) -> str:
    """The coder of :data:`CODERS` giving the fewest bits for ``levels`` (ties: first in order)."""
    counts = Counter(abs(int(q)) + 1 for q in levels)
    totals = [sum(c * code_length(v, coder) for v, c in counts.items()) for coder in CODERS]
    return CODERS[totals.index(min(totals))]


def empirical_entropy_bits(levels: Sequence[int]) -> float:
    """``N * H`` with ``H`` the Shannon entropy (bits) of the signed symbols' empirical distribution."""
    counts = Counter(int(q) for q in levels)
    total = sum(counts.values())
    if total == 0:
        return 0.0
    return float(sum(c * math.log2(total / c) for c in counts.values()))
