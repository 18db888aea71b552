"""A bounds-checked decoder for CompressAI's rANS streams (the residual layers' entropy code). Pure Python.

**Why not CompressAI's own decoder.** ``compressai.ans.RansDecoder.decode_with_indexes`` (``rans_interface.cpp``,
on ryg's ``rans64.h``) takes a stream, one CDF index per symbol, the CDF tables, their lengths and offsets. It
has no end-of-stream bound at all, so even a well-formed call (every index in range, valid tables) reads past the
stream for any stream that is not exactly the encoder's output for those symbols:

- ``Rans64DecInit`` reads 8 bytes, whatever the stream's length;
- every renormalisation (``Rans64DecAdvance``, and ``Rans64DecGetBits`` in the escape) reads 4 more bytes, with no
  check against the end;
- the escape for values outside a table (the last symbol of each CDF) reads a count of 4-bit chunks that goes on
  for as long as the chunks read are 15, then that many chunks: a run of 0xFF bytes makes it read without bound.

A 1-byte stream for a 1024-px layer (196,608 symbols) made it read on past the stream's end until the process died
(SIGSEGV, issue 30); a read that stops short of a fault returns symbols made of whatever bytes follow the stream.
(Its asserts, which would check the indexes, are compiled out; and its *encoder* never terminates for a value
whose escape needs 8 or more chunks, since it then shifts a 32-bit value by 32.)

**This decoder** is the same algorithm (the same state, renormalisation, escape and output: it gives CompressAI's
symbols for every stream CompressAI's encoder writes), with a check before every read. It refuses, with
:class:`~invcomp.errors.BitstreamError`, before decoding: a stream that is not whole 32-bit words or is shorter
than the 8-byte flush, one shorter than the fewest bytes those symbols could take under those tables
(:func:`min_stream_bytes`: rANS can code many symbols per byte, so the bound comes from the tables' most probable
symbols, not from the count), and an index outside the tables; while decoding, a read past the end, and an escape
that no encoder writes (a chunk count of 8 or more, or a last chunk of 0); after, a stream that is not the
canonical code of what it decoded (words left over, or a final state other than the encoder's start). A stream
that passes decodes to exactly the symbols CompressAI's decoder gives, and re-encodes to the same bytes.
"""
from __future__ import annotations

import math
import struct
from bisect import bisect_right
from dataclasses import dataclass
from typing import Sequence

from invcomp.errors import BitstreamError, InvcompError

PRECISION = 16  # CompressAI's probability precision: every CDF ends at 1 << 16
RANS_L = 1 << 31  # the lower bound of the state's normalisation interval (rans64.h's RANS64_L)
STATE_END = 1 << 63  # the encoder's state is always below this
BYPASS_BITS = 4
MAX_BYPASS_CHUNKS = 7  # the encoder cannot write 8 (it would shift a 32-bit value by 32)
LOG2_SLACK = 1e-4  # per symbol: a bound on the rounding of one coding step, in bits (exactly 2**-15 / ln 2)


@dataclass(frozen=True)
class Tables:
    """A model's CDF tables as the coder uses them: each CDF cut to its length, the offset and the escape symbol
    (``max_values``: the CDF's last symbol, length - 2) of each, and the fewest bits any symbol of each costs."""

    cdfs: tuple[tuple[int, ...], ...]
    offsets: tuple[int, ...]
    max_values: tuple[int, ...]
    min_bits: tuple[float, ...]


def tables(quantized_cdf: Sequence[Sequence[int]], lengths: Sequence[int], offsets: Sequence[int]) -> Tables:
    """Check a model's tables (CompressAI's ``_quantized_cdf``, ``_cdf_length``, ``_offset``, as lists) and return
    them ready for :func:`decode`: every CDF starts at 0, ends at 1 << 16 and strictly increases (every symbol
    codable). These are the model's own, not a file's; a bad one is an :class:`InvcompError` (not a corrupt file)."""
    if not (len(quantized_cdf) == len(lengths) == len(offsets) >= 1):
        raise InvcompError("the residual network's entropy tables are inconsistent (run update())")
    cdfs, maxv, bits = [], [], []
    for i, (row, n) in enumerate(zip(quantized_cdf, lengths)):
        cdf = tuple(int(v) for v in row[:n])
        if not (3 <= n <= len(row) and cdf[0] == 0 and cdf[-1] == 1 << PRECISION
                and all(b > a for a, b in zip(cdf, cdf[1:]))):
            raise InvcompError(f"the residual network's entropy table {i} is not a valid CDF")
        cdfs.append(cdf)
        maxv.append(n - 2)
        bits.append(PRECISION - math.log2(max(b - a for a, b in zip(cdf, cdf[1:]))))
    return Tables(tuple(cdfs), tuple(int(o) for o in offsets), tuple(maxv), tuple(bits))


def min_stream_bytes(indexes: Sequence[int], t: Tables) -> int:
    """The fewest bytes in which CompressAI's encoder can code symbols under CDFs ``indexes``: 8 (the flush) plus
    4 per 32-bit word that the encoder must have emitted.

    The encoder starts at state 2**31 and ends below 2**63; each symbol multiplies the state by at least
    2**b / (1 + 2**-15) (b: its table's fewest bits), and each emitted word divides it by at most 2**32 (1 + 2**-15),
    so it emits E >= (sum b - 32 - n * slack) / (32 + slack) words."""
    total = sum(t.min_bits[k] for k in indexes)
    words = math.floor((total - 32 - len(indexes) * LOG2_SLACK) / (32 + LOG2_SLACK))
    return 8 + 4 * max(0, words)


