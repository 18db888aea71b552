"""Tests for :mod:`invcomp.coding.elias` against hand-worked codes and independent expectations."""
from __future__ import annotations

import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invcomp.coding.elias import (
    CODERS,
    best_coder,
    bits_to_bytes,
    bytes_to_bits,
    code_length,
    decode_delta,
    decode_gamma,
    decode_levels,
    decode_omega,
    empirical_entropy_bits,
    encode_delta,
    encode_gamma,
    encode_levels,
    encode_omega,
)
from invcomp.errors import BitstreamError, InvcompError

ENC = {"gamma": encode_gamma, "delta": encode_delta, "omega": encode_omega}
DEC = {"gamma": decode_gamma, "delta": decode_delta, "omega": decode_omega}

# Worked out by hand from the definitions (N = floor(log2 n)):
# gamma = N zeros + binary(n); delta = gamma(N+1) + binary(n) without its leading 1;
# omega = groups binary(n), binary(len-1), ... down to length 2, in reverse, then "0".
HAND = {
    "gamma": {
        1: "1", 2: "010", 3: "011", 4: "00100", 5: "00101", 8: "0001000",
        9: "0001001", 15: "0001111", 16: "000010000", 17: "000010001",
    },
    "delta": {
        1: "1", 2: "0100", 3: "0101", 4: "01100", 5: "01101", 7: "01111",
        8: "00100000", 10: "00100010", 16: "001010000", 17: "001010001",
    },
    "omega": {
        1: "0", 2: "100", 3: "110", 4: "101000", 5: "101010", 7: "101110",
        8: "1110000", 15: "1111110", 16: "10100100000", 17: "10100100010",
        100: "1011011001000",
    },
}
HAND_CASES = [(c, n, code) for c, table in HAND.items() for n, code in table.items()]


@pytest.mark.parametrize("coder,n,code", HAND_CASES)
def test_hand_worked_codes(coder: str, n: int, code: str) -> None:
    assert ENC[coder](n) == code
    assert code_length(n, coder) == len(code)
    # decode with surrounding garbage on both sides
    assert DEC[coder]("11" + code + "0101", 2) == (n, 2 + len(code))


def test_coders_constant() -> None:
    assert CODERS == ("gamma", "delta", "omega")


@pytest.mark.parametrize("coder", CODERS)
def test_exhaustive_round_trip(coder: str) -> None:
    top = 100_000
    encode, decode = ENC[coder], DEC[coder]
    codes = [encode(n) for n in range(1, top + 1)]
    for n, code in zip(range(1, top + 1), codes):
        assert code_length(n, coder) == len(code)
    big = "".join(codes)
    pos = 0
    for n in range(1, top + 1):
        value, pos = decode(big, pos)
        assert value == n
    assert pos == len(big)


@pytest.mark.parametrize("coder", CODERS)
def test_large_values_round_trip(coder: str) -> None:
    for n in (2**20, 2**32 - 1, 2**39 + 12345, 2**40):
        code = ENC[coder](n)
        assert len(code) == code_length(n, coder)
        assert DEC[coder](code, 0) == (n, len(code))


@st.composite
def level_lists(draw: st.DrawFn) -> tuple[list[int], int, str]:
    max_level = draw(st.integers(1, 32767))
    levels = draw(st.lists(st.integers(-max_level, max_level), max_size=300))
    return levels, max_level, draw(st.sampled_from(CODERS))


def expected_nbits(levels: list[int], coder: str) -> int:
    return sum(len(ENC[coder](abs(q) + 1)) + (q != 0) for q in levels)


@settings(max_examples=300, deadline=None)
@given(level_lists())
def test_levels_round_trip(case: tuple[list[int], int, str]) -> None:
    levels, max_level, coder = case
    data, nbits = encode_levels(levels, coder)
    assert nbits == expected_nbits(levels, coder)
    assert len(data) == math.ceil(nbits / 8)
    assert decode_levels(data, nbits, len(levels), coder, max_level) == levels


