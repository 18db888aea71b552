"""Whole faces at the size people see them: every codec judged on the whole picture at the input's own size.

    python experiments/whole_faces.py --data ../shared/data/utkface --limit 8 --out /tmp/whole_faces

The sets (built from held-out UTKFace faces, never trained on, a seeded sample):

- ``utk200``: the 200-px aligned crops as they are; ``utk128``: the same, Lanczos-resized to 128 px;
- ``ffhq128``, ``ffhq256``: the same faces reframed the FFHQ way (``experiments/ood_faces.py``'s ``reframe``: zoomed
  out 1.3-1.6x, shifted, the frame beyond the crop its own blurred edge), at 128 and 256 px.

The codecs: invcomp's configurations (``--configs``, each an :class:`~invcomp.service.encode.EncodeRequest` as the
command line would give it: ``default`` is ``invcomp encode``'s), coded and decoded as ``invcomp encode`` and
``invcomp decode`` do, the picture taken as ``decode`` writes it (RGB, its transparent frame flattened as a viewer
without alpha shows it); GC C = 2 and C = 8; WebP at its smallest file; and WebP, AVIF and JPEG XL downscaled
(Lanczos; the scale of the best MS-SSIM among 1, 0.75, 0.5, 0.35, 0.25), coded at the largest setting within the
default's bytes for that image, and upscaled back: a thumbnail scaled up, the user's real alternative.

Metrics, all over the whole picture at the input's size: bytes, bpp, SSIM, MS-SSIM, PSNR, the identity distance of
dlib's recogniser (the same person below 0.6; the impostor baseline of each set is the share of pairs of different
faces of the set called the same), the high-frequency energy ratio (1 = as sharp as the original), the BRISQUE
no-reference score (lower is better; the ``brisque`` package, its SVM shipped inside it; checked below to rank
originals above JPEG q10 above a blurred copy), and decode milliseconds on one thread (models loaded). Writes ``OUT/rows.csv``,
``OUT/summary.json`` and ``OUT/summary.md``. UTKFace is licensed for non-commercial research only: the faces are built
where the study runs and never committed.
"""
from __future__ import annotations

import io
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Optional

import click
import numpy as np
import torch
from PIL import Image, ImageFilter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))
from gc_bench import csv_bytes, measure  # noqa: E402
from gc_downscaled import best_downscaled  # noqa: E402
from ood_faces import reframe  # noqa: E402

from invcomp.classic.codecs import build_codecs  # noqa: E402
from invcomp.data import list_images  # noqa: E402
from invcomp.files import atomic_write  # noqa: E402
from invcomp.identity import SAME_PERSON  # noqa: E402
from invcomp.imageio import from_image  # noqa: E402

log = logging.getLogger("whole_faces")
SETS = ("utk200", "utk128", "ffhq128", "ffhq256")
SCALES = [1.0, 0.75, 0.5, 0.35, 0.25]
CONFIGS = {
    "default": {},
    "previous-default": {"mode": "auto"},  # the default before the detail layer: auto, --fit auto, no background
    "default-no-thumb": {"background": "none"},  # design checks of the default: no ThumbHash under the detail layer,
    "default-align": {"fit": "align"},  # and every crop aligned over a ThumbHash (not coded whole when aligned)
    "default-iters0": {"iters": 0},  # the search's share of the default (issue 33): the warm start alone,
    "default-iters20": {"iters": 20},  # and short searches
    "default-iters50": {"iters": 50},
    "default-30at0.2": {"iters": 30, "lr": 0.2},  # short searches at a lower peak rate
    "default-50at0.2": {"iters": 50, "lr": 0.2},
    "default-200at0.5": {"iters": 200, "lr": 0.5},  # the search of the release before issue 33 (its encoder: --old-encoder)
    "layered120": {"mode": "layered", "fit": "squash", "target_bytes": 120},  # at the input's side (a multiple of 16)
    "layered120-200at0.5": {"mode": "layered", "fit": "squash", "target_bytes": 120, "iters": 200, "lr": 0.5},
    "layered185": {"mode": "layered", "fit": "squash", "target_bytes": 185},
}


