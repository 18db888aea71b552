"""The encode use case: :class:`EncodeRequest` (the one home of every encode default), :func:`build_encoder` (the
codec and rate goal a request names) and :func:`encode_items` (a batch of inputs to ``.ivc`` files, written
atomically, one report per item). ``invcomp encode``, ``invcomp batch encode``, the web app and the Python API
all run these, so they write the same bytes for the same image."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

from invcomp.codecs.settings import DEFAULT_AUTO_SLOPE
from invcomp.errors import InvcompError
from invcomp.faces.detail import DEFAULT_NETWORK as DETAIL_NETWORK, DEFAULT_SIDE as DETAIL_SIDE
from invcomp.files import DEFAULT_MAX_PIXELS
from invcomp.service.items import ItemError, check_writable, item_error, read_bytes, write_bytes
from invcomp.service.report import file_metrics, report_row

PHOTO_FITS = ("auto", "align", "crop", "squash")  # invcomp.faces.photo.FITS (here: --help imports no torch)
DEFAULT_DETAIL = 0.0
"""The default's lowest detail layer rate (issue 32): chosen on validation faces (``docs/whole-faces.md``)."""
DEFAULT_DETAIL_SLOPE = 0.0007
"""The default's price of a byte in whole-picture SSIM: ``--detail auto`` keeps the rate that maximises SSIM - this x
bytes, so a picture gets more detail where a byte buys more. Chosen on 8 validation faces (never the held-out ones) at
128 px framed the FFHQ way and 200 px as UTKFace crops: the marginal SSIM per byte of their detail curves
(``python experiments/whole_faces.py --split val --limit 8 --sets ffhq128,utk200 --configs default --curve
0,0.5,1,1.5,2,2.5,3``; ``docs/whole-faces.md``)."""
QUALITY_LEVELS = {"low": 2.0, "medium": 3.0, "high": 4.0}
"""``--quality``'s names; a number Q (1 to 5) sets the price of a byte to ``DEFAULT_DETAIL_SLOPE * 2 ** (3 - Q)``."""


def parse_quality(spec: str, base: float = DEFAULT_DETAIL_SLOPE) -> float:
    """``--quality``: ``low``, ``medium`` (the default), ``high`` or a number from 1 to 5 -> the price of a byte in SSIM
    (``base`` at medium: :data:`DEFAULT_DETAIL_SLOPE` for the detail layer, :data:`DEFAULT_AUTO_SLOPE` for
    ``--mode auto``)."""
    q = QUALITY_LEVELS.get(spec.strip().lower())
    if q is None:
        try:
            q = float(spec)
        except ValueError:
            q = float("nan")
    if not 1 <= q <= 5:
        raise InvcompError(f"--quality must be low, medium, high or a number from 1 to 5, not {spec!r}")
    return base * 2.0 ** (3.0 - q)
FRAME_MODE = "inversion"
"""The default's face codec: GAN inversion of the default model, under the detail layer (``docs/whole-faces.md``)."""


@dataclass(frozen=True)
class EncodeRequest:
    """What to code with, and how: every option of ``invcomp encode`` but its input/output ones, with its default.

    ``model``/``mode``: the codec (default: ``--mode auto``); ``auto_tolerance``: auto's SSIM tolerance;
    ``resolution``, ``layer_rates``: the layered mode's side and plan; ``preserve``, ``preserve_box``,
    ``preserve_halo``, ``semantic``: SC's kept regions; ``channels``: a VAE-GAN's code channels; ``weights_path``:
    a user model's state_dict; ``iters``, ``patience``, ``bits``, ``loss``, ``restarts``, ``lr``, ``seed``, ``scaling``,
    ``rounding``, ``coder``, ``rate_weight``, ``no_quant_aware``, ``init``, ``warm_start``: the search and the
    quantiser; ``target_bytes``/``target_bpp``/``target_ssim``: the rate goal (one at most); ``fit``, ``faces``,
    ``max_faces``, ``on_no_face``, ``background``: how a photo is framed; ``detail``, ``detail_side``,
    ``detail_network``: the whole-frame detail layer (``none``, ``auto`` or a rate; its long side; its network); ``max_pixels``: the largest input; ``device``:
    ``auto``, ``cpu`` or ``cuda``. ``None`` means the mode's or model's own value.

    **The default** (no ``model``, ``mode`` or ``weights_path``) is the whole-frame codec of issue 32: the faces
    coded by GAN inversion (:data:`FRAME_MODE`) over a ThumbHash of the frame, then the detail layer at
    :data:`DEFAULT_DETAIL` over the whole picture at the input's size (up to :data:`DETAIL_SIDE` px on the long side).
    Naming a mode or model gives that codec alone, as before (``detail`` adds the layer to any face codec)."""

    model: Optional[str] = None
    mode: Optional[str] = None
    auto_tolerance: Optional[float] = None
    resolution: Optional[int] = None
    layer_rates: Optional[str] = None
    preserve: Optional[str] = None
    preserve_box: tuple[str, ...] = ()
    preserve_halo: Optional[int] = None
    semantic: Optional[str] = None
    channels: Optional[int] = None
    weights_path: Optional[str] = None
    iters: Optional[int] = None
    patience: Optional[int] = None
    bits: Optional[int] = None
    loss: Optional[str] = None
    restarts: Optional[int] = None
    lr: Optional[float] = None
    seed: int = 0
    device: str = "auto"
    fit: str = "auto"
    faces: str = "largest"
    max_faces: int = 16
    on_no_face: str = "crop"
    background: Optional[str] = None
    detail: Optional[str] = None
    detail_side: int = DETAIL_SIDE
    detail_network: Optional[str] = None
    quality: Optional[str] = None
    scaling: Optional[str] = None
    rounding: str = "nearest"
    coder: str = "auto"
    rate_weight: Optional[float] = None
    target_bytes: Optional[int] = None
    target_bpp: Optional[float] = None
    target_ssim: Optional[float] = None
    no_quant_aware: bool = False
    init: Optional[str] = None
    warm_start: Optional[str] = None
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        object.__setattr__(self, "preserve_box", tuple(self.preserve_box or ()))  # a list from JSON, a tuple from click


