"""The upsampler's training cache: UTKFace faces at 64 and 256 px, and what the shipped VAE-GANs decode of them.

For every face of a split (``train`` and ``val`` of :func:`invcomp.data.split_of`; the held-out faces are never
read), in the framing the 64-px generators draw (the whole 200-px crop, :func:`invcomp.imageio.fit_image`):

- ``x256``: the crop Lanczos-resized to 256 px, the upsampler's target;
- ``x64``: the crop Lanczos-resized to 64 px, exactly what a 64-px codec is given (``load_faces(data, 64)``);
- ``base``: a real decoded base, the reconstruction of ``x64`` by one of the shipped VAE-GAN codecs
  (face ``i`` by ``bases[i % len(bases)]``, at the codec's own bits), rounded to 8 bits.

Written as raw uint8 arrays ``OUT/<split>_{x256,x64,base}.u8`` of shape ``(N, 3, R, R)`` (read with
``np.memmap``), the names and the base models in ``OUT/<split>.json``. Resumable: a run that stops goes on
from ``OUT/<split>_progress.json``. Runs on one thread by default (the machine is shared).

    python experiments/upsample_data.py --data ../shared/data/utkface --out /work/cache/upsample/data
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import click
import numpy as np
import torch

from invcomp.data import list_images
from invcomp.zoo.registry import load_vaegan_model
from invcomp.imageio import decode_image_bytes, fit_image
from invcomp.nets.vaegan import reconstruct

log = logging.getLogger("upsample_data")

BASES = ("vaegan-utkface64-c2", "vaegan-utkface64-c4", "vaegan-utkface64-c8", "vaegan-utkface64aug-c4")
KINDS = {"x256": 256, "x64": 64, "base": 64}


def arrays(out: Path, split: str, n: int, mode: str) -> dict[str, np.memmap]:
    """The split's uint8 memmaps ``(n, 3, R, R)``, by kind; ``mode`` ``w+`` creates them, ``r+``/``r`` opens."""
    return {k: np.memmap(out / f"{split}_{k}.u8", dtype=np.uint8, mode=mode, shape=(n, 3, r, r))
            for k, r in KINDS.items()}


def build_split(data: Path, out: Path, split: str, bases: list, chunk: int, limit: int | None) -> None:
    """Fill (or finish) the cache of one split; writes ``<split>.json`` when complete."""
    meta_path, progress_path = out / f"{split}.json", out / f"{split}_progress.json"
    if meta_path.exists():
        log.info("%s: complete already (%s)", split, meta_path)
        return
    files = list_images(data, split)
    if limit is not None:
        files = files[:limit]
    n = len(files)
    done = json.loads(progress_path.read_text())["done"] if progress_path.exists() else 0
    arr = arrays(out, split, n, "r+" if done else "w+")
    models = [i % len(bases) for i in range(n)]
    t0 = time.time()
    for start in range(done, n, chunk):
        part = files[start:start + chunk]
        x256, x64 = [], []
        for p in part:
            img = decode_image_bytes(p.read_bytes(), name=p.name)
            x256.append(np.asarray(fit_image(img, 256, "crop"), dtype=np.uint8).transpose(2, 0, 1))
            x64.append(np.asarray(fit_image(img, 64, "crop"), dtype=np.uint8).transpose(2, 0, 1))
        a256, a64 = np.stack(x256), np.stack(x64)
        x = torch.from_numpy(a64).float() / 127.5 - 1.0
        base = torch.empty_like(x)
        idx = torch.tensor(models[start:start + len(part)])
        for m, codec in enumerate(bases):
            sel = (idx == m).nonzero().flatten()
            if len(sel):
                base[sel] = reconstruct(codec.analysis, codec.synthesis, x[sel], codec.config.bits,
                                        codec.config.scaling)
        a_base = ((base.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
        sl = slice(start, start + len(part))
        arr["x256"][sl], arr["x64"][sl], arr["base"][sl] = a256, a64, a_base
        for a in arr.values():
            a.flush()
        progress_path.write_text(json.dumps({"done": start + len(part), "n": n}))
        rate = (start + len(part) - done) / max(time.time() - t0, 1e-6)
        log.info("%s: %d / %d faces (%.1f faces/s)", split, start + len(part), n, rate)
    meta = {"split": split, "n": n, "names": [p.name for p in files], "bases": [b.name for b in bases],
            "base_sha256": [b.sha256 for b in bases], "base_of_face": models, "sizes": KINDS,
            "framing": "whole 200-px UTKFace crop (fit_image crop), Lanczos to each size", "data": str(data)}
    meta_path.write_text(json.dumps(meta))
    progress_path.unlink(missing_ok=True)
    log.info("%s: wrote %d faces to %s in %.0f s", split, n, out, time.time() - t0)


@click.command()
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path())
@click.option("--splits", default="val,train", show_default=True, help="Comma-separated: train, val (never holdout).")
@click.option("--bases", default=",".join(BASES), show_default=True, help="Registered VAE-GAN codecs, cycled over faces.")
@click.option("--chunk", default=256, show_default=True, type=int)
@click.option("--limit", default=None, type=int, help="Only the first N faces of each split.")
@click.option("--threads", default=1, show_default=True, type=int)
def main(data: str, out: str, splits: str, bases: str, chunk: int, limit: int | None, threads: int) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(threads)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    codecs = [load_vaegan_model(b) for b in bases.split(",") if b]
    for split in splits.split(","):
        if split not in ("train", "val"):
            raise click.BadParameter(f"split {split!r}: only train and val are cached (held-out faces are never read)")
        build_split(Path(data), out_dir, split, codecs, chunk, limit)


if __name__ == "__main__":
    main()
