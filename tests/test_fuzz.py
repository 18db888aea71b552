"""A seeded sample of the decoder fuzzer runs in CI: no crash, no hang, and every mutator is exercised."""
from __future__ import annotations

import random

import pytest

from invcomp.codecs.entropy import parse
from invcomp.fuzz import MUTATORS, mutate, run_fuzz, seed_streams


def test_seed_streams_are_valid() -> None:
    seeds = seed_streams(random.Random(0), [b"\x01\x02\x03\x04"], [16])
    assert len(seeds) == 15 * 3
    for s in seeds:
        header, q = parse(s)
        assert q.levels.shape == (1, 16)


@pytest.mark.parametrize("kind", MUTATORS)
def test_mutators_change_the_bytes(kind: str) -> None:
    rng = random.Random(1)
    seeds = seed_streams(rng, [b"\x01\x02\x03\x04"], [16])
    changed = sum(mutate(s, kind, rng) != s for s in seeds)
    assert changed >= 0.9 * len(seeds)


def test_fuzz_sample_never_crashes_or_hangs() -> None:
    stats = run_fuzz(2400, seed=2026, time_limit=1.0)
    d = stats.as_dict()
    assert d["cases"] == 2400
    assert d["crashes"] == 0, d["crash_examples"]
    assert d["hangs"] == 0
    assert d["errors"] > 2000  # nearly every corruption is caught
    assert set(d["by_mutator"]) == set(MUTATORS)
    for kind in ("bitflip", "insert", "delete", "truncate"):
        assert d["by_mutator"][kind].get("ok", 0) == 0, kind  # CRC32 catches these


# hypothesis-driven: arbitrary bytes, and arbitrary edit scripts applied to valid files
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from invcomp.errors import InvcompError  # noqa: E402
from invcomp.fuzz import decode_target  # noqa: E402

_SEEDS = seed_streams(random.Random(7), [b"\x01\x02\x03\x04"], [12])


def _decode_or_clean_error(data: bytes) -> None:
    try:
        decode_target(data)
    except InvcompError:
        pass


@settings(max_examples=400, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    _decode_or_clean_error(data)
    _decode_or_clean_error(b"IVC\x01" + data)


@settings(max_examples=400, deadline=1000)
@given(st.sampled_from(_SEEDS), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255), st.booleans()),
                                         min_size=1, max_size=6))
def test_edit_scripts_on_valid_files_never_crash(seed: bytes, edits: list) -> None:
    b = bytearray(seed)
    for pos, val, insert in edits:
        i = pos % (len(b) + 1)
        if insert or i == len(b):
            b.insert(i, val)
        else:
            b[i] = val
    _decode_or_clean_error(bytes(b))