def build_sets(data: str, limit: int, seed: int, split: str = "holdout") -> dict[str, list[tuple[str, Image.Image]]]:
    files = list_images(data, split)  # type: ignore[arg-type]
    files = [files[i] for i in sorted(np.random.default_rng(seed).permutation(len(files))[:limit])]
    rng = np.random.default_rng([seed, 0])
    out: dict[str, list[tuple[str, Image.Image]]] = {s: [] for s in SETS}
    for p in files:
        img = Image.open(p).convert("RGB")
        far = reframe(img, rng)
        out["utk200"].append((p.stem, img))
        out["utk128"].append((p.stem, img.resize((128, 128), Image.Resampling.LANCZOS)))
        out["ffhq128"].append((p.stem, far.resize((128, 128), Image.Resampling.LANCZOS)))
        out["ffhq256"].append((p.stem, far.resize((256, 256), Image.Resampling.LANCZOS)))
    return out


def brisque_scorer() -> Optional[Any]:
    """The BRISQUE score (lower is better) of an RGB picture, or ``None`` where the package is not installed."""
    try:
        from brisque import BRISQUE
    except ImportError:
        log.warning("no BRISQUE score: pip install 'brisque[opencv-python-headless]' 'opencv-python-headless<4.11'")
        return None
    model = BRISQUE(url=False)
    return lambda img: float(model.score(np.asarray(img.convert("RGB"))))


def check_brisque(score: Any, faces: list[Image.Image]) -> dict[str, Any]:
    """Does the score rank originals above JPEG q10 above a blurred copy (sigma 2) on these faces?"""
    def jpeg(img: Image.Image) -> Image.Image:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=10)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")

    rows = [(score(f), score(jpeg(f)), score(f.filter(ImageFilter.GaussianBlur(2)))) for f in faces]
    ordered = [a < b < c for a, b, c in rows]
    means = np.mean(rows, axis=0).tolist()
    return {"original": means[0], "jpeg_q10": means[1], "blur_sigma2": means[2],
            "ranked_in_order": float(np.mean(ordered)), "faces": len(rows)}


def impostor_share(faces: list[Image.Image]) -> Optional[float]:
    """The share of pairs of different faces of the set that the recogniser calls the same person."""
    from invcomp.identity import picture_distance

    d = [picture_distance(a, b if b.size == a.size else b.resize(a.size, Image.Resampling.LANCZOS))
         for i, a in enumerate(faces) for b in faces[i + 1:]]  # a set of mixed sizes: each pair at the first's
    d = [v for v in d if v is not None]
    return float(np.mean([v < SAME_PERSON for v in d])) if d else None


DECODE_CACHE: dict = {}


def invcomp_row(request: Any, img: Image.Image) -> tuple[dict, Image.Image]:
    """Encode ``img`` with ``request``'s encoder and decode the file as ``invcomp decode`` does (one thread; the decode
    milliseconds are the second decode's, its models loaded)."""
    from invcomp.faces.decode import decode_any

    enc = request.codec.encode([img], goal=request.goal)[0]
    if isinstance(enc, Exception):
        raise enc
    decode_any(enc.data, cache=DECODE_CACHE, device="cpu")  # the models loaded once, as a decode server keeps them
    t0 = time.perf_counter()
    _, _, pic, _ = decode_any(enc.data, cache=DECODE_CACHE, device="cpu")
    ms = 1000 * (time.perf_counter() - t0)
    return {"bytes": len(enc.data), "decode_ms": ms, "data": enc.data}, pic.convert("RGB")


def detail_curve(request: Any, img: Image.Image, data: bytes, rates: list[float]) -> list[tuple[float, tuple[int, Image.Image]]]:
    """The default's file re-coded with its detail layer at each rate (the faces and background as coded), each
    decoded as ``invcomp decode`` does: ``(rate, (bytes, picture))``."""
    from dataclasses import replace

    from invcomp.faces import detail
    from invcomp.faces.decode import decode_any
    from invcomp.faces.detail_encode import decoded_base
    from invcomp.formats import photo as container

    photo = container.unpack(data)
    if photo.detail is None:
        return []
    codec, cache = request.codec, {}
    base = decoded_base(photo, cache)
    out = []
    for r in rates:
        d = detail.code(img.convert("RGB"), base, codec.detail_net, round(4 * r), codec.options.detail_side)
        file = container.pack(replace(photo, detail=d))
        out.append((r, (len(file), decode_any(file, cache=cache, device="cpu")[2].convert("RGB"))))
    return out


