"""The README's layered-coding picture: one held-out face at 5 rates, invcomp against WebP and the best learned peer
at the same bytes. Drawn by ``experiments/layered_rd.py --figure PATH`` from the files it coded (see there)."""
from __future__ import annotations

import io
from typing import Any

from PIL import Image, ImageDraw

from invcomp.classic.search import find_closest
from invcomp.imageio import to_pil

FIGURE_PLANS = ("none", "tone,0", "tone,2", "tone,4", "tone,7")


def _best_peer(summary: dict) -> str:
    """The CompressAI peer with the highest mean SSIM over its sweep (the strongest yardstick here)."""
    peers = {k: v for k, v in summary["others"].items() if k.startswith("compressai")}
    return max(peers, key=lambda k: sum(p["ssim"] for p in peers[k]) / len(peers[k])) if peers else ""


def draw(codec: Any, inputs: Any, files: dict, plan_list: list, coded: dict, summary: dict, face: int = 0) -> bytes:
    """Rows: invcomp, WebP, the best peer; columns: the 5 plans of :data:`FIGURE_PLANS`; bytes under each tile."""
    peer = _best_peer(summary)
    rows = [("invcomp layered", []), ("WebP, same bytes", []), (f"{peer or 'peer'}, same bytes", [])]
    for plan in FIGURE_PLANS:
        if plan not in files:
            continue
        data = files[plan][face]
        rows[0][1].append((to_pil(codec.decode(data)[1]), len(data)))
        for k, name in ((1, "webp"), (2, peer)):
            if name not in coded:
                rows[k][1].append((Image.new("RGB", (8, 8), "white"), 0))
                continue
            c = coded[name]
            knob = c.codec.knob
            if knob is not None:
                q = find_closest(lambda q, c=c: c.size(face, q), len(data), knob).quality
            else:  # a peer: the λ whose file is closest
                q = min(c.codec.fixed, key=lambda q, c=c: abs(c.size(face, q) - len(data)))
            blob = c.get(face, q)[0]
            rows[k][1].append((c.codec.decode(blob).convert("RGB"), len(blob)))
    r, lab, left = 128, 16, 120
    cols = len(rows[0][1]) + 1
    canvas = Image.new("RGB", (left + (r + 6) * cols, lab + (r + 16) * len(rows) + 4), "white")
    d = ImageDraw.Draw(canvas)
    d.text((left, 2), "original", fill="black")
    canvas.paste(inputs.images[face].resize((r, r), Image.LANCZOS), (left, lab))
    for i, (name, cells) in enumerate(rows):
        y = lab + i * (r + 16)
        d.text((4, y + r // 2), name[:19], fill="black")
        for j, (img, n) in enumerate(cells, start=1):
            x = left + j * (r + 6)
            canvas.paste(img.resize((r, r), Image.NEAREST), (x, y))
            d.text((x, y + r + 1), f"{n} B", fill="black")
    buf = io.BytesIO()
    canvas.save(buf, "WEBP", quality=90, method=6)
    return buf.getvalue()
