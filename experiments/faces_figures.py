"""Faces in real photos, measured: alignment on synthetic photos, other framings, real photos, and speed.

    python experiments/faces_figures.py synthetic --data ../shared/data/utkface --kodak ../shared/data/kodak --limit 60
    python experiments/faces_figures.py reframed --data ../shared/data/utkface --limit 60
    python experiments/faces_figures.py photos --photos experiments/data/photos
    python experiments/faces_figures.py speed --photos experiments/data/photos

Each prints a table and writes JSON under ``experiments/results/faces/``. The codec is what ``invcomp encode``
uses by default (``--mode auto``), at one byte budget for every arm (``--bytes``, the whole file: a photo file
pays its wrapper and placement out of it). Faces are held-out UTKFace faces (never trained on); their pictures
are not committed (UTKFace's terms).

- **synthetic**: each face pasted (feathered) into a Kodak image at a random side (0.1-0.8 of the frame's short
  side), rotation (+-30 degrees) and position, so the true placement is known. Detection recall; the alignment
  error of the recovered placement in 64-px generator pixels, against the true crop (which includes the face's
  own offset from the mean template) and against the same detector on the clean face (the detector's error in
  the photo alone); and the coded face's SSIM and identity when aligned by the detector against coding the
  true crop, both measured in the frame on the same region.
- **reframed**: each face zoomed out and shifted the way FFHQ and CelebA-HQ crop (``experiments/ood_faces.py``),
  coded with ``--fit crop`` and ``--fit align``, against coding the original UTKFace framing.
"""
from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Optional

import click
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from invcomp.codecs.rate import RateTarget  # noqa: E402
from invcomp.faces import frame
from invcomp.landmarks import align
from invcomp.landmarks import detect
from invcomp.formats import photo as container  # noqa: E402
from invcomp.identity import SAME_PERSON  # noqa: E402
from invcomp.imageio import load_image, to_pil  # noqa: E402
from invcomp.files import atomic_write  # noqa: E402

log = logging.getLogger("faces_figures")
RESULTS = Path(__file__).resolve().parent / "results" / "faces"


def make_codec(fit: str, mode: Optional[str], background: str = "none", faces: str = "largest") -> Any:
    from invcomp.service.encode import EncodeRequest, build_encoder

    return build_encoder(EncodeRequest(fit=fit, background=background, faces=faces, mode=mode)).codec


def code(codec: Any, img: Image.Image, budget: int) -> Any:
    """The Encoded of one image at ``budget`` bytes (the whole file)."""
    out = codec.encode([img], goal=RateTarget(max_bytes=budget))[0]
    if isinstance(out, Exception):
        raise out
    return out


def decoded_frame(enc: Any, cache: dict) -> Image.Image:
    """What ``invcomp decode`` writes for a file (the original frame's size)."""
    from invcomp.faces.decode import decode_any

    return decode_any(enc.data, cache=cache)[2]


def in_frame(original: Image.Image, decoded: Image.Image, p: align.Placement) -> dict:
    return frame.face_metrics(original, decoded, p, with_identity=True)


def summary(rows: list[dict], keys: list[str]) -> dict:
    out = {}
    for k in keys:
        v = [r[k] for r in rows if r.get(k) is not None]
        out[k] = {"mean": float(np.mean(v)) if v else None, "median": float(np.median(v)) if v else None, "n": len(v)}
        if k.endswith("identity") and v:
            out[k]["same_person"] = float(np.mean(np.array(v) < SAME_PERSON))
    return out


def held_out(data: Path, limit: int, seed: int) -> list[Path]:
    from invcomp.data import list_images

    files = list_images(data, "holdout")
    rng = np.random.default_rng(seed)
    return [files[i] for i in sorted(rng.choice(len(files), size=min(limit, len(files)), replace=False))]


def random_placement(rng: np.random.Generator, w: int, h: int) -> align.Placement:
    angle = rng.uniform(-30, 30)
    spread = abs(math.cos(math.radians(angle))) + abs(math.sin(math.radians(angle)))  # the rotated crop's box / side
    side = min(rng.uniform(0.1, 0.8) * min(w, h), min(w, h) / spread - 2)
    half = side / 2 * spread
    return align.Placement(rng.uniform(half, w - half), rng.uniform(half, h - half), side, angle)


