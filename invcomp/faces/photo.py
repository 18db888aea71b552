"""Photos around any face codec: find the faces, code each aligned crop with the codec, and rebuild the frame.

:class:`PhotoCodec` wraps a :class:`~invcomp.codecs.base.Codec` and takes whole photos. What it does with one
is ``--fit``:

- ``crop`` / ``squash``: the face codec's own file of the centre square / the whole frame (as before);
- ``align``: the largest face (``--faces all``: every face, largest first, up to ``max_faces``) is aligned to
  the generator's framing (:mod:`invcomp.landmarks.align`), coded, and stored in a photo file
  (:mod:`invcomp.formats.photo`) with its placement and the ``--background`` layer; no face: the centre crop
  with a one-line warning (``on_no_face="crop"``) or a refusal (``"error"``);
- ``auto`` (the default): ``align``, except for an input that already is an aligned crop: one whose largest
  face's placement is within :data:`ALIGNED` of the centre square's (scale, rotation, shift), or one with no
  face found at all (a tiny or synthetic image); those get ``crop``'s plain file. Without dlib, ``crop``.

A grayscale input (every pixel's three channels equal) is coded as RGB and decodes to one channel: a photo file
with the grayscale flag (for a plain file, the flag costs a 9-byte photo wrapper around it).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
from PIL import Image

from invcomp.errors import InvcompError
from invcomp.faces import background
from invcomp.landmarks import align
from invcomp.landmarks import detect
from invcomp.formats import photo as container
from invcomp.faces.detail import DEFAULT_NETWORK as DETAIL_NETWORK, DEFAULT_SIDE as DETAIL_SIDE
from invcomp.faces.frame import assemble, is_gray

if TYPE_CHECKING:  # annotations only: the face codec is any mode's
    from invcomp.codecs.base import Codec

log = logging.getLogger(__name__)

FITS = ("auto", "align", "crop", "squash")
ALIGNED = {"scale": 0.15, "angle": 8.0, "shift": 0.08}  # |side / side0 - 1|, degrees, centre offset / side0
DEFAULT_MAX_FACES = 16


@dataclass(frozen=True)
class PhotoOptions:
    """How photos are coded: ``framing`` (:data:`FITS`: ``--fit``), ``faces`` (``largest`` or ``all``), ``max_faces``, ``on_no_face``
    (``crop`` or ``error``) and ``background`` (``none``, ``thumb`` or ``CODEC:QUALITY``)."""

    framing: str = "auto"  # --fit: auto, align, crop or squash (the codec's own crop/squash is EncodeSettings.fit)
    faces: str = "largest"
    max_faces: int = DEFAULT_MAX_FACES
    on_no_face: str = "crop"
    background: str = "none"
    detail: Optional[float] = None  # the whole-frame detail layer's rate (None: no detail layer)
    detail_slope: Optional[float] = None  # from that rate up: the one that maximises frame SSIM - slope * bytes
    detail_side: int = DETAIL_SIDE
    detail_network: str = DETAIL_NETWORK

    def check(self) -> None:
        if self.framing not in FITS:
            raise InvcompError(f"--fit must be one of {', '.join(FITS)}, not {self.framing!r}")
        if self.faces not in ("largest", "all"):
            raise InvcompError(f"--faces must be largest or all, not {self.faces!r}")
        if self.on_no_face not in ("crop", "error"):
            raise InvcompError(f"--on-no-face must be crop or error, not {self.on_no_face!r}")
        if not 1 <= self.max_faces <= container.MAX_FACES:
            raise InvcompError(f"--max-faces must be 1..{container.MAX_FACES}")
        background.parse(self.background)
        if self.detail is not None and not 0 <= self.detail <= container.MAX_RATE_CODE / 4:
            raise InvcompError(f"--detail must be none or a rate 0..{container.MAX_RATE_CODE / 4:g}, not {self.detail:g}")
        if self.detail_slope is not None and (self.detail is None or not self.detail_slope > 0):
            raise InvcompError("a detail slope needs a detail layer and a price above 0")
        if not 16 <= self.detail_side <= 4096:
            raise InvcompError(f"--detail-side must be 16..4096, not {self.detail_side}")
        if self.framing in ("crop", "squash") and self.background != "none":
            raise InvcompError(f"--background {self.background} goes with --fit align or auto (crop and squash code "
                               "no background)")


def is_aligned(face: detect.Face, width: int, height: int) -> bool:
    """Whether ``face`` sits where the generator's framing puts it in the centre square of the frame."""
    p, c = align.placement_from_landmarks(face.points), align.crop_placement(width, height)
    shift = np.hypot(p.cx - c.cx, p.cy - c.cy) / c.side
    return (abs(p.side / c.side - 1) <= ALIGNED["scale"] and abs(p.angle) <= ALIGNED["angle"]
            and shift <= ALIGNED["shift"])


