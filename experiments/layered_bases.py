"""Base pictures (layer 0) of training faces, for training the layered mode's residual network.

The residual layer is conditioned on the decoded lower layers, so it is trained on what the decoder really
has: the quantised inversion latent's picture G(z_hat), 64 px. The search here is batched (many faces per
forward pass), which is ~10x cheaper per face than ``invcomp encode`` (one face per thread, for byte-exact
files) and gives the same kind of picture, not the same bits. Writes ``OUT/bases_<split>.pt``: uint8
``x64`` (N, 3, 64, 64), ``x128`` (N, 3, 128, 128) targets and ``base`` (N, 3, 64, 64), with the names.

    python experiments/layered_bases.py --data ../shared/data/utkface --out /work/runs/layered --limit 3000
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import click
import torch

from invcomp.codecs import entropy
from invcomp.codecs.loader import load_codec
from invcomp.data import load_faces
from invcomp.search.inversion import invert
from invcomp.coding.quantize import dequantize
from invcomp.nets.warmstart import predict_latents

log = logging.getLogger("layered_bases")


@click.command()
@click.option("--data", required=True, type=click.Path(exists=True))
@click.option("--out", required=True, type=click.Path())
@click.option("--split", default="train", type=click.Choice(["train", "val", "holdout"]))
@click.option("--limit", default=3000, type=int)
@click.option("--batch", default=64, type=int)
@click.option("--threads", default=2, type=int)
def main(data: str, out: str, split: str, limit: int, batch: int, threads: int) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(threads)
    path = Path(out) / f"bases_{split}.pt"
    done = torch.load(path, weights_only=True) if path.exists() else None
    x64, names = load_faces(data, 64, split=split, limit=limit)
    x128, _ = load_faces(data, 128, split=split, limit=limit)
    codec = load_codec("dcgan-utkface64", mode="inversion")
    s, quant = codec.settings, codec.quant_spec()
    bases = [done["base"]] if done is not None else []
    start = bases[0].shape[0] if bases else 0
    t0 = time.time()
    for i in range(start, x64.shape[0], batch):
        target = x64[i:i + batch].float() / 127.5 - 1
        res = invert(codec.gen.module, target, loss=s.loss, iters=s.iters, lr=s.lr, init=predict_latents(
            codec.warm_start.module, target), prior=codec.prior, norm_weight=s.norm_weight, quant=quant,
            quant_fraction=s.quant_fraction, seed=s.seed)
        q = entropy.quantise_rows(res.z, s, norm_free=codec.norm_free, prior=codec.tables)
        pic = codec.synthesise(dequantize(q))
        bases.append(((pic + 1) * 127.5).round().clamp(0, 255).to(torch.uint8))
        n = sum(b.shape[0] for b in bases)
        torch.save({"x64": x64[:n], "x128": x128[:n], "base": torch.cat(bases), "names": names[:n]}, path)
        log.info("%d/%d faces, %.2f s/face", n, x64.shape[0], (time.time() - t0) / (n - start))


if __name__ == "__main__":
    main()