GRID_COLUMNS = (("invcomp previous-default", "previous\ndefault"), ("invcomp default", "new default"),
                ("gc-utkface-c2", "GC C=2"), ("webp downscaled", "WebP, down-\nscaled"))
GRID_CELL = 160


def grid(shown: list[tuple[str, Image.Image, dict]]) -> bytes:
    """A WebP picture: one row per face (its set and side on the left), the original then :data:`GRID_COLUMNS`, each
    picture at :data:`GRID_CELL` px (Lanczos) with its bytes under it."""
    from PIL import ImageDraw

    c, lab, side = GRID_CELL, 30, 70
    cols = [("original", "original")] + list(GRID_COLUMNS)
    canvas = Image.new("RGB", (side + (c + 4) * len(cols) + 4, lab + (c + 16) * len(shown) + 4), "white")
    draw = ImageDraw.Draw(canvas)
    for j, (_, head) in enumerate(cols):
        for k, part in enumerate(head.split("\n")):
            draw.text((side + 4 + j * (c + 4), 2 + 12 * k), part, fill="black")
    for i, (set_name, img, cells) in enumerate(shown):
        y = lab + i * (c + 16)
        draw.text((4, y + c // 2 - 12), f"{set_name}", fill="black")
        draw.text((4, y + c // 2), f"{img.width}x{img.height}", fill="black")
        for j, (key, _) in enumerate(cols):
            n, pic = (None, img) if key == "original" else cells.get(key, (None, None))
            x = side + 4 + j * (c + 4)
            if pic is not None:
                canvas.paste(pic.convert("RGB").resize((c, c), Image.Resampling.LANCZOS), (x, y))
            draw.text((x, y + c + 1), "" if key == "original" else (f"{n} B" if n is not None else "cannot reach"),
                      fill="black")
    buf = io.BytesIO()
    canvas.save(buf, "WEBP", quality=90, method=6)
    return buf.getvalue()


@click.command()
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--limit", default=8, show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--sets", default=",".join(SETS), show_default=True)
@click.option("--configs", default=",".join(CONFIGS), show_default=True,
              help=f"Of {', '.join(CONFIGS)} (layeredN: --mode layered at the input's side, --target-bytes N).")
@click.option("--seed", default=0, show_default=True)
@click.option("--extra", multiple=True, metavar="NAME=DIR",
              help="Another set: every image in DIR as it is (e.g. LFW and the portraits: experiments/lfw_faces.py).")
@click.option("--split", default="holdout", show_default=True, type=click.Choice(["holdout", "val"]),
              help="UTKFace's held-out faces (the results), or its validation faces (to choose defaults on).")
@click.option("--detail-network", default=None, help="The default's detail network (a name in pretrained/layered/).")
@click.option("--grid", "grid_faces", default=0, show_default=True,
              help="Also draw OUT/grid.webp: this many faces of each set, in the columns of GRID_COLUMNS.")
@click.option("--curve", default="", help="Detail rates (e.g. 0,0.5,1,2,3): the default's file re-coded at each, its "
              "faces kept, for an RD curve (rows 'invcomp detail R').")
@click.option("--peers", "peers_dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="A folder with a peers.json manifest (experiments/pack_peers.py) of CompressAI peers to run on every "
                   "set whose side is their training resolution (every model of every family).")
@click.option("--old-encoder", default=None, type=click.Path(exists=True, dir_okay=False),
              help="The warm-start encoder of the release before issue 33 (git show a277fe8^:pretrained/dcgan-utkface64-"
                   "encoder-f3acde28.pt, and its .json), for the *-200at0.5 configs: the previous search.")
def main(data: str, limit: int, out: Path, sets: str, configs: str, seed: int, extra: tuple[str, ...], split: str, detail_network: Optional[str],
         grid_faces: int, curve: str, peers_dir: Optional[str], old_encoder: Optional[str]) -> None:
    from invcomp.codecs import load_codec
    from invcomp.service.encode import EncodeRequest, build_encoder

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    faces = build_sets(data, limit, seed, split)
    for spec in extra:
        set_name, folder = spec.split("=", 1)
        faces[set_name] = [(p.stem, Image.open(p).convert("RGB")) for p in sorted(Path(folder).iterdir())
                           if p.suffix.lower() in (".png", ".jpg", ".jpeg")]
        sets = sets + "," + set_name if sets else set_name
    classic = build_codecs()
    score = brisque_scorer()
    summary: dict[str, Any] = {"command": " ".join(["python", *sys.argv]), "sets": {}}
    if score is not None:
        summary["brisque_check"] = check_brisque(score, [im for _, im in faces["utk200"]])
    gcs = {name: load_codec(name, mode="gc") for name in ("gc-utkface-c2", "gc-utkface-c8")}
    from invcomp.nets.peers import decode as peer_decode, encode as peer_encode, read_manifest

    peer_families = list(read_manifest(Path(peers_dir)).values()) if peers_dir else []
    rows: list[dict] = []
    shown: list[tuple[str, Image.Image, dict[str, tuple[Optional[int], Optional[Image.Image]]]]] = []
    for set_name in sets.split(","):
        side = faces[set_name][0][1].width
        encoders = {}
        for c in configs.split(","):
            opts = dict(CONFIGS[c])
            if opts.get("mode") == "layered":
                opts["resolution"] = max(64, side // 16 * 16)
            if detail_network and "mode" not in opts:  # the configs with the detail layer
                opts["detail_network"] = detail_network
            if c.endswith("200at0.5") and old_encoder:
                opts["warm_start"] = old_encoder
            encoders[c] = build_encoder(EncodeRequest(**opts, device="cpu"))
        summary["sets"][set_name] = {"side": side, "faces": len(faces[set_name]),
                                     "impostors_same_person": impostor_share([im for _, im in faces[set_name]])}
        for k, (name, img) in enumerate(faces[set_name]):
            x = from_image(img)
            base_bytes = None
            cells: dict[str, tuple[Optional[int], Optional[Image.Image]]] = {}
            if k < grid_faces:
                shown.append((set_name, img, cells))
            for c, enc in encoders.items():
                try:
                    info, pic = invcomp_row(enc, img)
                except Exception as e:  # noqa: BLE001  (one face's refusal is that row's)
                    log.warning("%s %s %s: %s", set_name, name, c, e)
                    continue
                row = {"set": set_name, "face": name, "codec": f"invcomp {c}", **measure(x, pic, info["bytes"], True),
                       "decode_ms": info["decode_ms"], "brisque": score(pic) if score else None}
                base_bytes = base_bytes or info["bytes"]
                rows.append(row)
                cells[f"invcomp {c}"] = (info["bytes"], pic)
                if c == "default" and curve:
                    for r, (n, curve_pic) in detail_curve(enc, img, info["data"], [float(v) for v in curve.split(",")]):
                        rows.append({"set": set_name, "face": name, "codec": f"invcomp detail {r:g}",
                                     **measure(x, curve_pic, n, True)})
            for fam in peer_families:
                if fam.resolution != side:
                    continue
                for q, m in enumerate(fam.models):
                    data_p = peer_encode(fam, img, q)
                    pic = peer_decode(fam, data_p).convert("RGB")
                    rows.append({"set": set_name, "face": name, "codec": f"{fam.name} ({fam.resolution} px) λ={m['lmbda']:g}",
                                 **measure(x, pic, len(data_p), True)})
            for g, codec in gcs.items():
                enc = codec.encode([img])[0]
                t0 = time.perf_counter()
                _, pixels = codec.decode_pixels(enc.data)
                ms = 1000 * (time.perf_counter() - t0)
                pic = Image.fromarray(pixels)
                rows.append({"set": set_name, "face": name, "codec": g, **measure(x, pic, len(enc.data), True),
                             "decode_ms": ms, "brisque": score(pic) if score else None})
                cells[g] = (len(enc.data), pic)
            for cname in ("webp", "avif", "jpegxl"):  # each classic codec's smallest file, at the input's size
                if classic[cname].unavailable():
                    continue
                data_q0 = classic[cname].encode(img, classic[cname].knob.low)
                pic = classic[cname].decode(data_q0).convert("RGB")
                rows.append({"set": set_name, "face": name, "codec": f"{cname} smallest",
                             **measure(x, pic, len(data_q0), True), "brisque": score(pic) if score else None})
            rows.append({"set": set_name, "face": name, "codec": "original", "bytes": 0, "bpp": 0, "ssim": 1.0,
                         "ms_ssim": 1.0, "psnr": float("inf"), "hf_ratio": 1.0, "identity": 0.0,
                         "brisque": score(img) if score else None})
            for cname in ("webp", "avif", "jpegxl"):
                if base_bytes is None or classic[cname].unavailable():
                    continue
                best = best_downscaled(classic[cname], img, x, base_bytes, SCALES, True, {}, keep_picture=True)
                picture = best.pop("picture") if best else None
                rows.append({"set": set_name, "face": name, "codec": f"{cname} downscaled, default's bytes",
                             **(best or {"bytes": None}), "cannot_reach": best is None})
                cells[f"{cname} downscaled"] = (best["bytes"] if best else None, picture)
            log.info("%s %s done", set_name, name)
    out.mkdir(parents=True, exist_ok=True)
    if shown:
        atomic_write(out / "grid.webp", grid(shown), force=True)
    atomic_write(out / "rows.csv", csv_bytes(rows), force=True)
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["set"], r["codec"]), []).append(r)
    lines = ["| set | codec | bytes | bpp | SSIM | MS-SSIM | PSNR dB | identity | same person | HF ratio | BRISQUE | decode ms |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    table = {}
    for (s, c), rs in groups.items():
        ok = [r for r in rs if r.get("bytes") is not None]
        if not ok:  # e.g. AVIF: no downscale of any face fits the default's bytes
            lines.append(f"| {s} | {c} | cannot reach on all {len(rs)} faces |" + " |" * 9)
            table[f"{s} | {c}"] = {"n": 0, "cannot_reach": len(rs)}
            continue
        ids = [r["identity"] for r in ok if r.get("identity") is not None]
        m = {k: float(np.mean([r[k] for r in ok])) for k in ("bytes", "bpp", "ssim", "ms_ssim", "psnr", "hf_ratio")}
        m.update(identity=float(np.mean(ids)) if ids else None,
                 same_person=float(np.mean([d < SAME_PERSON for d in ids])) if ids else None,
                 decode_ms=float(np.median([r["decode_ms"] for r in ok])) if "decode_ms" in ok[0] else None,
                 brisque=float(np.mean([r["brisque"] for r in ok])) if ok[0].get("brisque") is not None else None,
                 n=len(ok), cannot_reach=len(rs) - len(ok))
        table[f"{s} | {c}"] = m
        f = lambda v, p: "-" if v is None else format(v, p)  # noqa: E731
        lines.append(f"| {s} | {c} | {m['bytes']:.1f} | {m['bpp']:.3f} | {m['ssim']:.4f} | {m['ms_ssim']:.4f} | "
                     f"{m['psnr']:.2f} | {f(m['identity'], '.3f')} | {f(m['same_person'], '.0%')} | {m['hf_ratio']:.2f} | "
                     f"{f(m['brisque'], '.1f')} | {f(m['decode_ms'], '.0f')} |")
    summary["table"] = table
    atomic_write(out / "summary.json", (json.dumps(summary, indent=1) + "\n").encode(), force=True)
    atomic_write(out / "summary.md", ("\n".join([f"`{summary['command']}`", ""] + lines) + "\n").encode(), force=True)
    click.echo("\n".join(lines))


if __name__ == "__main__":
    main()