@dataclass
class Plan:
    """What :meth:`PhotoCodec.plan` decided for one image: its ``framing`` (``align``, ``crop``, ``squash`` or
    ``whole``) and ``placements`` (empty: a plain file)."""

    framing: str
    placements: list[align.Placement]
    grayscale: bool
    found: int = 0
    skipped_small: int = 0
    note: str = ""
    background_data: bytes = b""


class PhotoCodec:
    """A face codec that takes photos (see the module doc). Everything else is the face codec's (``__getattr__``)."""

    def __init__(self, codec: "Codec", options: PhotoOptions) -> None:
        options.check()
        self.codec, self.options = codec, options
        self._cache: dict = {}  # the decoder's models, for the detail layer's base (the decoder's own picture)
        self.detail_net = None
        if options.detail is not None:
            from invcomp.faces.detail import load_named

            if not codec.resolution:
                raise InvcompError("--detail is for the face codecs; --mode gc and sc code the whole image already")
            self.detail_net = load_named(options.detail_network, self._cache)
            if options.detail > self.detail_net.rates - 1:
                raise InvcompError(f"--detail {options.detail:g}: the detail network's rates are 0..{self.detail_net.rates - 1}")
        if options.framing == "align":
            reason = detect.unavailable()
            if reason:
                raise InvcompError(f"--fit align: {reason}")

    def __getattr__(self, name: str) -> Any:
        codec = self.__dict__.get("codec")
        if codec is None:  # during unpickling or copying, before __init__'s attributes exist
            raise AttributeError(name)
        return getattr(codec, name)

    def describe(self) -> dict[str, Any]:
        d = {**self.codec.describe(), "fit": self.options.framing, "background": self.options.background}
        if self.detail_net is not None:
            d["detail"] = {"network": self.detail_net.name, "rate": self.options.detail, "side": self.options.detail_side}
        return d

    def plan(self, img: Image.Image, name: str = "image") -> Plan:
        """Where the faces of ``img`` are and how it will be coded (raises :class:`InvcompError` for a refusal)."""
        o = self.options
        if not self.codec.resolution:  # a whole-image codec (GC, SC): its own file of the frame as it is
            if o.framing in ("align", "squash"):
                raise InvcompError(f"--fit {o.framing} is for the face codecs; --mode gc and sc code the whole image at its size")
            return Plan("whole", [], False, note="whole image")
        g = is_gray(img)
        if o.framing in ("crop", "squash"):
            return Plan(o.framing, [], g)
        reason = detect.unavailable()
        if reason:
            log.warning("%s: coded with --fit crop: %s", name, reason)
            return Plan("crop", [], g, note="no detector")
        faces = detect.detect(img, limit=4 * container.MAX_FACES)
        small = [f for f in faces if f.size < detect.MIN_FACE]
        faces = [f for f in faces if f.size >= detect.MIN_FACE]
        if small:
            log.warning("%s: %d face%s under %d px left uncoded", name, len(small), "s" * (len(small) > 1), detect.MIN_FACE)
        detail_frame = o.detail is not None and img.width != img.height  # a frame wider than the face codec's square
        if not faces:
            if o.framing == "align" and o.on_no_face == "error":
                raise InvcompError(f"{name}: no face found" + (f" (only {len(small)} under {detect.MIN_FACE} px)" if small else "")
                                   + "; --on-no-face crop codes the centre crop instead")
            if o.framing == "align":
                log.warning("%s: no face found; coded the centre crop (--on-no-face error refuses instead)", name)
            if detail_frame:  # the centre square over the background, which the detail layer starts from
                return self._framed(img, [container.quantise(align.crop_placement(*img.size))], g, 0, len(small), "no face")
            return Plan("crop", [], g, 0, len(small), "no face")
        if o.framing == "auto" and is_aligned(faces[0], *img.size) and not detail_frame:
            return Plan("crop", [], g, len(faces), len(small), "aligned crop")
        keep = faces[:1] if o.faces == "largest" else faces[:o.max_faces]
        if o.faces == "all" and len(faces) > o.max_faces:
            log.warning("%s: %d faces found; coded the %d largest (--max-faces)", name, len(faces), o.max_faces)
        places = [container.quantise(align.placement_from_landmarks(f.points)) for f in keep]
        return self._framed(img, places, g, len(faces), len(small))

    def _framed(self, img: Image.Image, places: list[align.Placement], g: bool, found: int, small: int,
                note: str = "") -> Plan:
        """An ``align`` plan: the crops at ``places`` over the options' background of the frame."""
        name_bg, q = background.parse(self.options.background)
        frame = img.convert("L") if g else img
        return Plan("align", places, g, found, small, note, background.encode(frame, name_bg, q, places))

    def work(self, n_images: int) -> int:
        return self.codec.work(n_images)

    def encode(self, images: list[Image.Image], *, progress: Any = None, goal: Any = None,
               names: Optional[list[str]] = None) -> list[Any]:
        """Encode photos: per image an :class:`~invcomp.codecs.base.Encoded` (its ``data`` the whole file; its
        ``target``/``recon`` the first face's, as coded and as decoded; ``extra["photo"]`` the rest), or the
        :class:`InvcompError` that refused it. Plain files come out byte for byte as the face codec writes them."""
        names = names or [f"image {i + 1}" for i in range(len(images))]
        out: list[Any] = [None] * len(images)
        plans: list[Any] = []
        for i, img in enumerate(images):
            try:
                plans.append(self.plan(img, names[i]))
            except InvcompError as e:
                plans.append(e)
        crops, owners = [], []
        for i, (img, p) in enumerate(zip(images, plans)):
            if isinstance(p, InvcompError):
                out[i] = p
            elif p.framing == "align":
                for pl in p.placements:
                    crops.append(align.warp_crop(img, pl, self.codec.resolution))
                    owners.append(i)
            else:
                crops.append(img)
                owners.append(i)
        detail_goal = goal if self.detail_net is not None else None
        coded = self._code(crops, owners, images, plans, progress, None if detail_goal is not None else goal)
        for i, p in enumerate(plans):
            if out[i] is None:
                faces = [coded[k] for k, o in enumerate(owners) if o == i]
                bad = next((f for f in faces if isinstance(f, InvcompError)), None)
                out[i] = bad if bad is not None else self._assemble(images[i], p, faces, detail_goal)
                if detail_goal is not None and isinstance(out[i], InvcompError) and detail_goal.max_bytes is not None:
                    # the faces at their own rate leave no room: today's path, the faces under the goal, no detail
                    log.info("%s: the faces alone exceed %d B; coded under the goal without a detail layer",
                             names[i], detail_goal.max_bytes)
                    own = [k for k, o in enumerate(owners) if o == i]
                    again = self._code([crops[k] for k in own], [i] * len(own), images, plans, None, goal)
                    bad = next((f for f in again if isinstance(f, InvcompError)), None)
                    out[i] = bad if bad is not None else self._assemble(images[i], p, again, None, with_detail=False)
        return out

    def _code(self, crops: list, owners: list, images: list, plans: list, progress: Any, goal: Any) -> list:
        """Code the face crops (and plain images), each with the budget its photo leaves it under ``goal``."""
        if not crops:
            return []
        if goal is None:  # the face codec's fit is this photo codec's crop or squash; aligned crops are square
            return list(self.codec.encode(crops, progress=progress))
        from invcomp.codecs.rate import RateTarget

        res = [None] * len(crops)
        for k in range(len(crops)):
            g = goal
            if goal.max_bytes is not None:
                plan = plans[owners[k]]
                g = RateTarget(max_bytes=face_budget(goal.max_bytes, images[owners[k]], plan, self.options))
            res[k] = self.codec.encode([crops[k]], goal=g, progress=progress)[0] if g.max_bytes is None or g.max_bytes > 0 \
                else InvcompError(f"--target-bytes {goal.max_bytes} cannot hold this photo's wrapper and background")
        return res

    def _assemble(self, img: Image.Image, plan: Plan, faces: list, goal: Any = None, with_detail: bool = True) -> Any:
        if self.detail_net is None or not with_detail:
            return assemble(img, plan, faces, self.options)
        from invcomp.faces.detail_encode import with_detail as add_detail

        return add_detail(img, plan, faces, self.options, self.detail_net, self._cache, goal)


def face_budget(max_bytes: int, img: Image.Image, plan: Plan, options: PhotoOptions) -> int:
    """The bytes each face file may take when the whole photo file must fit ``max_bytes``: the wrapper, the
    placements, the length fields and the background come first (:func:`invcomp.formats.photo.overhead` of the
    file with one-byte faces); the rest is split evenly between the faces."""
    if plan.framing != "align" and not plan.grayscale:
        return max_bytes
    if plan.framing == "align":
        name = background.parse(options.background)[0]
        records = [container.FaceRecord(pl, b"\0") for pl in plan.placements]
        probe = container.Photo(img.width, img.height, records, plan.grayscale, name, plan.background_data)
    else:
        probe = container.Photo(img.width, img.height, [container.FaceRecord(None, b"\0")], True)
    o = container.overhead(probe)
    left = (max_bytes - o["container"] - o["placements"] - o["background"]) // max(1, len(probe.faces))
    return left - (1 if left < 128 else 2 if left < 16384 else 3)
