"""Pictures: GC against HEIF (the BPG stand-in) at GC's bytes and at twice them, on 3 held-out faces and 3 Kodak images.

    python experiments/gc_grid.py --faces ../shared/data/utkface --kodak ../shared/data/kodak

Rows: three held-out faces (200 px, whole) and three Kodak images (coded whole at 768x512, a 200x200 crop shown at
full scale). Columns: the original; each GC model; HEIF at that model's bytes and at twice them (the closest file;
"min" where HEIF's smallest file is larger than asked). Bytes under each picture. Writes ``OUT/grid.webp`` and
``OUT/grid.json`` (every file's bytes and setting).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from invcomp.classic.codecs import build_codecs  # noqa: E402
from invcomp.classic.search import find_closest  # noqa: E402
from invcomp.codecs import load_codec  # noqa: E402
from invcomp.data import list_images  # noqa: E402
from invcomp.zoo.registry import list_models  # noqa: E402
from invcomp.imageio import load_image  # noqa: E402

SIDE, LABEL = 200, 14
CROPS = {"kodim04.png": (280, 40), "kodim15.png": (180, 60), "kodim23.png": (300, 120)}


def view(img: Image.Image, name: str) -> Image.Image:
    if img.size == (SIDE, SIDE):
        return img
    x, y = CROPS.get(name, ((img.width - SIDE) // 2, (img.height - SIDE) // 2))
    return img.crop((x, y, x + SIDE, y + SIDE))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", required=True)
    ap.add_argument("--kodak", required=True)
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "gc"))
    a = ap.parse_args(argv)
    models = sorted(e.name for e in list_models() if e.kind == "gc")
    gcs = {m: load_codec(m, mode="gc") for m in models}
    heif = build_codecs()["heif"]
    files = list_images(a.faces, "holdout")[:3] + [Path(a.kodak) / n for n in CROPS]
    cols = 1 + 3 * len(models)
    sheet = Image.new("RGB", (cols * (SIDE + 4) + 4, len(files) * (SIDE + LABEL + 4) + 4), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    record = []
    for r, f in enumerate(files):
        img = load_image(f)
        cells: list[tuple[Image.Image, str]] = [(img, "original")]
        for m, codec in gcs.items():
            enc = codec.encode([img])[0]
            _, px = codec.decode_pixels(enc.data)
            cells.append((Image.fromarray(px), f"{m.split('-')[-1]} {len(enc.data)} B"))
            store: dict[float, bytes] = {}

            def size_at(q: float, store: dict = store, img: Image.Image = img) -> int:
                if q not in store:
                    store[q] = heif.encode(img, q)
                return len(store[q])

            for k in (1, 2):
                res = find_closest(size_at, k * len(enc.data), heif.knob)
                tag = "min " if res.cannot_reach else ""
                cells.append((heif.decode(store[res.quality]), f"HEIF {tag}{res.bytes} B"))
                record.append({"image": f.name, "model": m, "gc_bytes": len(enc.data), "target": k * len(enc.data),
                               "heif_bytes": res.bytes, "heif_setting": res.quality, "cannot_reach": res.cannot_reach})
        for c, (im, label) in enumerate(cells):
            x, y = 4 + c * (SIDE + 4), 4 + r * (SIDE + LABEL + 4)
            sheet.paste(view(im, f.name), (x, y))
            draw.text((x + 2, y + SIDE + 1), label, fill=(0, 0, 0))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    sheet.save(out / "grid.webp", quality=88, method=6)
    (out / "grid.json").write_text(json.dumps({"columns": ["original"] + [f"{m}, HEIF x1, HEIF x2" for m in models],
                                               "files": record}, indent=2) + "\n")


if __name__ == "__main__":
    main()
