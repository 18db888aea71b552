"""Decoder fuzzing: valid seed bitstreams, mutators, and a harness that classifies outcomes.

Used by ``tests/test_fuzz.py`` (a seeded sample in CI) and
``experiments/fuzz_decoder.py`` (100,000+ cases). It takes any codec (:class:`invcomp.codecs.Codec`, any
mode): :func:`codec_seeds` makes valid files with it, and each mutated file goes through its full
``decode``. A case is:

- ``error``: the decoder raised the project's error (:class:`InvcompError`);
- ``ok``: it decoded to levels (and, with a codec, to an image);
- ``crash``: any other exception;
- ``hang``: it took longer than the time limit.

With ``rss``, each case's peak resident memory is recorded (the process's high-water mark, reset before the case:
``/proc/self/clear_refs``), so that a run can show every case within the decode budget (:mod:`invcomp.codecs.budget`).
"""
from __future__ import annotations

import functools
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Optional

import torch
from PIL import Image

from invcomp.formats import ivc as bitstream
from invcomp.formats.framing import MAGIC_PHOTO
from invcomp.coding import elias
from invcomp.codecs import entropy
from invcomp.errors import InvcompError
from invcomp.fuzz import records as fuzz_records
from invcomp.fuzz import structural as fuzz_structural
from invcomp.fuzz.records import gc_seeds, photo_seeds  # noqa: F401  (re-exported)
from invcomp.fuzz.structural import EDGES, RawV1, _body, _recrc, structural  # noqa: F401  (re-exported)
from invcomp.coding.quantize import dequantize, levels_for_bits

if TYPE_CHECKING:
    from invcomp.codecs import Codec

MUTATORS = ("bitflip", "insert", "delete", "truncate", "header_field", "huge_varint", "edge_field", "swap", "scratch",
            "layer", "photo", "gc")
"""From ``edge_field`` on they are structural and keep the CRC valid: a header field set to an edge value, the mode
and model id swapped for another known one, files built from scratch field by field; and, on seeds of their kind
(:func:`make_case`), a layered file's records rewritten (residual resolutions 16..4080, forged rANS streams, rates,
kinds, repeats: every layer CRC valid under the decoder's key), a photo file rebuilt (its layered faces mutated,
up to 64 faces, edge placements and frame sizes), and a GC or SC file's size, tables flag, mode, id, payload or
records changed (:mod:`invcomp.fuzz.structural`)."""
KIND_MUTATORS = {"layer": "layered", "photo": "photo", "gc": "gc"}


@functools.lru_cache(maxsize=1)
def default_layer_keys() -> tuple[bytes, ...]:
    """The installed residual network's decoder key (what layer CRCs are computed under), or none."""
    try:
        from invcomp.nets.residual import load_residual

        return (load_residual().key,)
    except Exception:  # noqa: BLE001  (no CompressAI, no network: the layer mutator falls back)
        return ()

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


def mutate(data: bytes, kind: str, rng: random.Random, model_ids: Optional[list[bytes]] = None,
           layer_keys: Optional[list[bytes]] = None) -> bytes:
    """One mutation of ``data``; ``header_field``, ``huge_varint`` and the structural kinds fix up the CRC so they
    reach the field checks. ``swap``, ``scratch`` and ``gc`` draw model ids from ``model_ids`` (default: ``data``'s
    own); ``layer`` and ``photo`` write layer CRCs under ``layer_keys`` (default: the installed residual network's).
    A kind-specific mutator that does not apply to ``data`` is replaced by a generic one (drawn at random)."""
    if kind in ("layer", "photo", "gc"):
        keys = list(layer_keys) if layer_keys is not None else list(default_layer_keys())
        if kind == "layer":
            out = fuzz_records.layered(data, rng, keys)
        elif kind == "photo":
            out = fuzz_records.photo(data, rng, keys)
        else:
            out = fuzz_records.gcsc(data, rng, model_ids or [])
        if out is not None:
            return out
        kind = rng.choice(MUTATORS[:9])  # no seed of its kind: one of the generic mutators, as before there were these
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
        i = rng.randrange(1 if body[:1] in (bytes([bitstream.MAGIC_V2]), bytes([MAGIC_PHOTO])) else 3, max(4, min(len(body), 20)))
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