@pytest.mark.parametrize("coder", CODERS)
def test_all_levels_for_each_bit_depth(coder: str) -> None:
    for b in range(2, 17):
        s = 2 ** (b - 1) - 1
        levels = list(range(-s, s + 1))
        data, nbits = encode_levels(levels, coder)
        assert nbits == expected_nbits(levels, coder)
        assert len(data) == (nbits + 7) // 8
        assert decode_levels(data, nbits, len(levels), coder, s) == levels
        with pytest.raises(BitstreamError):
            decode_levels(data, nbits, len(levels), coder, s - 1)


def test_encode_levels_hand_worked() -> None:
    # 0 -> gamma(1)="1"; 1 -> gamma(2)="010"+"0"; -2 -> gamma(3)="011"+"1"
    data, nbits = encode_levels([0, 1, -2], "gamma")
    assert nbits == 9
    assert data == bytes([0b10100011, 0b10000000])
    assert decode_levels(data, 9, 3, "gamma", 2) == [0, 1, -2]
    # omega: 0 -> "0"; -3 -> omega(4)="101000"+"1"
    data, nbits = encode_levels([0, -3], "omega")
    assert (data, nbits) == (bytes([0b01010001]), 8)
    assert encode_levels([], "delta") == (b"", 0)
    assert decode_levels(b"", 0, 0, "delta", 5) == []


def test_bits_bytes_hand_worked() -> None:
    assert bits_to_bytes("") == b""
    assert bits_to_bytes("1") == b"\x80"
    assert bits_to_bytes("0000000111") == b"\x01\xc0"
    assert bits_to_bytes("11111111") == b"\xff"
    assert bytes_to_bits(b"\x01\xc0", 10) == "0000000111"
    assert bytes_to_bits(b"\xa3\x80", 16) == "1010001110000000"
    assert bytes_to_bits(b"", 0) == ""
    with pytest.raises(BitstreamError):
        bytes_to_bits(b"\x00", 9)


@given(st.text(alphabet="01", max_size=200))
def test_bits_bytes_round_trip(bits: str) -> None:
    data = bits_to_bytes(bits)
    assert len(data) == math.ceil(len(bits) / 8)
    assert bytes_to_bits(data, len(bits)) == bits
    assert bytes_to_bits(data, 8 * len(data)) == bits + "0" * (8 * len(data) - len(bits))


@pytest.mark.parametrize("coder", CODERS)
@pytest.mark.parametrize("n", [0, -1, -100])
def test_nonpositive_raises(coder: str, n: int) -> None:
    with pytest.raises(ValueError):
        ENC[coder](n)
    with pytest.raises(ValueError):
        code_length(n, coder)


@pytest.mark.parametrize("coder", CODERS)
def test_truncated_raises(coder: str) -> None:
    levels = [5, -3, 0, 7, 100, -1]
    data, nbits = encode_levels(levels, coder)
    for cut in range(nbits):
        with pytest.raises(BitstreamError):
            decode_levels(data, cut, len(levels), coder, 100)
    with pytest.raises(BitstreamError):  # more levels asked than present
        decode_levels(data, nbits, len(levels) + 1, coder, 100)
    with pytest.raises(BitstreamError):  # nbits beyond the payload
        decode_levels(data, 8 * len(data) + 1, len(levels), coder, 100)
    with pytest.raises(BitstreamError):  # dropped last byte
        decode_levels(data[:-1], nbits, len(levels), coder, 100)
    code = ENC[coder](1000)
    for cut in range(len(code)):
        with pytest.raises(BitstreamError):
            DEC[coder](code[:cut], 0)


@pytest.mark.parametrize("coder", CODERS)
def test_level_above_max_raises(coder: str) -> None:
    data, nbits = encode_levels([1, -9, 2], coder)
    assert decode_levels(data, nbits, 3, coder, 9) == [1, -9, 2]
    with pytest.raises(BitstreamError):
        decode_levels(data, nbits, 3, coder, 8)


@pytest.mark.parametrize("coder", CODERS)
def test_trailing_bits_raise(coder: str) -> None:
    levels = [3, 0, -4]
    data, nbits = encode_levels(levels + [2], coder)
    with pytest.raises(BitstreamError):
        decode_levels(data, nbits, len(levels), coder, 10)
    data, nbits = encode_levels(levels, coder)
    padded = data + b"\x00"
    with pytest.raises(BitstreamError):
        decode_levels(padded, nbits + 1, len(levels), coder, 10)


