"""Issue 32 on real photos: does the default file fill the frame, and how well is the face drawn in it?

    python experiments/whole_photos.py --photos experiments/data/photos --out experiments/results/whole_faces/photos

For every photo in ``--photos``, the default (``invcomp encode``) and the previous default (``--mode auto``, no
background; and with ``--background thumb``) are coded and decoded as ``invcomp decode`` does. Per photo and codec:
bytes; whether the decoded frame is complete (no transparent pixel); the whole frame's SSIM and PSNR at the photo's
size (at most 1024 px on the long side, as the encoder reports it); the largest face's SSIM in the frame (the opaque
inside of its pasted crop, at most 256 px) and its identity distance (dlib, the same person below 0.6). Writes
``OUT/photos.md`` and ``OUT/photos.json``.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from invcomp.files import atomic_write  # noqa: E402

CONFIGS = {"default": {}, "previous default": {"mode": "auto"},
           "previous default, thumb": {"mode": "auto", "background": "thumb"}}


@click.command()
@click.option("--photos", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--old-encoder", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Also the default with the search before issue 33 (200 steps at 0.5 from this warm-start encoder: "
                   "git show a277fe8^:pretrained/dcgan-utkface64-encoder-f3acde28.pt, and its .json).")
def main(photos: Path, out: Path, old_encoder: str | None) -> None:
    from invcomp import metrics
    from invcomp.faces.decode import decode_any
    from invcomp.faces.frame import face_metrics, flat, frame_ssim
    from invcomp.formats import photo as container
    from invcomp.imageio import from_image
    from invcomp.service.encode import EncodeRequest, build_encoder

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    configs = dict(CONFIGS)
    if old_encoder:
        configs["default, search before issue 33"] = {"iters": 200, "lr": 0.5, "warm_start": old_encoder}
    encoders = {k: build_encoder(EncodeRequest(device="cpu", **v)) for k, v in configs.items()}
    rows: list[dict[str, Any]] = []
    files = sorted(p for p in photos.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    for p in files:
        img = Image.open(p).convert("RGB")
        for name, enc in encoders.items():
            e = enc.codec.encode([img])[0]
            if isinstance(e, Exception):
                rows.append({"photo": p.name, "codec": name, "error": str(e)})
                continue
            pic = decode_any(e.data, cache={}, device="cpu")[2]
            complete = pic.mode in ("RGB", "L")
            row: dict[str, Any] = {"photo": p.name, "codec": name, "bytes": len(e.data), "complete": complete,
                                   "frame_ssim": frame_ssim(img, pic),
                                   "frame_psnr": float(metrics.psnr(from_image(flat(pic))[None], from_image(img)[None])[0])}
            if container.is_photo(e.data):
                ph = container.unpack(e.data)
                placed = [f.placement for f in ph.faces if f.placement is not None]
                if placed:
                    row.update(face_metrics(img, pic, placed[0], with_identity=True))
            rows.append(row)
            logging.warning("%s %s: %s", p.name, name, {k: v for k, v in row.items() if k not in ("photo", "codec")})
    lines = ["`python experiments/whole_photos.py " + " ".join(sys.argv[1:]) + "`", "",
             "| photo | codec | bytes | complete | frame SSIM | frame PSNR dB | face SSIM in the frame | face identity |",
             "|---|---|---|---|---|---|---|---|"]
    f = lambda v, q: "-" if v is None else format(v, q)  # noqa: E731
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['photo']} | {r['codec']} | {r['error']} |||||| ")
            continue
        lines.append(f"| {r['photo']} | {r['codec']} | {r['bytes']} | {'yes' if r['complete'] else 'no'} | "
                     f"{r['frame_ssim']:.3f} | {r['frame_psnr']:.2f} | {f(r.get('face_ssim'), '.3f')} | "
                     f"{f(r.get('face_identity'), '.3f')} |")
    for name in configs:
        ok = [r for r in rows if r["codec"] == name and "error" not in r]
        faces = [r["face_ssim"] for r in ok if r.get("face_ssim") is not None]
        lines.append(f"| **mean** | {name} | {np.mean([r['bytes'] for r in ok]):.1f} | "
                     f"{sum(r['complete'] for r in ok)} of {len(ok)} | {np.mean([r['frame_ssim'] for r in ok]):.3f} | "
                     f"{np.mean([r['frame_psnr'] for r in ok]):.2f} | {f(np.mean(faces) if faces else None, '.3f')} "
                     f"({len(faces)} faces) | |")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "photos.json", (json.dumps(rows, indent=1) + "\n").encode(), force=True)
    atomic_write(out / "photos.md", ("\n".join(lines) + "\n").encode(), force=True)
    click.echo("\n".join(lines))


if __name__ == "__main__":
    main()
