"""The range coder that every mode's symbols go through: integer symbols under integer frequency tables (pure).

A thin adapter over ``constriction``'s queue range coder. A symbol is coded under a table of integer frequencies
that sum to 2**16 (every entry >= 1): either one fixed table for a run of symbols (:meth:`Encoder.fixed`, the
priors of :mod:`invcomp.coding.tables`) or one table per symbol (:meth:`Encoder.rows`, the context tables of
:mod:`invcomp.coding.gridcode`). Tables reach the coder as the float64 values ``f / 2**16``, which are exact, and
constriction turns them into its fixed-point model with deterministic integer and IEEE arithmetic: a payload
decodes to the same symbols on every machine.

**Payloads** are the coder's 32-bit words, big-endian, cut by :func:`shortest` to the fewest bytes that still
decode when the reader pads them with ``0xFF`` bytes (:class:`Decoder`); readers re-encode what they decoded and
refuse a payload that is not that shortest one, so every file is canonical.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

PRECISION = 16
TOTAL = 1 << PRECISION
PAD = 0xFF


def probabilities(tables: np.ndarray) -> np.ndarray:
    """Integer tables ``(..., n)`` (rows summing to 2**16) -> their exact float64 probabilities, same shape."""
    return np.asarray(tables, dtype=np.float64) / TOTAL


def fixed_model(table: np.ndarray) -> Any:
    """constriction's model of one integer table ``(n,)``."""
    import constriction

    return constriction.stream.model.Categorical(probabilities(table), perfect=False)


def _family() -> Any:
    import constriction

    return constriction.stream.model.Categorical(perfect=False)


class Encoder:
    """Symbols in, words out: call :meth:`fixed` and :meth:`rows` in the order the decoder will read them."""

    def __init__(self) -> None:
        import constriction

        self._enc = constriction.stream.queue.RangeEncoder()

    def fixed(self, symbols: np.ndarray, model: Any) -> None:
        """Code ``symbols`` ``(m,)`` (indices into the table) under one :func:`fixed_model`."""
        if symbols.size:
            self._enc.encode(np.ascontiguousarray(symbols, dtype=np.int32), model)

    def rows(self, symbols: np.ndarray, tables: np.ndarray) -> None:
        """Code ``symbols`` ``(m,)``, the k-th under integer table ``tables[k]`` (``(m, n)``)."""
        if symbols.size:
            self._enc.encode(np.ascontiguousarray(symbols, dtype=np.int32), _family(), probabilities(tables))

    def words(self) -> bytes:
        """The payload so far: the coder's words, big-endian (before :func:`shortest`)."""
        return self._enc.get_compressed().astype(">u4").tobytes()


class Decoder:
    """Words in, symbols out; the payload is padded with ``0xFF`` bytes, as :func:`shortest` assumes. constriction's
    errors (data that its models cannot have produced) propagate: callers turn them into a BitstreamError."""

    def __init__(self, payload: bytes) -> None:
        import constriction

        padded = bytes(payload) + bytes([PAD]) * ((-len(payload)) % 4 + 8)
        self._dec = constriction.stream.queue.RangeDecoder(np.frombuffer(padded, dtype=">u4").astype(np.uint32))

    def fixed(self, model: Any, count: int) -> np.ndarray:
        """``count`` symbols under one :func:`fixed_model` -> int64 ``(count,)``."""
        if not count:
            return np.zeros(0, dtype=np.int64)
        return np.asarray(self._dec.decode(model, int(count)), dtype=np.int64)

    def rows(self, tables: np.ndarray) -> np.ndarray:
        """One symbol under each integer table of ``tables`` ``(m, n)`` -> int64 ``(m,)``."""
        if not len(tables):
            return np.zeros(0, dtype=np.int64)
        return np.asarray(self._dec.decode(_family(), probabilities(tables)), dtype=np.int64)


def shortest(words: bytes, decodes: Callable[[bytes], bool]) -> bytes:
    """``words`` without the trailing bytes that a reader does not need: cut while ``decodes(prefix)`` (the prefix,
    padded by :class:`Decoder`, still gives the same symbols)."""
    n = len(words)
    while n > 0 and decodes(words[:n - 1]):
        n -= 1
    return words[:n]


def decodes_to(decode: Callable[[bytes], np.ndarray], expected: np.ndarray) -> Callable[[bytes], bool]:
    """A :func:`shortest` test: ``decode(payload)`` gives ``expected`` and raises nothing."""
    def test(payload: bytes) -> bool:
        try:
            return bool(np.array_equal(decode(payload), expected))
        except Exception:  # noqa: BLE001  (constriction refuses data that its model cannot have produced)
            return False

    return test