def check(data: bytes, indexes: Sequence[int], t: Tables, what: str = "the stream") -> None:
    """Refuse, before decoding, a stream that cannot be CompressAI's code of ``len(indexes)`` symbols under these
    tables, and indexes outside them (see the module doc)."""
    n = len(data)
    if n < 8 or n % 4:
        raise BitstreamError(f"corrupt .ivc file: {what} is {n} byte{'s' * (n != 1)}; an rANS stream is whole 32-bit "
                             "words, at least 2")
    if indexes and not (0 <= min(indexes) and max(indexes) < len(t.cdfs)):
        raise InvcompError(f"{what}: a CDF index outside the model's {len(t.cdfs)} tables")  # the model's, not the file's
    need = min_stream_bytes(indexes, t)
    if n < need:
        raise BitstreamError(f"corrupt .ivc file: {what} is {n} bytes, but its {len(indexes):,} symbols take at least "
                             f"{need:,}")


def decode(data: bytes, indexes: Sequence[int], t: Tables, what: str = "the stream") -> list[int]:
    """The symbols (CDF symbol + offset, as CompressAI's ``decode_with_indexes`` returns them) of an rANS stream,
    one per index; :class:`BitstreamError` for any stream that is not CompressAI's canonical code of as many
    symbols (module doc). Never reads outside ``data``."""
    check(data, indexes, t, what)
    words = struct.unpack(f"<{len(data) // 4}I", data)  # CompressAI writes native (little-endian) uint32 words
    end = len(words)
    x = words[0] | words[1] << 32
    if not RANS_L <= x < STATE_END:
        raise BitstreamError(f"corrupt .ivc file: {what} starts outside the coder's state range")
    p, mask = 2, (1 << PRECISION) - 1
    cdfs, offsets, maxv = t.cdfs, t.offsets, t.max_values
    out = [0] * len(indexes)
    short = f"corrupt .ivc file: {what} ends before its symbols do"
    for i, k in enumerate(indexes):
        cdf = cdfs[k]
        cum = x & mask
        s = bisect_right(cdf, cum) - 1
        start = cdf[s]
        x = (cdf[s + 1] - start) * (x >> PRECISION) + cum - start
        if x < RANS_L:
            if p == end:
                raise BitstreamError(short)
            x = x << 32 | words[p]
            p += 1
        if s != maxv[k]:
            out[i] = s + offsets[k]
            continue
        # the escape: a count of 4-bit chunks, then the chunks (zigzag: odd below the table, even above)
        raw = n_chunks = -1
        for j in range(MAX_BYPASS_CHUNKS + 2):
            val = x & 15
            x >>= BYPASS_BITS
            if x < RANS_L:
                if p == end:
                    raise BitstreamError(short)
                x = x << 32 | words[p]
                p += 1
            if n_chunks < 0:
                if val > MAX_BYPASS_CHUNKS:
                    raise BitstreamError(f"corrupt .ivc file: {what} escapes a value in more than {MAX_BYPASS_CHUNKS} "
                                         "chunks, which no encoder writes")
                n_chunks, raw = val, 0
            else:
                raw |= val << (BYPASS_BITS * (j - 1))
            if j == n_chunks:
                break
        if n_chunks and not val:
            raise BitstreamError(f"corrupt .ivc file: {what} has an escaped value that is not minimal")
        value = -(raw >> 1) - 1 if raw & 1 else (raw >> 1) + maxv[k]
        out[i] = value + offsets[k]
    if p != end or x != RANS_L:
        raise BitstreamError(f"corrupt .ivc file: {what} is not the code of its symbols "
                             f"({4 * (end - p)} bytes left over)" if p != end else
                             f"corrupt .ivc file: {what} is not the code of its symbols (it ends in another state)")
    return out


def encode(symbols: Sequence[int], indexes: Sequence[int], t: Tables) -> bytes:
    """CompressAI's rANS code of ``symbols`` (each under the CDF its index names), byte for byte as its
    ``RansEncoder.encode_with_indexes`` writes it; the inverse of :func:`decode`. A value so far outside its table
    that its escape would need more than :data:`MAX_BYPASS_CHUNKS` chunks is refused (CompressAI's encoder would not
    terminate)."""
    if len(symbols) != len(indexes):
        raise InvcompError("rANS: as many symbols as indexes")
    steps: list[tuple[int, int, bool]] = []  # (start, frequency or bit count, bypass), in coding order
    for value, k in zip(symbols, indexes):
        cdf, top = t.cdfs[k], t.max_values[k]
        v, raw = value - t.offsets[k], 0
        if v < 0:
            raw, v = -2 * v - 1, top
        elif v >= top:
            raw, v = 2 * (v - top), top
        steps.append((cdf[v], cdf[v + 1] - cdf[v], False))
        if v == top:
            n = 0
            while raw >> (BYPASS_BITS * n):
                n += 1
            if n > MAX_BYPASS_CHUNKS:
                raise InvcompError(f"rANS: the value {value} is too far outside its table to code")
            steps.append((n, BYPASS_BITS, True))
            for j in range(n):
                steps.append(((raw >> (BYPASS_BITS * j)) & 15, BYPASS_BITS, True))
    x, words = RANS_L, []
    for start, size, bypass in reversed(steps):
        freq = 1 << (PRECISION - size) if bypass else size
        if x >= ((RANS_L >> PRECISION) << 32) * freq:
            words.append(x & 0xFFFFFFFF)
            x >>= 32
        x = (x << size) | start if bypass else ((x // freq) << PRECISION) + (x % freq) + start
    words += [x >> 32, x & 0xFFFFFFFF]  # the flush: low word first in the stream, as the decoder reads it
    return struct.pack(f"<{len(words)}I", *reversed(words))
