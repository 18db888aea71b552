"""Ship the detail layer's network (issue 32): float16 parameters, its config, and proof that float16 costs nothing.

    python experiments/pack_frame_residual.py --run runs/frame/run1 --data runs/frame/bases.pt \
        --name residual-frame-utkface

Reads ``RUN/model.pt`` (the best snapshot) and ``RUN/model.json``; writes ``pretrained/layered/NAME-SHA8.pt``
(parameters in float16, GDN's constant buffers in float32, no entropy tables: the loader rebuilds them) and
``NAME.json`` (config, sha256, ``"frame": true``, training record). Before writing, it codes the training file's
held-out frames (the trainer's ``eval_faces``, never trained on) at 128 and 256 px, every rate, with the float32 and
the float16 parameters, through the real coder (``compress`` then ``decompress``), and stores the mean bytes and
PSNR of both in the JSON (``fp16_check``).
"""
from __future__ import annotations

import json
import logging
import sys
import tempfile
from pathlib import Path

import click
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from invcomp.files import atomic_write, sha256_file, write_json  # noqa: E402
from invcomp.nets.residual import load_residual, residual_dir  # noqa: E402

log = logging.getLogger("pack_frame_residual")


def _measure(weights: Path, cfg: dict, frames: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, list[float]]:
    """Mean (bytes, PSNR) per size and rate of the real coder with these weights."""
    with tempfile.TemporaryDirectory() as tmp:
        pt, js = Path(tmp) / "r.pt", Path(tmp) / "r.json"
        pt.write_bytes(weights.read_bytes())
        js.write_text(json.dumps({**cfg, "weights": "r.pt"}))
        net = load_residual(str(pt))
        out = {}
        torch.set_num_threads(1)
        with torch.no_grad():
            for size, (x, b) in frames.items():
                for rate in range(net.rates):
                    n, p = [], []
                    for i in range(x.shape[0]):
                        xi, bi = x[i:i + 1].float() / 255, b[i:i + 1].float() / 255
                        data, _ = net.module.compress(xi, bi, float(rate), 0)
                        rec = net.module.decompress(data, bi, float(rate), 0)
                        n.append(len(data))
                        p.append(float(-10 * torch.log10((rec - xi).pow(2).mean())))
                    out[f"{size} rate {rate}"] = [round(sum(n) / len(n), 3), round(sum(p) / len(p), 3)]
        return out


@click.command()
@click.option("--run", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--data", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The training file (experiments/frame_bases.py): its held-out frames check float16.")
@click.option("--name", default="residual-frame-utkface", show_default=True)
@click.option("--limit", default=16, show_default=True, help="Held-out frames of each size to check on.")
@click.option("--description", default="conditional variable-rate residual coder (CompressAI layers, N=32, M=48, 8 rates), "
              "the default's whole-frame detail layer over dcgan-utkface64's faces pasted over a ThumbHash, fine-tuned from "
              "residual-utkface on UTKFace train faces framed at 128 and 256 px on the CPU (non-commercial research use)")
def main(run: Path, data: str, name: str, limit: int, description: str) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    trained = json.loads((run / "model.json").read_text())
    state = torch.load(run / "model.pt", map_location="cpu", weights_only=True)
    params = {k for k, v in state.items() if v.is_floating_point() and not k.startswith("gaussian.")
              and "pedestal" not in k and "bound" not in k}
    packed = {k: (v.half() if k in params else v) for k, v in state.items() if not k.startswith("gaussian.")}
    fp32 = {k: v for k, v in state.items() if not k.startswith("gaussian.")}
    eval_faces = int(trained["training"]["config"]["eval_faces"])
    d = torch.load(data, map_location="cpu", weights_only=True)
    n = d["x256"].shape[0]
    frames = {"128px": (d["x128"][2 * (n - eval_faces):][:limit], d["b128"][2 * (n - eval_faces):][:limit]),
              "256px": (d["x256"][n - eval_faces:][:limit], d["b256"][n - eval_faces:][:limit])}
    training = json.loads(json.dumps(trained["training"]))  # the run's paths, as a checkout names them
    training["config"].update(data=f"runs/frame/{Path(training['config']['data']).name}",
                              out=f"runs/frame/{Path(training['config']['out']).name}")
    cfg = {"N": trained["N"], "M": trained["M"], "rates": trained["rates"], "base": "dcgan-utkface64", "frame": True,
           "description": description, "lambdas": trained["lambdas"], "ssim_weight": trained["ssim_weight"],
           "training": training}
    with tempfile.TemporaryDirectory() as tmp:
        p32, p16 = Path(tmp) / "fp32.pt", Path(tmp) / "fp16.pt"
        torch.save(fp32, p32)
        torch.save(packed, p16)
        check = {"fp32": _measure(p32, cfg, frames), "fp16": _measure(p16, cfg, frames)}
        for k in check["fp32"]:
            log.info("%s: fp32 %s, fp16 %s", k, check["fp32"][k], check["fp16"][k])
        digest = sha256_file(p16)
        out = residual_dir() / f"{name}-{digest[:8]}.pt"
        atomic_write(out, p16.read_bytes(), force=True)  # the checked file itself (torch.save names its archive)
    if sha256_file(out) != digest:
        raise SystemExit("the saved weights do not hash as the checked ones")
    write_json({**cfg, "weights": out.name, "sha256": digest,
                "fp16_check": {"frames": f"{limit} held-out frames a size of {Path(data).name}", **check}},
               residual_dir() / f"{name}.json")
    log.info("wrote %s (%d bytes) and %s.json", out, out.stat().st_size, name)


if __name__ == "__main__":
    main()
