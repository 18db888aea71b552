"""Invert faces of one split with a codec's default search and save the float symbols, for fitting and
checking entropy-coding priors (``experiments/fit_priors.py``, ``experiments/entropy_coding.py``).

    python experiments/collect_latents.py --model dcgan-utkface64 --split train --limit 160 --out /tmp/latents

Writes OUT/MODEL-SPLIT.pt: ``{"names": [...], "z": (N, D) float32, "settings": {...}}`` (a state-dict-like
dict of tensors and strings, loaded with ``weights_only=True``). Resumable: images already in the file are
skipped, and the file is rewritten after every batch.
"""
from __future__ import annotations

import logging
import sys
from dataclasses import asdict
from pathlib import Path

import click
import torch
from PIL import Image
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from invcomp.codecs import EncodeSettings, load_codec  # noqa: E402
from invcomp.codecs.base import prepare  # noqa: E402
from invcomp.data import list_images  # noqa: E402
from invcomp.files import atomic_save  # noqa: E402
from invcomp.search.inversion import invert  # noqa: E402

log = logging.getLogger("collect_latents")


@click.command()
@click.option("--model", "spec", default="dcgan-utkface64", show_default=True)
@click.option("--data", default="../shared/data/utkface", show_default=True)
@click.option("--split", default="train", show_default=True, type=click.Choice(["train", "val", "holdout", "all"]))
@click.option("--limit", default=160, show_default=True, help="Faces: the first N of the split by name (0: all).")
@click.option("--stride", default=1, show_default=True, help="Take every k-th face of the split (spreads a small sample).")
@click.option("--bits", default=None, type=int, help="Search bit depth [default: the codec's].")
@click.option("--batch-size", default=8, show_default=True)
@click.option("--batched", is_flag=True,
              help="Search a whole batch as one tensor (several times faster; the latents then depend slightly on "
                   "the batch, which training data does not mind).")
@click.option("--out", default="/tmp/latents", show_default=True)
def main(spec: str, data: str, split: str, limit: int, stride: int, bits: int | None, batch_size: int, batched: bool,
         out: str) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    files = list_images(data, split)[::stride]
    files = files[:limit] if limit else files
    codec = load_codec(spec, EncodeSettings(bits=bits))
    path = Path(out) / f"{codec.name}-{split}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    done = torch.load(path, weights_only=True) if path.exists() else {"names": [], "z": torch.zeros(0, codec.latent_dim)}
    todo = [f for f in files if f.name not in set(done["names"])]
    log.info("%s %s: %d faces, %d to do", codec.name, split, len(files), len(todo))
    with tqdm(total=len(todo), desc=codec.name, file=sys.stderr) as bar:
        for i in range(0, len(todo), batch_size):
            chunk = todo[i:i + batch_size]
            images = [Image.open(f).convert("RGB") for f in chunk]
            target = torch.stack([prepare(im, codec.resolution, codec.settings.fit) for im in images])
            if batched:
                z = _search_batch(codec, target)
            else:
                z, _ = codec.find_symbols(target, None)
            done = {"names": done["names"] + [f.name for f in chunk], "z": torch.cat([done["z"], z.float().cpu()]),
                    "settings": str(asdict(codec.settings)), "model": codec.name, "split": split}
            atomic_save(done, path)
            bar.update(len(chunk))
    log.info("wrote %s: %s", path, tuple(done["z"].shape))


def _search_batch(codec, target: torch.Tensor) -> torch.Tensor:
    """The codec's own search (same settings, start and quantiser) over ``target`` ``(N, 3, R, R)`` as one batch."""
    s = codec.settings
    res = invert(codec.gen.module, target, loss=codec.search_loss(), iters=s.iters, lr=s.lr, restarts=s.restarts,
                 init=codec.start(target), prior=codec.prior, norm_weight=s.norm_weight, quant=codec.quant_spec(),
                 quant_fraction=s.quant_fraction, seed=s.seed)
    return res.z


if __name__ == "__main__":
    main()