@click.group()
def main() -> None:
    """Figures of the real-photos work."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")


@main.command()
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--kodak", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--limit", default=60, show_default=True)
@click.option("--bytes", "budget", default=100, show_default=True)
@click.option("--mode", default=None, help="Codec mode  [default: auto, as invcomp encode]")
@click.option("--seed", default=0, show_default=True)
def synthetic(data: Path, kodak: Path, limit: int, budget: int, mode: Optional[str], seed: int) -> None:
    """Held-out faces pasted into Kodak frames at known placements."""
    rng = np.random.default_rng(seed)
    backs = sorted(kodak.glob("*.png"))
    codec, rows = make_codec("crop", mode), []
    for i, f in enumerate(held_out(data, limit, seed)):
        face = load_image(f)
        back = load_image(backs[i % len(backs)])
        truth = random_placement(rng, *back.size)
        photo = align.paste(back.copy(), face, truth)
        own = detect.detect(face, limit=1)
        found = detect.detect(photo)
        row: dict[str, Any] = {"file": f.name, "side": truth.side, "angle": truth.angle, "found": False}
        match = [q for q in (align.placement_from_landmarks(x.points) for x in found)
                 if math.hypot(q.cx - truth.cx, q.cy - truth.cy) < 0.3 * truth.side]
        row["false_positives"] = len(found) - min(1, len(match))
        if match:
            q = container.quantise(match[0])
            row.update(found=True, error_vs_truth=align.alignment_error(q, truth, 64))
            if own:  # the clean face's own placement, carried into the photo
                r = align.placement_from_landmarks(own[0].points)
                k = truth.side / face.size[0]
                centre = truth.to_frame(np.array([[r.cx, r.cy]]) / face.size[0])[0]
                ref = align.Placement(centre[0], centre[1], r.side * k, truth.angle + r.angle)
                row["error_vs_detector_on_clean_face"] = align.alignment_error(q, ref, 64)
            a = code(codec, align.warp_crop(photo, q, codec.resolution), budget)  # aligned by the detector
            b = code(codec, face, budget)  # the true crop: the face's own framing
            for tag, enc, p in (("detected", a, q), ("truth", b, truth)):
                dec = align.paste(photo.copy(), to_pil(enc.recon), p)
                m = in_frame(photo, dec, truth)
                row.update({f"{tag}_bytes": len(enc.data), f"{tag}_ssim": m["face_ssim"],
                            f"{tag}_identity": m["face_identity"]})
        rows.append(row)
        log.info("%s: side %.0f, angle %+.0f: %s", f.name, truth.side, truth.angle,
                 f"error {row['error_vs_truth']:.2f} px, SSIM {row['detected_ssim']:.3f} vs {row['truth_ssim']:.3f}"
                 if row["found"] else "not found")
        synthetic_summary(rows, limit, budget, seed, mode)


def synthetic_summary(rows: list[dict], limit: int, budget: int, seed: int, mode: Optional[str]) -> None:
    """Write ``synthetic.json`` from the rows so far."""
    bins = [(0, 60), (60, 120), (120, 240), (240, 1e9)]
    recall = {f"{lo:g}-{hi:g}": {"n": len(b), "recall": float(np.mean(b)) if b else None}
              for lo, hi in bins for b in [[r["found"] for r in rows if lo <= r["side"] < hi]]}
    out = {"command": f"python experiments/faces_figures.py synthetic --limit {limit} --bytes {budget} --seed {seed}"
                      + (f" --mode {mode}" if mode else ""), "complete": len(rows) == limit, "faces": len(rows),
           "recall": float(np.mean([r["found"] for r in rows])), "recall_by_crop_side_px": recall,
           "false_positives": int(sum(r["false_positives"] for r in rows)),
           **summary([r for r in rows if r["found"]], ["error_vs_truth", "error_vs_detector_on_clean_face", "detected_ssim",
                                                       "truth_ssim", "detected_identity", "truth_identity",
                                                       "detected_bytes", "truth_bytes"]), "rows": rows}
    write("synthetic.json", out, quiet=len(rows) < limit)


def write(name: str, out: dict, quiet: bool = False) -> None:
    """Write one result file (after every item, so that a stopped run keeps what it measured)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write(RESULTS / name, (json.dumps(out, indent=1) + "\n").encode(), force=True)
    if not quiet:
        log.info("%s", json.dumps({k: v for k, v in out.items() if k != "rows"}, indent=1))