@pytest.mark.parametrize("coder", ["gamma", "delta"])
def test_all_zero_bits_fail_fast(coder: str) -> None:
    nbits = 8_000_000
    start = time.perf_counter()
    with pytest.raises(BitstreamError):
        DEC[coder]("0" * nbits, 0)
    with pytest.raises(BitstreamError):
        decode_levels(bytes(nbits // 8), nbits, 1, coder, 1000)
    assert time.perf_counter() - start < 1.0


def test_caps() -> None:
    cap_exp = 40
    # gamma: 40 length zeros is the largest allowed (2**40); 41 is refused.
    assert decode_gamma("0" * cap_exp + "1" + "0" * cap_exp, 0) == (2**40, 2 * cap_exp + 1)
    with pytest.raises(BitstreamError):
        decode_gamma("0" * 41 + "1" + "0" * 41, 0)
    with pytest.raises(BitstreamError):
        decode_gamma(encode_gamma(2**40 + 1), 0)
    # delta: a valid code for a value above the cap is refused.
    with pytest.raises(BitstreamError):
        decode_delta(encode_delta(2**41), 0)
    with pytest.raises(BitstreamError):
        decode_delta(encode_delta(2**40 + 1), 0)
    # omega: an all-ones stream keeps growing; it must stop at the cap.
    start = time.perf_counter()
    with pytest.raises(BitstreamError):
        decode_omega("1" * 1_000_000, 0)
    with pytest.raises(BitstreamError):
        decode_omega(encode_omega(2**40 + 1), 0)
    with pytest.raises(BitstreamError):
        decode_omega(encode_omega(2**100), 0)
    assert time.perf_counter() - start < 1.0
    assert decode_omega(encode_omega(2**40), 0)[0] == 2**40


def test_bad_positions_raise() -> None:
    for decode in DEC.values():
        with pytest.raises(BitstreamError):
            decode("", 0)
        with pytest.raises(BitstreamError):
            decode("1", 1)
        with pytest.raises(BitstreamError):
            decode("1", -1)


def test_unknown_coder_raises() -> None:
    for call in (
        lambda: encode_levels([1], "rice"),
        lambda: decode_levels(b"\x80", 1, 1, "rice", 1),
        lambda: code_length(3, "GAMMA"),
    ):
        with pytest.raises(InvcompError):
            call()


def test_empirical_entropy_hand_values() -> None:
    assert empirical_entropy_bits([1, 1, -1, -1]) == pytest.approx(4.0)
    assert empirical_entropy_bits([0, 0, 0, 0]) == 0.0
    assert empirical_entropy_bits([0, 1, 2, 3]) == pytest.approx(8.0)
    assert empirical_entropy_bits([]) == 0.0
    # p = (1/2, 1/4, 1/4): H = 1.5 bits, N = 4
    assert empirical_entropy_bits([5, 5, -5, 0]) == pytest.approx(6.0)


def test_best_coder_hand_worked() -> None:
    # value 32768 (|q| = 32767): gamma 31, delta 9 + 15 = 24, omega 2 + 4 + 16 + 1 = 23 bits
    assert best_coder([0, 0, 0, 32767]) == "omega"
    assert best_coder([32767, -32767]) == "omega"
    # value 65536: gamma 33, delta 9 + 16 = 25, omega 2 + 3 + 5 + 17 + 1 = 28
    assert best_coder([65535]) == "delta"
    # value 128: gamma 15, delta 14, omega 14 -> tie, delta first
    assert best_coder([127, -127]) == "delta"
    # value 4: gamma 5, delta 5, omega 6 -> tie, gamma first
    assert best_coder([3, -3]) == "gamma"
    assert best_coder([0, 0, 0]) == "gamma"
    assert best_coder([]) == "gamma"


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-70000, 70000), max_size=50))
def test_best_coder_is_shortest(levels: list[int]) -> None:
    sizes = {c: encode_levels(levels, c)[1] for c in CODERS}
    chosen = best_coder(levels)
    assert sizes[chosen] == min(sizes.values())
    assert chosen == next(c for c in CODERS if sizes[c] == min(sizes.values()))