def codec_defaults(**changes: Any) -> dict[str, Any]:
    """The fields of :class:`EncodeRequest` as a dict, with ``changes`` (e.g. the ``options`` of
    :func:`invcomp.batch.run`); an unknown name is a ``ValueError``."""
    unknown = set(changes) - {f.name for f in fields(EncodeRequest)}
    if unknown:
        raise ValueError(f"not encode options: {', '.join(sorted(unknown))}")
    return asdict(EncodeRequest(**changes))


@dataclass(frozen=True)
class Encoder:
    """What :func:`build_encoder` returns: the codec (a :class:`~invcomp.faces.photo.PhotoCodec` around the mode's
    codec), the rate ``goal`` (or ``None``) and the request they were built from."""

    codec: Any
    goal: Any
    request: EncodeRequest


def parse_detail(spec: str) -> Optional[float]:
    """``--detail``: ``none`` (no detail layer), ``auto`` (the default's: :data:`DEFAULT_DETAIL`, raised within
    :data:`DEFAULT_DETAIL_SLOPE`) or a rate of the detail network (0 the lowest; quarter steps)."""
    if spec.strip().lower() == "none":
        return None
    if spec.strip().lower() == "auto":
        return DEFAULT_DETAIL
    try:
        rate = float(spec)
    except ValueError:
        raise InvcompError(f"--detail must be none or a rate like 0, 0.5 or 1, not {spec!r}") from None
    if not rate >= 0 or rate != rate:
        raise InvcompError(f"--detail must be none or a rate of at least 0, not {spec!r}")
    return round(rate * 4) / 4


