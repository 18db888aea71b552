"""Benchmark rows -> summaries and the text outputs: CompressAI-format JSON, ``per_image.csv``, ``equal_bytes.md``.

Pure functions of the rows of :mod:`invcomp.bench.run`; the CLI writes what they return.

The JSON matches CompressAI's results files (``compressai.utils.eval_model`` / ``bench``), so curves
from the two projects overlay: ``{"name", "description", "results": {"bpp": [...], "psnr-rgb": [...],
"ms-ssim-rgb": [...], "ssim-rgb": [...], "encoding_time": [...], "decoding_time": [...]}}``, one
entry per fixed setting (the mean over images), sorted by bpp; plus ``"settings"`` (how the run
was made), ``"quality"`` (each entry's setting, aligned with the lists) and, for a codec that could
not run here, ``"unavailable"`` (the reason, with empty lists). Non-finite means (PSNR of a
lossless codec) are written as the strings ``"inf"``/``"nan"``.
"""
from __future__ import annotations

import csv
import io
import math
import statistics
from typing import Any, Iterable, Optional

from invcomp.files import dumps
from invcomp.bench.run import COLUMNS

RESULT_KEYS = {"bpp": "bpp", "psnr-rgb": "psnr", "ms-ssim-rgb": "ms_ssim", "ssim-rgb": "ssim",
               "identity": "identity", "same-person": "same_person",
               "encoding_time": "encode_seconds", "decoding_time": "decode_seconds"}


def _mean(vals: Iterable[Any]) -> Optional[float]:
    v = [float(x) for x in vals if x is not None]
    return statistics.fmean(v) if v else None


def _median(vals: Iterable[Any]) -> Optional[float]:
    v = [float(x) for x in vals if x is not None]
    return statistics.median(v) if v else None


def points(rows: list[dict], codec: str) -> list[dict]:
    """Mean over images of each fixed setting of ``codec``, sorted by bpp (ties in sweep order): dicts with
    ``setting``, ``quality``, ``n`` and the mean of every metric."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        if r["codec"] == codec and r["mode"] == "fixed":
            groups.setdefault(r["setting"], []).append(r)
    out = []
    for setting, rs in groups.items():
        p: dict[str, Any] = {"setting": setting, "quality": rs[0]["quality"], "n": len(rs)}
        for k in ("bytes", "bpp", "psnr", "mse", "ssim", "ms_ssim", "lpips", "identity", "encode_seconds", "decode_seconds"):
            p[k] = _mean(r.get(k) for r in rs)
        p["same_person"] = same_person(rs)
        out.append(p)
    return sorted(out, key=lambda p: p["bpp"])  # stable: equal sizes stay in sweep order


def same_person(rs: list[dict]) -> Optional[float]:
    """The share of rows whose identity distance is under the recogniser's threshold (``None``: not measured)."""
    from invcomp.identity import same_person_share

    return same_person_share([r.get("identity") for r in rs])


def compressai_json(name: str, description: str, pts: list[dict], settings: dict,
                    unavailable: Optional[str] = None) -> dict:
    """The CompressAI-format results dict for one codec (see module doc)."""
    doc: dict[str, Any] = {"name": name, "description": description,
                           "results": {key: [p[col] for p in pts] for key, col in RESULT_KEYS.items()},
                           "quality": [p["quality"] for p in pts], "n_images": [p["n"] for p in pts],
                           "settings": settings}
    if unavailable is not None:
        doc["unavailable"] = unavailable
    return doc


def json_bytes(doc: dict) -> bytes:
    """Indented strict JSON (non-finite floats as strings) with a final newline."""
    import json

    return (json.dumps(json.loads(dumps(doc)), indent=2) + "\n").encode()