def seed_kind(data: bytes) -> Optional[str]:
    """Which kind-specific mutator (``layer``, ``photo``, ``gc``) a seed is for, if any."""
    from invcomp.formats import layered as layers

    if data[:1] == fuzz_structural.PHOTO:
        return "photo"
    if layers.is_layered(data):
        return "layer"
    if data[:1] == bytes([bitstream.MAGIC_V2]) and len(data) > 3 and data[3] >> 5 in (4, 5):
        return "gc"
    return None


_POOLS: dict[int, tuple[list[bytes], dict[str, list[bytes]]]] = {}


def _pool(seeds: list[bytes], kind: str) -> list[bytes]:
    """The seeds a kind-specific mutator draws from (all the seeds when none is of its kind)."""
    if id(seeds) not in _POOLS or _POOLS[id(seeds)][0] is not seeds:
        pools: dict[str, list[bytes]] = {}
        for s in seeds:
            k = seed_kind(s)
            if k is not None:
                pools.setdefault(k, []).append(s)
        _POOLS[id(seeds)] = (seeds, pools)
    return _POOLS[id(seeds)][1].get(kind) or seeds


def make_case(i: int, rng: random.Random, seeds: list[bytes], model_ids: list[bytes],
              layer_keys: Optional[list[bytes]] = None) -> bytes:
    """Case ``i``: a mutation of a random seed (of its kind, for the kind-specific mutators), by mutator
    ``i mod len(MUTATORS)``."""
    kind = MUTATORS[i % len(MUTATORS)]
    pool = _pool(seeds, kind) if kind in KIND_MUTATORS else seeds
    return mutate(rng.choice(pool), kind, rng, model_ids, layer_keys)


def reset_peak_rss() -> bool:
    """Reset this process's peak resident memory (VmHWM) to its current size; ``False`` where Linux's
    ``/proc/self/clear_refs`` is not there to do it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_kib() -> tuple[int, int]:
    """This process's current and peak resident memory in KiB (``/proc/self/status``: VmRSS, VmHWM)."""
    try:
        with open("/proc/self/status") as f:
            text = f.read()
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak, peak
    rss, hwm = re.search(r"VmRSS:\s+(\d+)", text), re.search(r"VmHWM:\s+(\d+)", text)
    return int(rss.group(1)) if rss else 0, int(hwm.group(1)) if hwm else 0


def decode_target(data: bytes, codec: Optional["Codec"] = None, cache: Optional[dict] = None,
                  max_pixels: int = 4_000_000) -> None:
    """What the fuzzer runs: parse, bound-check and dequantise; with ``codec``, its whole ``decode`` (the header
    checked against the codec, then synthesis); with ``cache``, what ``invcomp decode`` runs
    (:func:`invcomp.codecs.loader.decode_file`: the codec the header names, of any mode, then the original size)."""
    from invcomp.formats import photo as container

    if container.is_photo(data):  # a photo file: its container, then (with a cache) every face file inside
        container.unpack(data)
    else:
        header, q = entropy.parse(data)
        dequantize(q)
    if codec is not None:
        codec.decode(data)
    if cache is not None:
        from invcomp.faces.decode import decode_any

        decode_any(data, cache=cache, max_pixels=max_pixels)


