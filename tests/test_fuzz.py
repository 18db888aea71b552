"""A seeded sample of the decoder fuzzer runs in CI: no crash, no hang, and every mutator is exercised."""
from __future__ import annotations

import random

import pytest

from invcomp import codec
from invcomp.fuzz import MUTATORS, mutate, run_fuzz, seed_streams


def test_seed_streams_are_valid() -> None:
    seeds = seed_streams(random.Random(0), [b"\x01\x02\x03\x04"], [16])
    assert len(seeds) == 15 * 3
    for s in seeds:
        header, q = codec.parse(s)
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
