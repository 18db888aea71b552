"""Train the bench's learned peers: CompressAI architectures at a sweep of λ on UTKFace's train split.

For each architecture, the model at ``--base-lambda`` is trained from scratch for ``--base-steps``; every
other λ starts from it and is fine-tuned for ``--steps`` (see :mod:`invcomp.train.peer` for the recipe and how
it differs from the published one). Each run lives in ``OUT/ARCH-METRIC-LAMBDA/`` (``train.log``,
``checkpoint.pt``, ``model.pt``, ``model.json``), and the sweep resumes where it stopped. Then
``experiments/pack_peers.py`` stores the kept models compactly for ``invcomp bench``.

    python experiments/train_peers.py --data ../shared/data/utkface --out runs/peers \
        --archs bmshj2018-factorized,bmshj2018-hyperprior,mbt2018-mean \
        --lambdas 0.00025,0.0005,0.001,0.002,0.004,0.008 --base-lambda 0.002

The 128-px yardstick of issue 32 (the shipped 64-px models fine-tuned at 128 px, on one core)::

    python experiments/train_peers.py --data ../shared/data/utkface --out runs/peers128 --resolution 128 \
        --init-peer compressai-mbt-mean --lambdas 6.25e-05,0.00025,0.001,0.004 --steps 1200 --batch-size 8 --threads 1
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from invcomp.train.peer import ARCHITECTURES, METRICS, PeerTrainConfig, train_peer  # noqa: E402

log = logging.getLogger("invcomp.experiments.train_peers")


def run_name(arch: str, metric: str, lmbda: float) -> str:
    return f"{arch}-{metric}-{lmbda:g}"


@click.command()
@click.option("--data", required=True, help="UTKFace folder (its train split is used).")
@click.option("--out", required=True, type=click.Path(path_type=Path))
@click.option("--archs", default=",".join(ARCHITECTURES), show_default=True)
@click.option("--metric", default="mse", type=click.Choice(METRICS), show_default=True)
@click.option("--lambdas", default="0.00025,0.0005,0.001,0.002,0.004,0.008", show_default=True)
@click.option("--base-lambda", default=0.002, show_default=True, type=float)
@click.option("--base-steps", default=8000, show_default=True)
@click.option("--steps", default=4000, show_default=True, help="Fine-tuning steps of the other λ.")
@click.option("--resolution", default=64, show_default=True)
@click.option("--N", "n", default=32, show_default=True)
@click.option("--M", "m", default=48, show_default=True)
@click.option("--threads", default=2, show_default=True)
@click.option("--init-peer", default=None, help="Start each λ from this shipped peer family's model at that λ (e.g. "
              "compressai-mbt-mean, trained at 64 px: a 128-px family fine-tuned from it), instead of a base run.")
@click.option("--batch-size", default=16, show_default=True)
def main(data: str, out: Path, archs: str, metric: str, lambdas: str, base_lambda: float, base_steps: int, steps: int,
         resolution: int, n: int, m: int, threads: int, init_peer: str | None, batch_size: int) -> None:
    import torch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(threads)
    lams = [float(v) for v in lambdas.split(",")]
    if init_peer:
        from invcomp.nets.peers import read_manifest

        family = read_manifest()[init_peer]
        for lam in lams:
            shipped = next((mm for mm in family.models if abs(mm["lmbda"] - lam) < 1e-12), None)
            if shipped is None:
                raise click.UsageError(f"{init_peer} ships no model at λ {lam:g}")
            train_peer(PeerTrainConfig(data=data, out=str(out / run_name(family.architecture, metric, lam)),
                                       architecture=family.architecture, lmbda=lam, metric=metric, N=family.N,
                                       M=family.M, resolution=resolution, steps=steps, batch_size=batch_size,
                                       init=str(family.root / shipped["file"]), cache=str(out / "cache")))
        return
    for arch in archs.split(","):
        base = PeerTrainConfig(data=data, out=str(out / run_name(arch, metric, base_lambda)), architecture=arch,
                               lmbda=base_lambda, metric=metric, N=n, M=m, resolution=resolution,
                               steps=base_steps, cache=str(out / "cache"))
        base_model = train_peer(base)
        for lam in lams:
            if lam == base_lambda:
                continue
            cfg = PeerTrainConfig(data=data, out=str(out / run_name(arch, metric, lam)), architecture=arch, lmbda=lam,
                                  metric=metric, N=n, M=m, resolution=resolution, steps=steps, init=str(base_model),
                                  cache=str(out / "cache"))
            train_peer(cfg)


if __name__ == "__main__":
    main()
