"""Decoder fuzzing: valid seed bitstreams, mutators, and a harness that classifies outcomes.

Used by ``tests/test_fuzz.py`` (a seeded sample in CI) and
``experiments/fuzz_decoder.py`` (100,000+ cases). It takes any codec (:class:`invcomp.codecs.Codec`, any
mode): :func:`codec_seeds` makes valid files with it, and each mutated file goes through its full
``decode``. A case is:

- ``error``: the decoder raised the project's error (:class:`InvcompError`);
- ``ok``: it decoded to levels (and, with a codec, to an image);
- ``crash``: any other exception;
- ``hang``: it took longer than the time limit.
"""
from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Optional

import torch
from PIL import Image

from . import bitstream, elias
from .codecs import entropy
from .errors import InvcompError
from .fuzz_structural import EDGES, RawV1, _body, _recrc, structural  # noqa: F401  (re-exported)
from .quantize import dequantize, levels_for_bits

if TYPE_CHECKING:
    from .codecs import Codec

MUTATORS = ("bitflip", "insert", "delete", "truncate", "header_field", "huge_varint", "edge_field", "swap", "scratch")
"""The last three are structural and keep the CRC valid: a header field set to an edge value, the mode and model
id swapped for another known one, and files built from scratch field by field."""

def seed_streams(rng: random.Random, model_ids: list[bytes], latent_dims: list[int]) -> list[bytes]:
    """Valid ``.ivc`` files over every coder, bit depth 2..16, flag combination and given generator."""
    out = []
    for mid, dim in zip(model_ids, latent_dims):
        for bits in range(2, 17):
            for coder in elias.CODERS:
                s = levels_for_bits(bits)
                levels = [rng.randint(-s, s) if rng.random() < 0.7 else 0 for _ in range(dim)]
                payload, nbits = elias.encode_levels(levels, coder)
                header = bitstream.Header(
                    model_id=mid, latent_dim=dim, resolution=64, width=rng.randint(1, 5000),
                    height=rng.randint(1, 5000), bits=bits, coder=coder, norm=rng.choice([0.0, 1.5, 9.875, 65504.0, None]),  # None: norm-free
                    scaling=rng.choice(["max", "l2"]), rounding=rng.choice(["nearest", "stochastic"]),
                    prior=rng.choice(["normal", "uniform"]), fit=rng.choice(["crop", "squash"]),
                )
                out.append(bitstream.pack(header, payload, nbits))
    return out


def codec_seeds(codec: "Codec", rng: random.Random, n: int = 8) -> list[bytes]:
    """``n`` valid files of ``codec`` (its mode, model and settings): random symbols ``(n, D)`` from N(0, I),
    coded for originals of random sizes."""
    g = torch.Generator().manual_seed(rng.randrange(2**31))
    z = torch.randn(n, codec.latent_dim, generator=g)
    images = [Image.new("RGB", (rng.randint(1, 3000), rng.randint(1, 3000))) for _ in range(n)]
    return [e.data for e in codec.encode_symbols(z, images)]