@main.command()
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--limit", default=60, show_default=True)
@click.option("--bytes", "budget", default=100, show_default=True)
@click.option("--mode", default=None)
@click.option("--seed", default=0, show_default=True)
def reframed(data: Path, limit: int, budget: int, mode: Optional[str], seed: int) -> None:
    """Faces framed like FFHQ / CelebA-HQ: --fit crop against --fit align, against the original framing."""
    from ood_faces import reframe

    from invcomp import metrics
    from invcomp.codecs import stored_pixels

    rng = np.random.default_rng(seed)
    crop, aligned = make_codec("crop", mode), make_codec("align", mode)
    rows = []
    for f in held_out(data, limit, seed):
        face = load_image(f)
        wide = reframe(face, rng)
        row: dict[str, Any] = {"file": f.name}
        for tag, codec, img in (("original", crop, face), ("crop", crop, wide), ("align", aligned, wide)):
            enc = code(codec, img, budget)
            m = metrics.quality(stored_pixels(enc.recon[None]), enc.target[None], with_lpips=False, with_identity=True)[0]
            row.update({f"{tag}_bytes": len(enc.data), f"{tag}_ssim": m["ssim"], f"{tag}_identity": m["identity"],
                        f"{tag}_fit": enc.extra.get("photo", {}).get("fit")})
        rows.append(row)
        log.info("%s: SSIM original %.3f, crop %.3f, align %.3f (%s)", f.name, row["original_ssim"], row["crop_ssim"],
                 row["align_ssim"], row["align_fit"])
        keys = [f"{t}_{k}" for t in ("original", "crop", "align") for k in ("bytes", "ssim", "identity")]
        out = {"command": f"python experiments/faces_figures.py reframed --limit {limit} --bytes {budget} --seed {seed}"
                          + (f" --mode {mode}" if mode else ""), "faces": len(rows), "complete": len(rows) == limit,
               "aligned_share": float(np.mean([r["align_fit"] == "align" for r in rows])), **summary(rows, keys), "rows": rows}
        write("reframed.json", out, quiet=len(rows) < limit)


