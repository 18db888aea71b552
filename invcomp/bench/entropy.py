"""How close the Elias payload comes to the entropy of its symbols (the entropy table).

Pure functions over the signed QSGD levels of a set of coded images; nothing here codes or reads files.
"""
from __future__ import annotations

from collections import Counter
from statistics import fmean
from typing import Sequence

from invcomp.coding import elias


def payload_bits(levels: Sequence[int], coder: str) -> int:
    """Bits of the ``.ivc`` payload for ``levels`` with ``coder``: Elias(|q|+1) plus a sign bit per non-zero q."""
    return sum(elias.code_length(abs(int(q)) + 1, coder) + (q != 0) for q in levels)


def entropy_row(levels: Sequence[Sequence[int]], coders: Sequence[str], bits: int) -> dict:
    """One row of the entropy table for images coded at ``bits``.

    ``levels[i]`` are image i's D signed levels and ``coders[i]`` the coder its file used. Returns mean payload
    bits per image for the chosen coders (``elias_bits``) and for each coder alone (``per_coder_bits``), the
    pooled empirical entropy ``D * H`` (``entropy_bits``; H of the symbols pooled over all images), a
    fixed-length code's ``bits * D`` (``fixed_bits``), their ratio and the fraction of zero levels.
    """
    if not levels or len(levels) != len(coders):
        raise ValueError(f"need one coder per image, got {len(levels)} images and {len(coders)} coders")
    dim = len(levels[0])
    pooled = Counter(int(q) for row in levels for q in row)
    total = sum(pooled.values())
    h = elias.empirical_entropy_bits([int(q) for row in levels for q in row]) / total
    chosen = fmean(payload_bits(row, c) for row, c in zip(levels, coders))
    return {"bits": bits, "images": len(levels), "elias_bits": chosen, "entropy_bits": h * dim,
            "fixed_bits": bits * dim, "ratio": chosen / (h * dim) if h else float("inf"),
            "per_coder_bits": {c: fmean(payload_bits(row, c) for row in levels) for c in elias.CODERS},
            "zero_fraction": pooled.get(0, 0) / total}


def markdown(rows: Sequence[dict]) -> str:
    """The entropy table as markdown (mean payload bits per image)."""
    out = ["| bits | Elias (chosen coder) | gamma | delta | omega | pooled entropy | fixed-length | Elias / entropy | "
           "zeros |", "|---|---|---|---|---|---|---|---|---|"]
    for e in rows:
        pc = e["per_coder_bits"]
        out.append(f"| {e['bits']} | {e['elias_bits']:.1f} | {pc['gamma']:.1f} | {pc['delta']:.1f} | {pc['omega']:.1f} "
                   f"| {e['entropy_bits']:.1f} | {e['fixed_bits']} | {e['ratio']:.2f} | {e['zero_fraction']:.2f} |")
    return "\n".join(out) + "\n"