@dataclass
class FuzzStats:
    cases: int = 0
    counts: Counter = field(default_factory=Counter)
    by_mutator: dict = field(default_factory=dict)
    crashes: list = field(default_factory=list)
    slowest_s: float = 0.0
    slowest_mutator: str = ""
    rss: list = field(default_factory=list)  # per case: (peak KiB, KiB at its start), with ``rss``

    def as_dict(self) -> dict:
        out = {"cases": self.cases, "errors": self.counts["error"], "ok": self.counts["ok"],
               "crashes": self.counts["crash"], "hangs": self.counts["hang"], "slowest_s": round(self.slowest_s, 4),
               "slowest_mutator": self.slowest_mutator,
               "by_mutator": {k: dict(v) for k, v in self.by_mutator.items()}, "crash_examples": self.crashes[:5]}
        if self.rss:
            out["rss"] = rss_summary(self.rss)
        return out


def rss_summary(rss: list) -> dict:
    """Per-case peaks ``(peak KiB, KiB at the case's start)`` -> the largest peak, the largest growth within one
    case (peak minus start) and their percentiles, in MiB."""
    peaks = sorted(p for p, _ in rss)
    grow = sorted(p - s for p, s in rss)
    mib = lambda k: round(k / 1024, 1)  # noqa: E731
    return {"cases": len(rss), "max_peak_mib": mib(peaks[-1]), "p50_peak_mib": mib(peaks[len(peaks) // 2]),
            "max_case_growth_mib": mib(grow[-1]), "p99_case_growth_mib": mib(grow[int(0.99 * (len(grow) - 1))]),
            "p50_case_growth_mib": mib(grow[len(grow) // 2])}


def run_fuzz(
    n_cases: int, *, seed: int = 0, seeds: Optional[list[bytes]] = None, time_limit: float = 1.0,
    codec: Optional["Codec"] = None, progress: Optional[Callable[[int], None]] = None,
    by_header: bool = False, model_ids: Optional[list[bytes]] = None, max_pixels: int = 4_000_000,
    layer_keys: Optional[list[bytes]] = None, rss: bool = False, start: int = 0, cache: Optional[dict] = None,
) -> FuzzStats:
    """Run ``n_cases`` mutated decodes; deterministic for a given seed. With ``codec`` (any mode), the seeds
    default to :func:`codec_seeds` and every case runs the codec's full decode. With ``by_header``, every case
    runs what ``invcomp decode`` runs: the codec that the header names (every installed mode and model).
    ``model_ids`` are the ids that ``swap`` and ``scratch`` draw from (default: the seeds' own); ``layer_keys`` the
    decoder keys of layer CRCs (default: the installed residual network's). With ``rss``, each case's peak memory
    (:func:`rss_kib`, the peak reset before it) goes to ``stats.rss``. ``start``: the first case's number (a run
    split in parts: cases ``start .. start + n_cases - 1``, each part with its own ``seed``); ``cache``: the codec
    cache of ``by_header`` (one whose models are loaded already: their loading is not a case's memory)."""
    rng = random.Random(seed)
    if seeds is None:
        seeds = codec_seeds(codec, rng) if codec is not None else seed_streams(
            rng, [b"\x52\xc4\x6b\x11", b"\x00\x01\x02\x03"], [100, 8])
    pool = seeds
    ids = model_ids if model_ids is not None else sorted({s[1:3] if s[0] == bitstream.MAGIC_V2 else s[4:8] for s in seeds})
    cache = (cache if cache is not None else {}) if by_header else None
    stats = FuzzStats()
    measure = rss and reset_peak_rss()
    for i in range(start, start + n_cases):
        data = make_case(i, rng, pool, ids, layer_keys)
        kind = MUTATORS[i % len(MUTATORS)]
        if measure:
            reset_peak_rss()
            before = rss_kib()[0]
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
        if measure:
            stats.rss.append((rss_kib()[1], before))
        if dt > stats.slowest_s:
            stats.slowest_s, stats.slowest_mutator = dt, kind
        if dt > time_limit:
            outcome = "hang"
        stats.cases += 1
        stats.counts[outcome] += 1
        stats.by_mutator.setdefault(kind, Counter())[outcome] += 1
        if progress is not None:
            progress(1)
    return stats