def csv_bytes(rows: list[dict]) -> bytes:
    """``per_image.csv``: one line per row, the columns of :data:`invcomp.bench.run.COLUMNS`; empty cells for None."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r[k]) for k in COLUMNS})
    return buf.getvalue().encode()


def _fmt(v: Optional[float], spec: str) -> str:
    if v is None:
        return "n/a"
    return "inf" if math.isinf(v) else format(v, spec)


def _stats_cells(rs: list[dict]) -> str:
    b, s, p = [r["bytes"] for r in rs], [r["ssim"] for r in rs], [r["psnr"] for r in rs]
    sp = same_person(rs)
    return (f"{_fmt(_mean(b), '.1f')} | {_fmt(_median(b), '.0f')} | {_fmt(_mean(s), '.4f')} | {_fmt(_median(s), '.4f')} | "
            f"{_fmt(_mean(p), '.2f')} | {_fmt(_median(p), '.2f')} | {_fmt(_mean(r.get('identity') for r in rs), '.3f')} | "
            f"{'n/a' if sp is None else f'{100 * sp:.0f}%'}")


def equal_bytes_markdown(rows: list[dict], refs: list[tuple[str, int]], codecs: list[str], *, title: str,
                         unavailable: dict[str, str]) -> str:
    """``equal_bytes.md``: per invcomp codec and bits setting (``refs``), that codec against each classic codec
    at (about) the same bytes, per image. Rows a codec cannot reach are coded at its lowest setting (more bytes than the
    target) and are included in its means; the ``cannot reach`` column counts them."""
    lines = [f"# {title}", "",
             ("Each classic codec's quality is searched per image for the file size closest to that image's "
              "`.ivc` file. *cannot reach*: even the lowest setting writes more bytes than the target; those "
              "images are coded at the lowest setting and are included in the means and medians below. "
              "*identity distance*: dlib's face recogniser between original and decoded face; *same person*: the "
              "share under 0.6 (n/a: the recogniser is not installed, or --no-identity)."), ""]
    for ref, b in refs:
        inv = [r for r in rows if r["codec"] == ref and r["mode"] == "fixed" and r["bits"] == b]
        if not inv:
            continue
        lines += [f"## {ref} {b} bits", "",
                  "| codec | n | bytes mean | bytes median | SSIM mean | SSIM median | PSNR mean | PSNR median | identity distance "
                  "mean | same person | cannot reach |",
                  "|---|---|---|---|---|---|---|---|---|---|---|",
                  f"| {ref} {b} bits | {len(inv)} | {_stats_cells(inv)} | - |"]
        for c in codecs:
            eq = [r for r in rows if r["codec"] == c and r["mode"] == "equal_bytes" and r["bits"] == b
                  and r.get("reference", "invcomp") == ref]
            if eq:
                n_cr = sum(1 for r in eq if r["cannot_reach"])
                lines.append(f"| {c} | {len(eq)} | {_stats_cells(eq)} | {n_cr}/{len(eq)} |")
        lines.append("")
    if unavailable:
        lines += ["## Unavailable codecs", ""] + [f"- {c}: {why}" for c, why in unavailable.items()] + [""]
    return "\n".join(lines)


def summary(name: str, pts: list[dict], rows: list[dict], unavailable: Optional[str] = None) -> dict:
    """One codec's summary line for ``--json`` output: its points and its equal-bytes means per bits."""
    if unavailable is not None:
        return {"codec": name, "available": False, "reason": unavailable}
    eq: dict[str, list[dict]] = {}
    for r in rows:
        if r["codec"] == name and r["mode"] == "equal_bytes":
            ref = r.get("reference") or "invcomp"
            eq.setdefault(str(r["bits"]) if ref == "invcomp" else f"{ref}@{r['bits']}", []).append(r)
    eq_summary = {b: {"n": len(rs), "bytes": _mean(r["bytes"] for r in rs), "ssim": _mean(r["ssim"] for r in rs),
                      "psnr": _mean(r["psnr"] for r in rs), "identity": _mean(r.get("identity") for r in rs),
                      "same_person": same_person(rs), "cannot_reach": sum(bool(r["cannot_reach"]) for r in rs)}
                  for b, rs in eq.items()}
    return {"codec": name, "available": True,
            "points": [{k: p[k] for k in ("setting", "n", "bytes", "bpp", "psnr", "ssim", "ms_ssim", "lpips", "identity",
                                          "same_person")} for p in pts],
            "equal_bytes": eq_summary}


def human_lines(s: dict) -> list[str]:
    """The human-readable form of :func:`summary`."""
    if not s["available"]:
        return [f"{s['codec']}: unavailable ({s['reason']})"]
    out = []
    for p in s["points"]:
        out.append(f"{s['codec']} {p['setting']}: {_fmt(p['bytes'], '.1f')} B, {_fmt(p['bpp'], '.3f')} bpp, "
                   f"SSIM {_fmt(p['ssim'], '.4f')}, PSNR {_fmt(p['psnr'], '.2f')} dB, MS-SSIM {_fmt(p['ms_ssim'], '.4f')}"
                   + ("" if p.get("identity") is None else
                      f", identity {p['identity']:.3f} ({100 * p['same_person']:.0f}% same person)"))
    for b, e in s["equal_bytes"].items():
        out.append(f"{s['codec']} at {b if '@' in b else 'invcomp ' + b}-bit bytes: {_fmt(e['bytes'], '.1f')} B, SSIM {_fmt(e['ssim'], '.4f')}, "
                   f"PSNR {_fmt(e['psnr'], '.2f')} dB, cannot reach {e['cannot_reach']}/{e['n']}")
    return out
