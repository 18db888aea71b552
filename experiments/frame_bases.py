"""Training pairs for the whole-frame residual network (issue 32): training faces framed as users send them, and the
picture that the face code alone decodes to at that size.

    python experiments/frame_bases.py --data ../shared/data/utkface --limit 3000 --out runs/frame/bases.pt

For each of ``--limit`` training-split faces (a seeded sample; held-out faces are never read) three frames are made:

- ``utk128``: the 200-px crop, Lanczos-resized to 128;
- ``ffhq128`` and ``ffhq256``: the crop reframed the FFHQ way (``experiments/ood_faces.py``'s ``reframe``), at 128
  and 256 px.

Each frame is coded as the frame codec codes its face (``invcomp encode --fit align --background thumb --model
dcgan-utkface64``, with ``--iters`` search steps from the warm start, fewer than the codec's own so that thousands of
faces take an hour, not a day) and decoded: that picture is the ``base`` the residual network is conditioned on.
Writes uint8 tensors ``x128``, ``b128`` ``(N, 3, 128, 128)`` (both 128-px framings, interleaved) and ``x256``,
``b256`` ``(N/2, 3, 256, 256)``, with the face ids. Resumable: a partial file is extended, not redone.
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import click
import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))
from ood_faces import reframe  # noqa: E402

from invcomp.data import list_images  # noqa: E402
from invcomp.files import atomic_save  # noqa: E402

log = logging.getLogger("frame_bases")


def u8(img: Image.Image) -> torch.Tensor:
    """A PIL picture -> uint8 ``(3, H, W)``."""
    return torch.from_numpy(np.asarray(img.convert("RGB"))).permute(2, 0, 1).contiguous()


@click.command()
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--limit", default=3000, show_default=True)
@click.option("--iters", default=20, show_default=True, help="Search steps after the warm start.")
@click.option("--seed", default=0, show_default=True)
@click.option("--save-every", default=100, show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
def main(data: str, limit: int, iters: int, seed: int, save_every: int, out: Path) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from invcomp.faces.decode import decode_any
    from invcomp.service.encode import EncodeRequest, build_encoder

    torch.set_num_threads(1)
    files = list_images(data, "train")
    files = [files[i] for i in sorted(np.random.default_rng(seed).permutation(len(files))[:limit])]
    state: dict = {"ids": [], "x128": [], "b128": [], "x256": [], "b256": []}
    if out.is_file():
        old = torch.load(out, weights_only=True)
        state = {"ids": list(old["ids"]), **{k: list(old[k].unbind(0)) for k in ("x128", "b128", "x256", "b256")}}
        log.info("resuming after %d faces", len(state["ids"]))
    encoder = build_encoder(EncodeRequest(device="cpu", fit="align", background="thumb", model="dcgan-utkface64",
                                          iters=iters))

    def base(img: Image.Image) -> Image.Image:
        e = encoder.codec.encode([img])[0]
        return decode_any(e.data, cache={}, device="cpu")[2].convert("RGB")

    def save() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_save({"ids": state["ids"], **{k: torch.stack(state[k]) for k in ("x128", "b128", "x256", "b256")}}, out)

    done, t0 = set(state["ids"]), time.time()
    for n, p in enumerate(files):
        if p.stem in done:
            continue
        img = Image.open(p).convert("RGB")
        far = reframe(img, np.random.default_rng([seed, n]))
        frames = {"utk128": img.resize((128, 128), Image.Resampling.LANCZOS),
                  "ffhq128": far.resize((128, 128), Image.Resampling.LANCZOS),
                  "ffhq256": far.resize((256, 256), Image.Resampling.LANCZOS)}
        try:
            bases = {k: base(v) for k, v in frames.items()}
        except Exception as e:  # noqa: BLE001  (a face the detector misses is skipped, not fatal)
            log.warning("%s: %s", p.name, e)
            continue
        state["ids"].append(p.stem)
        for k in ("utk128", "ffhq128"):
            state["x128"].append(u8(frames[k]))
            state["b128"].append(u8(bases[k]))
        state["x256"].append(u8(frames["ffhq256"]))
        state["b256"].append(u8(bases["ffhq256"]))
        if len(state["ids"]) % save_every == 0:
            save()
            log.info("%d faces, %.2f s a face", len(state["ids"]), (time.time() - t0) / max(1, len(state["ids"]) - len(done)))
    save()
    log.info("done: %d faces", len(state["ids"]))


if __name__ == "__main__":
    main()