@main.command()
@click.option("--photos", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--bytes", "budget", default=100, show_default=True)
@click.option("--mode", default=None)
@click.option("--backgrounds", default="none,thumb,webp:10,webp:40", show_default=True)
def photos(photos: Path, budget: int, mode: Optional[str], backgrounds: str) -> None:
    """Real photos: --fit crop against --fit align at the same bytes, in the original frame."""
    files = sorted(p for p in photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    crop, cache, rows = make_codec("crop", mode), {}, []
    bgs = [b for b in backgrounds.split(",") if b]
    for f in files:
        img = load_image(f)
        found = detect.detect(img)
        row: dict[str, Any] = {"file": f.name, "width": img.width, "height": img.height, "faces_found": len(found)}
        if not found:
            rows.append(row)
            log.info("%s: no face found", f.name)
            continue
        p = container.quantise(align.placement_from_landmarks(found[0].points))
        row["face_side"] = p.side
        enc = code(crop, img, budget)
        dec = decoded_frame(enc, cache)
        m = in_frame(img, dec, p)
        row["crop_frame_ssim"] = frame.frame_ssim(img, dec)
        row.update(crop_bytes=len(enc.data), crop_ssim=m["face_ssim"], crop_psnr=m["face_psnr"], crop_identity=m["face_identity"])
        for bg in bgs:
            enc = code(make_codec("align", mode, bg), img, budget + (0 if bg == "none" else _bg_bytes(img, bg, p)))
            dec = decoded_frame(enc, cache)
            m = in_frame(img, dec, p)
            tag = "align" if bg == "none" else f"align_{bg}"
            row.update({f"{tag}_bytes": len(enc.data), f"{tag}_ssim": m["face_ssim"], f"{tag}_psnr": m["face_psnr"],
                        f"{tag}_identity": m["face_identity"], f"{tag}_frame_ssim": frame.frame_ssim(img, dec)})
        rows.append(row)
        log.info("%s: face SSIM crop %.3f, align %.3f", f.name, row["crop_ssim"] or 0, row["align_ssim"] or 0)
        keys = sorted({k for r in rows for k in r if k.endswith(("_bytes", "_ssim", "_psnr", "_identity"))})
        out = {"command": f"python experiments/faces_figures.py photos --photos {photos} --bytes {budget} --backgrounds "
                          f"{backgrounds}" + (f" --mode {mode}" if mode else ""), "photos": len(rows),
               "complete": len(rows) == len(files), "with_a_face": sum("crop_ssim" in r for r in rows),
               **summary([r for r in rows if "crop_ssim" in r], keys), "rows": rows}
        write("photos.json", out, quiet=len(rows) < len(files))


def _bg_bytes(img: Image.Image, bg: str, p: align.Placement) -> int:
    """What the background layer adds to a photo file (so the faces get the same budget in every arm)."""
    from invcomp.faces import background

    name, q = background.parse(bg)
    data = background.encode(img, name, q, [p])
    return 1 + len(container._varint(len(data))) + len(data)


@main.command()
@click.option("--photos", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--names", default="astronaut-collins.png,obama-oval-office-2012.jpg,kodim15-face-paint.png", show_default=True)
@click.option("--bytes", "budget", default=100, show_default=True)
@click.option("--mode", default=None)
@click.option("--height", default=300, show_default=True, help="Row height of the picture (px).")
def picture(photos: Path, names: str, budget: int, mode: Optional[str], height: int) -> None:
    """The README's picture: each photo, then --fit crop, --fit align with a ThumbHash and with WebP q20, at the
    same face budget, with the bytes of each file."""
    from PIL import ImageDraw

    arms = [("crop", "none"), ("align", "thumb"), ("align", "webp:20")]
    cache, rows, info = {}, [], []
    for name in names.split(","):
        img = load_image(photos / name)
        p = container.quantise(align.placement_from_landmarks(detect.detect(img)[0].points))
        tiles = [("original", img)]
        for fit, bg in arms:
            extra = 0 if bg == "none" or fit == "crop" else _bg_bytes(img, bg, p)
            enc = code(make_codec(fit, mode, bg), img, budget + extra)
            dec = frame.flat(decoded_frame(enc, cache))
            tiles.append((f"{fit}{'' if bg == 'none' else ' + ' + bg}: {len(enc.data)} B", dec))
            info.append({"photo": name, "fit": fit, "background": bg, "bytes": len(enc.data),
                         **frame.face_metrics(img, dec, p)})
        rows.append(tiles)
    w = lambda im: round(im.width * height / im.height)  # noqa: E731
    width = max(sum(w(t) for _, t in tiles) for tiles in rows)
    canvas = Image.new("RGB", (width, (height + 18) * len(rows)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for r, tiles in enumerate(rows):
        x = 0
        for label, t in tiles:
            canvas.paste(t.convert("RGB").resize((w(t), height), Image.Resampling.LANCZOS), (x, r * (height + 18) + 18))
            draw.text((x + 4, r * (height + 18) + 3), label, fill=(0, 0, 0))
            x += w(t)
    RESULTS.mkdir(parents=True, exist_ok=True)
    canvas.save(RESULTS / "photos.webp", "WEBP", quality=80, method=6)
    write("picture.json", {"command": f"python experiments/faces_figures.py picture --photos {photos} --names {names} "
                                      f"--bytes {budget}" + (f" --mode {mode}" if mode else ""), "tiles": info})


@main.command()
@click.option("--photos", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--repeats", default=3, show_default=True)
def speed(photos: Path, repeats: int) -> None:
    """Detection and alignment time per photo at 1, 12 and 24 megapixels (1 thread)."""
    import torch

    torch.set_num_threads(1)
    files = sorted(p for p in photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:5]
    out: dict[str, Any] = {"command": f"python experiments/faces_figures.py speed --photos {photos} --repeats {repeats}"}
    for mp in (1, 12, 24):
        times = []
        for f in files:
            img = load_image(f)
            s = math.sqrt(mp * 1e6 / (img.width * img.height))
            big = img.resize((round(img.width * s), round(img.height * s)), Image.Resampling.BICUBIC)
            for _ in range(repeats):
                t0 = time.perf_counter()
                found = detect.detect(big)
                if found:
                    align.warp_crop(big, align.placement_from_landmarks(found[0].points), 64)
                times.append(time.perf_counter() - t0)
        out[f"{mp}MP"] = {"median_ms": 1000 * float(np.median(times)), "p90_ms": 1000 * float(np.percentile(times, 90)),
                          "runs": len(times)}
        log.info("%d MP: median %.0f ms", mp, out[f"{mp}MP"]["median_ms"])
    write("speed.json", out)


if __name__ == "__main__":
    main()
