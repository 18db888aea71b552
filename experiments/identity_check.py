"""Validate the identity metric (:mod:`invcomp.identity`) on a face set at the size invcomp codes (64 px).

For each face: is a face detected (else the assumed box is used), its distance to itself (must be 0), to a
lightly compressed copy (WebP quality 90: the same person, so it should stay well under 0.6), and to another
person's face (a fixed derangement: the impostor baseline). Prints one JSON line per set.

    python experiments/identity_check.py --data ../shared/data/utkface --split holdout --limit 128
    python experiments/identity_check.py --data /tmp/lfw100
"""
from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

import click
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from invcomp import identity  # noqa: E402
from invcomp.bench.run import load_inputs  # noqa: E402


def _webp90(a: np.ndarray) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "WEBP", quality=90, method=6)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


@click.command()
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--split", default="all", type=click.Choice(["all", "holdout", "val", "train"]), show_default=True)
@click.option("--limit", default=None, type=int)
@click.option("--size", default=64, show_default=True)
def main(data: Path, split: str, limit: int | None, size: int) -> None:
    inputs = load_inputs(data, size, limit, split)  # type: ignore[arg-type]
    u = identity.to_uint8(inputs.targets)
    n = len(u)
    t0 = time.perf_counter()
    self_d, found = identity.distances(u, u)
    copy_d, _ = identity.distances(u, np.stack([_webp90(a) for a in u]))
    imp_d, _ = identity.distances(u, u[identity.impostor_pairs(n)])
    seconds = (time.perf_counter() - t0) / (3 * n)
    th = identity.SAME_PERSON
    click.echo(json.dumps({
        "data": data.name, "split": split, "n": n, "size": size, "recogniser": identity.RECOGNISER, "threshold": th,
        "faces_detected": round(float(found.mean()), 4), "self_max": float(self_d.max()),
        "webp90_mean": round(float(copy_d.mean()), 4), "webp90_same_person": round(float((copy_d < th).mean()), 4),
        "impostor_mean": round(float(imp_d.mean()), 4), "impostor_same_person": round(float((imp_d < th).mean()), 4),
        "seconds_per_pair": round(seconds, 4),
        "command": "python experiments/identity_check.py " + " ".join(sys.argv[1:])}))


if __name__ == "__main__":
    main()
