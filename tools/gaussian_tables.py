"""Write ``invcomp/coding/gaussian_tables.json``: the entropy tables of CompressAI's ``GaussianConditional`` with its
default scale table (64 scales from 0.11 to 256) and tail mass (1e-9), as the residual and detail layers code with them.

    python tools/gaussian_tables.py

The tables depend on nothing a network learns, so they ship as data: decoding and encoding a layer then need no
CompressAI (``invcomp.coding.gaussian``), and every machine codes with the same integers. ``tests/test_rans.py``
checks the file against CompressAI's own tables where CompressAI is installed.
"""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def tables() -> dict:
    """The tables as CompressAI 1.2.8 builds them: per scale, the frequencies of its CDF (the escape last)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from compressai.entropy_models import GaussianConditional
        from compressai.models.google import get_scale_table

    g = GaussianConditional(None, scale_bound=0.11)
    g.update_scale_table(get_scale_table(), force=True)
    cdf, lengths, offsets = g._quantized_cdf, g._cdf_length, g._offset
    rows = [cdf[i, :lengths[i]].tolist() for i in range(cdf.shape[0])]
    return {"source": "compressai.entropy_models.GaussianConditional(None, scale_bound=0.11), "
                      "update_scale_table(get_scale_table()) (CompressAI 1.2.8)",
            "precision": 16, "scale_bound": float(g.lower_bound_scale.bound.item()).hex(),
            "scale_table": [float(v).hex() for v in g.scale_table.tolist()],
            "offsets": [int(v) for v in offsets.tolist()],
            "frequencies": [[b - a for a, b in zip(r, r[1:])] for r in rows]}


if __name__ == "__main__":
    out = ROOT / "invcomp" / "coding" / "gaussian_tables.json"
    out.write_text(json.dumps(tables(), separators=(",", ":")) + "\n")
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")