def mutate(data: bytes, kind: str, rng: random.Random, model_ids: Optional[list[bytes]] = None) -> bytes:
    """One mutation of ``data``; ``header_field``, ``huge_varint`` and the structural kinds fix up the CRC so they
    reach the field checks. ``swap`` and ``scratch`` draw model ids from ``model_ids`` (default: ``data``'s own)."""
    if kind in ("edge_field", "swap", "scratch"):
        out = structural(data, kind, rng, model_ids or [bytes(data[4:8])])
        if out is not None:
            return out
        kind = "header_field"
    b = bytearray(data)
    if kind == "bitflip":
        for bit in rng.sample(range(8 * len(b)), rng.randint(1, min(8, 8 * len(b)))):  # distinct bits
            b[bit // 8] ^= 1 << (bit % 8)
    elif kind == "insert":
        for _ in range(rng.randint(1, 4)):
            b.insert(rng.randrange(len(b) + 1), rng.randrange(256))
    elif kind == "delete":
        for _ in range(rng.randint(1, min(4, len(b)))):
            del b[rng.randrange(len(b))]
    elif kind == "truncate":
        b = b[: rng.randrange(len(b))]
    elif kind == "header_field":
        body = _body(b)
        i = rng.randrange(1 if body[:1] in (bytes([bitstream.MAGIC_V2]), b"\xb3") else 3, max(4, min(len(body), 20)))
        if i < len(body):
            body[i] = rng.randrange(256)
        return _recrc(bytes(body))
    elif kind == "huge_varint":
        body = _body(b)
        v2 = body[:1] == bytes([bitstream.MAGIC_V2])
        if v2:
            body[3] |= 1  # the size escape: varints follow
        i = rng.randrange(4, 8) if v2 else rng.randrange(10, min(len(body), 18))
        huge = bytes([0xFF] * rng.randint(1, 9) + [rng.randrange(1, 128)])
        return _recrc(bytes(body[:i] + huge + body[i + 1:]))
    else:
        raise ValueError(f"unknown mutator {kind!r}")
    return bytes(b)


def photo_seeds(faces: list[bytes], rng: random.Random, n: int = 12) -> list[bytes]:
    """``n`` valid photo files (:mod:`invcomp.faces.container`) around the given face files: 1-3 faces at random
    placements (or whole-frame), grayscale or not, with no background, a ThumbHash or a small real WebP."""
    import io

    from .faces import container
    from .faces.align import Placement

    webp = io.BytesIO()
    Image.new("RGB", (40, 30), (90, 120, 200)).save(webp, "WEBP", quality=20)
    out = []
    for _ in range(n):
        w, h = rng.randint(1, 1500), rng.randint(1, 1500)
        recs = [container.FaceRecord(None if rng.random() < 0.2 else Placement(
            rng.uniform(-w, 2 * w), rng.uniform(-h, 2 * h), rng.uniform(2, 2 * max(w, h)), rng.uniform(-180, 180)),
            rng.choice(faces)) for _ in range(rng.randint(1, 3))]
        bg = rng.choice(["none", "thumb", "webp"])
        data = {"none": b"", "thumb": bytes(rng.randrange(256) for _ in range(24)), "webp": webp.getvalue()}[bg]
        if bg == "webp":
            w, h = max(w, 40), max(h, 30)
        out.append(container.pack(container.Photo(w, h, recs, rng.random() < 0.3, bg, data)))
    return out


def make_case(i: int, rng: random.Random, seeds: list[bytes], model_ids: list[bytes]) -> bytes:
    """Case ``i``: a mutation of a random seed, by mutator ``i mod len(MUTATORS)``."""
    return mutate(rng.choice(seeds), MUTATORS[i % len(MUTATORS)], rng, model_ids)


def decode_target(data: bytes, codec: Optional["Codec"] = None, cache: Optional[dict] = None,
                  max_pixels: int = 4_000_000) -> None:
    """What the fuzzer runs: parse, bound-check and dequantise; with ``codec``, its whole ``decode`` (the header
    checked against the codec, then synthesis); with ``cache``, what ``invcomp decode`` runs
    (:func:`invcomp.codecs.table.decode_file`: the codec the header names, of any mode, then the original size)."""
    from .faces import container

    if container.is_photo(data):  # a photo file: its container, then (with a cache) every face file inside
        container.unpack(data)
    else:
        header, q = entropy.parse(data)
        dequantize(q)
    if codec is not None:
        codec.decode(data)
    if cache is not None:
        from .faces.decode import decode_any

        decode_any(data, cache=cache, max_pixels=max_pixels)


@dataclass
class FuzzStats:
    cases: int = 0
    counts: Counter = field(default_factory=Counter)
    by_mutator: dict = field(default_factory=dict)
    crashes: list = field(default_factory=list)
    slowest_s: float = 0.0

    def as_dict(self) -> dict:
        return {"cases": self.cases, "errors": self.counts["error"], "ok": self.counts["ok"],
                "crashes": self.counts["crash"], "hangs": self.counts["hang"], "slowest_s": round(self.slowest_s, 4),
                "by_mutator": {k: dict(v) for k, v in self.by_mutator.items()}, "crash_examples": self.crashes[:5]}


def run_fuzz(
    n_cases: int, *, seed: int = 0, seeds: Optional[list[bytes]] = None, time_limit: float = 1.0,
    codec: Optional["Codec"] = None, progress: Optional[Callable[[int], None]] = None,
    by_header: bool = False, model_ids: Optional[list[bytes]] = None, max_pixels: int = 4_000_000,
) -> FuzzStats:
    """Run ``n_cases`` mutated decodes; deterministic for a given seed. With ``codec`` (any mode), the seeds
    default to :func:`codec_seeds` and every case runs the codec's full decode. With ``by_header``, every case
    runs what ``invcomp decode`` runs: the codec that the header names (every installed mode and model).
    ``model_ids`` are the ids that ``swap`` and ``scratch`` draw from (default: the seeds' own)."""
    rng = random.Random(seed)
    if seeds is None:
        seeds = codec_seeds(codec, rng) if codec is not None else seed_streams(
            rng, [b"\x52\xc4\x6b\x11", b"\x00\x01\x02\x03"], [100, 8])
    pool = seeds
    ids = model_ids if model_ids is not None else sorted({s[1:3] if s[0] == bitstream.MAGIC_V2 else s[4:8] for s in seeds})
    cache: Optional[dict] = {} if by_header else None
    stats = FuzzStats()
    for i in range(n_cases):
        data = make_case(i, rng, pool, ids)
        kind = MUTATORS[i % len(MUTATORS)]
        t0 = time.perf_counter()
        try:
            decode_target(data, codec, cache, max_pixels)
            outcome = "ok"
        except InvcompError:
            outcome = "error"
        except Exception as e:  # the fuzzer exists to find these
            outcome = "crash"
            stats.crashes.append({"mutator": kind, "error": f"{type(e).__name__}: {e}", "data": data.hex()})
        dt = time.perf_counter() - t0
        stats.slowest_s = max(stats.slowest_s, dt)
        if dt > time_limit:
            outcome = "hang"
        stats.cases += 1
        stats.counts[outcome] += 1
        stats.by_mutator.setdefault(kind, Counter())[outcome] += 1
        if progress is not None:
            progress(1)
    return stats