def build_encoder(request: EncodeRequest) -> Encoder:
    """The codec and the rate goal that ``request`` names: what every front end codes with. Bad options are refused
    here, in one line, before any image is read."""
    from invcomp.codecs import load_codec
    from invcomp.codecs.rate import RateTarget, bytes_for_bpp
    from invcomp.codecs.settings import EncodeSettings
    from invcomp.faces.photo import PhotoCodec, PhotoOptions
    from invcomp.nets import resolve_device
    from invcomp.search.losses import parse_loss

    r = request
    if r.loss is not None:
        parse_loss(r.loss)
    goals = [g for g in (r.target_bytes, r.target_bpp, r.target_ssim) if g is not None]
    if len(goals) > 1:
        raise InvcompError("give one of --target-bytes, --target-bpp and --target-ssim")
    if goals and r.layer_rates is not None:
        raise InvcompError("rate control chooses the layers: drop --layer-rates, or drop the target")
    if goals and r.bits is not None:
        raise InvcompError("rate control chooses the bits: drop --bits, or drop the target")
    default = r.mode is None and r.model is None and r.weights_path is None
    detail = parse_detail(r.detail) if r.detail is not None else (DEFAULT_DETAIL if default else None)
    auto_detail = detail is not None and (r.detail is None or r.detail.strip().lower() == "auto")
    auto_mode = r.mode == "auto" or (r.mode is None and (r.model or "").startswith("auto:"))
    if r.quality is not None and not (auto_detail or auto_mode):
        raise InvcompError("--quality sets the price of a byte: it goes with the default codec, --detail auto or "
                           "--mode auto, not with a fixed --detail rate or --detail none")
    if auto_mode and r.quality is not None and r.auto_tolerance is not None:
        raise InvcompError("--mode auto decides by --quality or by --auto-tolerance, not both")
    if r.quality is not None and goals:
        raise InvcompError("give --quality or a rate target, not both")
    slope = (parse_quality(r.quality) if r.quality is not None else DEFAULT_DETAIL_SLOPE) if auto_detail else None
    # --mode auto's price of a byte (its codec's default, DEFAULT_AUTO_SLOPE, unless --quality or --auto-tolerance)
    auto_slope = parse_quality(r.quality, DEFAULT_AUTO_SLOPE) if auto_mode and r.quality is not None else None
    bg = r.background if r.background is not None else (
        "thumb" if detail is not None and r.fit in ("auto", "align") else "none")  # crop and squash code no background
    photo = PhotoOptions(framing=r.fit, faces=r.faces, max_faces=r.max_faces, on_no_face=r.on_no_face,
                         background=bg, detail=detail, detail_slope=slope, detail_side=r.detail_side,
                         detail_network=r.detail_network or DETAIL_NETWORK)
    photo.check()
    settings = EncodeSettings(bits=r.bits, coder=r.coder, fit="squash" if r.fit == "squash" else "crop",
                              scaling=r.scaling, rounding=r.rounding, seed=r.seed, iters=r.iters, init=r.init, patience=r.patience,
                              loss=r.loss, restarts=r.restarts, lr=r.lr,
                              quant_aware=False if r.no_quant_aware else None, rate_weight=r.rate_weight)
    codec = load_codec(r.model, settings, mode=FRAME_MODE if default else r.mode, device=resolve_device(r.device), weights=r.weights_path,
                       warm_start=r.warm_start, channels=r.channels, tolerance=r.auto_tolerance, slope=auto_slope,
                       resolution=r.resolution, layer_rates=r.layer_rates, preserve=r.preserve,
                       preserve_box=tuple(r.preserve_box) or None, semantic=r.semantic, halo=r.preserve_halo)
    goal = None
    if goals:
        n = r.target_bytes if r.target_bytes is not None else (
            bytes_for_bpp(r.target_bpp, codec.resolution) if r.target_bpp is not None else None)
        goal = RateTarget(max_bytes=n, min_ssim=r.target_ssim)
        codec.check_goal(goal)  # GC and SC refuse one: their rate is their model's
    return Encoder(PhotoCodec(codec, photo), goal, request)


def encode_items(encoder: Encoder, chunk: Sequence[tuple[Path, Path]], *, force: bool, with_identity: bool = False,
                 progress: Optional[Callable[[int], Any]] = None,
                 debug: bool = False) -> list[Union[tuple[dict, str], ItemError]]:
    """Encode one batch of (input, output) pairs together and write each output atomically.

    Returns, per pair in order, its report ``(row, human line)`` or its :class:`ItemError`: one bad image
    never fails the others. An error of the whole batch that is not an :class:`InvcompError` (a bug, a
    killed device) is raised (``invcomp batch`` retries the batch).
    """
    from invcomp.imageio import decode_image_bytes

    codec, goal, max_pixels = encoder.codec, encoder.goal, encoder.request.max_pixels
    tick = progress or (lambda n: None)
    results: list[Any] = [None] * len(chunk)
    loaded = []
    for k, (src, dst) in enumerate(chunk):
        try:
            check_writable(dst, force)
            loaded.append((k, decode_image_bytes(read_bytes(src), name=str(src), max_pixels=max_pixels)))
        except Exception as e:  # noqa: BLE001  (MemoryError, a bug: that item's error, not the batch's)
            results[k] = item_error(e, debug)
            tick(codec.work(1))
    if loaded:
        t0 = time.perf_counter()
        try:
            images, names = [im for _, im in loaded], [str(chunk[k][0]) for k, _ in loaded]
            done = codec.encode(images, progress=tick, goal=goal, names=names)  # a PhotoCodec: photos, faces, goals
        except InvcompError as e:
            done = None
            for k, _ in loaded:
                results[k] = item_error(e)
        if done is not None:
            seconds = (time.perf_counter() - t0) / len(loaded)
            for (k, img), enc in zip(loaded, done):
                if isinstance(enc, InvcompError):
                    results[k] = item_error(enc)
                    continue
                results[k] = (enc, file_metrics(enc, img, with_identity), seconds)
    for k, ((src, dst), res) in enumerate(zip(chunk, results)):
        if isinstance(res, ItemError):
            continue
        try:
            write_bytes(dst, res[0].data, force)
        except InvcompError as err:
            results[k] = item_error(err)
            continue
        enc, m, secs = res
        results[k] = report_row(codec, src, dst, enc, m, secs, goal)
    return results
