"""A probe for issue 32: the aligned face's own code, pasted into the frame over a ThumbHash of it, then the layered
mode's shipped residual network at the input's own size over that picture. No new weights, no file format: the bytes
are counted as a file would hold them (the photo file, the residual record and 4 bytes of framing).

    python experiments/face_residual_probe.py --data ../shared/data/utkface --limit 8 --sets ffhq128 --out /tmp/probe

The face is coded as ``invcomp encode --fit align --background thumb`` codes it, with GAN inversion alone (``inv``,
``--model dcgan-utkface64``) or the default auto (``default``); the residual layer at rate r is the layered mode's
``tone,r`` step without the tone record. Sets and metrics as ``experiments/whole_faces.py``'s (whole picture, input
size). Writes ``OUT/probe.md``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))
from gc_bench import measure  # noqa: E402
from whole_faces import build_sets  # noqa: E402

from invcomp.files import atomic_write  # noqa: E402
from invcomp.identity import SAME_PERSON  # noqa: E402
from invcomp.imageio import from_image, to_pil  # noqa: E402

FACE_CODECS = {"inv": {"model": "dcgan-utkface64"}, "default": {}}


@click.command()
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--limit", default=8, show_default=True)
@click.option("--sets", default="ffhq128", show_default=True, help="Of whole_faces.py's sets; the side must be a multiple of 16.")
@click.option("--rates", default="0,0.5,1,2", show_default=True, help="Residual rates (the layered plan's tone,R).")
@click.option("--faces", "face_codecs", default="inv,default", show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
def main(data: str, limit: int, sets: str, rates: str, face_codecs: str, out: Path) -> None:
    from invcomp.codecs.modes.layer_pictures import upsample
    from invcomp.faces.decode import decode_any
    from invcomp.nets import one_thread
    from invcomp.nets.residual import load_residual
    from invcomp.service.encode import EncodeRequest, build_encoder

    torch.set_num_threads(1)
    faces = build_sets(data, limit, 0)
    residual = load_residual()
    encoders = {k: build_encoder(EncodeRequest(device="cpu", fit="align", background="thumb", **FACE_CODECS[k]))
                for k in face_codecs.split(",")}
    lines = [f"`python {' '.join(sys.argv)}`", "",
             "| set | face code, then | bytes | SSIM | MS-SSIM | PSNR dB | identity | same person | HF ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for set_name in sets.split(","):
        rows: dict[str, list[dict]] = {}
        for _, img in faces[set_name]:
            x, side = from_image(img), img.width
            for fk, enc in encoders.items():
                e = enc.codec.encode([img])[0]
                _, _, pic, _ = decode_any(e.data, cache={}, device="cpu")
                base = from_image(pic.convert("RGB"))[None]
                rows.setdefault(f"{fk}: face over ThumbHash", []).append(measure(x, pic.convert("RGB"), len(e.data), True))
                for r in (float(v) for v in rates.split(",")):
                    with torch.no_grad(), one_thread():
                        layer, rec01 = residual.module.compress(((x + 1) / 2)[None], upsample(base, side), r, 0)
                    rows.setdefault(f"{fk}: + residual at rate {r:g}", []).append(
                        measure(x, to_pil(rec01[0] * 2 - 1), len(e.data) + len(layer) + 4, True))
        for k, rs in rows.items():
            ids = [r["identity"] for r in rs if r["identity"] is not None]
            m = {q: float(np.mean([r[q] for r in rs])) for q in ("bytes", "ssim", "ms_ssim", "psnr", "hf_ratio")}
            same = f"{np.mean([d < SAME_PERSON for d in ids]):.0%}" if ids else "-"
            ident = f"{np.mean(ids):.3f}" if ids else "-"
            lines.append(f"| {set_name} | {k} | {m['bytes']:.1f} | {m['ssim']:.4f} | {m['ms_ssim']:.4f} | {m['psnr']:.2f} | "
                         f"{ident} | {same} | {m['hf_ratio']:.2f} |")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "probe.md", ("\n".join(lines) + "\n").encode(), force=True)
    click.echo("\n".join(lines))


if __name__ == "__main__":
    main()
