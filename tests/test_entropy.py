"""The entropy table's arithmetic, against hand-worked values."""
from __future__ import annotations

import pytest

from invcomp.bench.entropy import entropy_row, markdown, payload_bits


def test_payload_bits_by_hand() -> None:
    # gamma(|q|+1) plus a sign bit when q != 0: q=0 -> "1" (1 bit); q=+-1 -> gamma(2) "010" + sign (4 bits);
    # q=2 -> gamma(3) "011" + sign (4 bits); q=-3 -> gamma(4) "00100" + sign (6 bits)
    assert payload_bits([0, 1, -1, 2, -3], "gamma") == 1 + 4 + 4 + 4 + 6
    # delta(1) = "1", delta(2) = "0100": q=0 -> 1 bit, q=1 -> 4 + 1 sign
    assert payload_bits([0, 1], "delta") == 1 + 5


def test_entropy_row_by_hand() -> None:
    # two images of D=4 levels; pooled symbols: 0 x2, 1 x2, -1 x2, 2 x2 -> H = 2 bits, D*H = 8
    levels = [[0, 1, -1, 2], [2, -1, 1, 0]]
    row = entropy_row(levels, ["gamma", "gamma"], bits=3)
    assert row["entropy_bits"] == pytest.approx(8.0)
    assert row["elias_bits"] == pytest.approx(13.0)  # 1 + 4 + 4 + 4 for each image
    assert row["fixed_bits"] == 12 and row["images"] == 2
    assert row["ratio"] == pytest.approx(13 / 8)
    assert row["zero_fraction"] == pytest.approx(0.25)
    assert set(row["per_coder_bits"]) == {"gamma", "delta", "omega"}
    assert "| 3 | 13.0 | 13.0 |" in markdown([row])


def test_entropy_row_needs_one_coder_per_image() -> None:
    with pytest.raises(ValueError, match="one coder per image"):
        entropy_row([[0, 1]], [], bits=2)
