"""Coding the benchmark images with every codec and measuring each file: the rows of ``per_image.csv``.

Every codec codes the same pixels (:class:`Inputs`: centre-cropped, Lanczos-resized ``R x R`` RGB);
bytes are the whole file each codec writes; metrics compare the decoded 8-bit pixels with those
inputs at ``R x R`` (:func:`invcomp.metrics.quality`). One row is one coded image, a dict with the
keys of :data:`COLUMNS`. No files are written here.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import torch
from PIL import Image

from invcomp import metrics
from invcomp.data import Split, list_images
from invcomp.errors import InvcompError
from invcomp.imageio import fit_image, from_image, load_image, quantize_pixels
from invcomp.classic.codecs import ClassicCodec
from invcomp.classic.search import find_closest

if TYPE_CHECKING:
    from invcomp.codecs import Codec

log = logging.getLogger(__name__)

COLUMNS = ("image", "codec", "mode", "setting", "quality", "bits", "reference", "target_bytes", "cannot_reach", "search_steps",
           "bytes", "bpp", "psnr", "mse", "ssim", "ms_ssim", "lpips", "identity", "encode_seconds", "decode_seconds")
Tick = Callable[[int], None]


def _no_tick(n: int) -> None:
    pass


@dataclass
class Inputs:
    """The benchmark images: names, fitted RGB images (``R x R``), their tensor ``(N, 3, R, R)`` in [-1, 1], and
    the originals (which invcomp codecs are given, as ``invcomp encode`` is, so their files are byte for byte
    the ones it writes; they fit them to the same ``R x R`` pixels)."""

    names: list[str]
    images: list[Image.Image]
    targets: torch.Tensor
    originals: Optional[list[Image.Image]] = None

    @property
    def resolution(self) -> int:
        return int(self.targets.shape[-1])


def load_inputs(folder: str | Path, resolution: int, limit: Optional[int] = None, split: Split = "all") -> Inputs:
    """The first ``limit`` images of ``folder`` (sorted, recursive) in ``split`` (see :mod:`invcomp.data`:
    ``holdout`` is the faces no shipped model trained on), centre-cropped and resized to ``resolution``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InvcompError(f"{folder} is not a folder of images")
    files = list_images(folder, split)
    if limit is not None:
        files = files[:limit]
    if not files:
        raise InvcompError(f"no images found in {folder}" + ("" if split == "all" else f" (split {split})"))
    originals = [load_image(p) for p in files]
    images = [fit_image(im, resolution, "crop") for im in originals]
    names = [str(p.relative_to(folder)) for p in files]
    return Inputs(names, images, torch.stack([from_image(im) for im in images]), originals)


def _row(name: str, codec: str, mode: str, setting: str, quality: object, n_bytes: int, r: int, m: dict,
         enc: float, dec: float, **extra: object) -> dict:
    row = dict.fromkeys(COLUMNS)
    row.update(image=name, codec=codec, mode=mode, setting=setting, quality=quality, bytes=n_bytes,
               bpp=metrics.bpp(n_bytes, r, r), encode_seconds=enc, decode_seconds=dec, **m, **extra)
    return row


class Coded:
    """Encodes of one classic codec, cached by ``(image index, setting)`` -> ``(bytes, encode seconds)``,
    shared by the fixed sweep and the equal-bytes searches so no setting is coded twice."""

    def __init__(self, codec: ClassicCodec, inputs: Inputs) -> None:
        self.codec, self.inputs = codec, inputs
        self._cache: dict[tuple[int, object], tuple[bytes, float]] = {}

    def get(self, i: int, q: Optional[float]) -> tuple[bytes, float]:
        key = (i, q)
        if key not in self._cache:
            t0 = time.perf_counter()
            data = self.codec.encode(self.inputs.images[i], q)
            self._cache[key] = (data, time.perf_counter() - t0)
        return self._cache[key]

    def size(self, i: int, q: Optional[float]) -> int:
        return len(self.get(i, q)[0])


def measure(decode: Callable[[bytes], torch.Tensor], files: list[bytes], targets: torch.Tensor,
            with_lpips: bool, with_identity: bool = False) -> tuple[list[dict], list[float]]:
    """Decode each file (timed) to ``(3, R, R)`` and compare with ``targets`` ``(N, 3, R, R)``:
    one metrics dict per file, and the decode seconds."""
    recons, seconds = [], []
    for data in files:
        t0 = time.perf_counter()
        x = decode(data)
        seconds.append(time.perf_counter() - t0)
        if tuple(x.shape) != tuple(targets.shape[1:]):
            raise InvcompError(f"a decoded image has shape {tuple(x.shape)}, expected {tuple(targets.shape[1:])}")
        recons.append(x)
    return metrics.quality(torch.stack(recons), targets, with_lpips=with_lpips, with_identity=with_identity), seconds


def _classic_decoder(codec: ClassicCodec, side: int) -> Callable[[bytes], torch.Tensor]:
    """Bytes -> ``(3, R, R)``; a placeholder's small picture is scaled to ``R x R`` as a page would."""
    if codec.placeholder:
        from invcomp.classic.placeholders import scale_to

        return lambda data: from_image(scale_to(codec.decode(data), (side, side)))
    return lambda data: from_image(codec.decode(data))


def run_fixed(coded: Coded, *, with_lpips: bool = True, with_identity: bool = False, tick: Tick = _no_tick) -> list[dict]:
    """The codec's fixed-setting sweep on every image: one ``mode=fixed`` row per image per setting."""
    codec, inputs = coded.codec, coded.inputs
    rows = []
    for q in codec.fixed:
        files = [coded.get(i, q) for i in range(len(inputs.names))]
        ms, dec = measure(_classic_decoder(codec, inputs.resolution), [d for d, _ in files], inputs.targets, with_lpips, with_identity)
        for name, (data, enc), m, dt in zip(inputs.names, files, ms, dec):
            rows.append(_row(name, codec.name, "fixed", codec.setting_label(q), q, len(data), inputs.resolution, m,
                             enc, dt))
        tick(len(files))
    return rows


def run_equal_bytes(coded: Coded, targets: list[int], bits: int, *, max_steps: int = 12, with_lpips: bool = True,
                    with_identity: bool = False, tick: Tick = _no_tick, reference: str = "invcomp") -> list[dict]:
    """For image ``i``, the codec's setting whose file is closest to ``targets[i]`` bytes (the file of the invcomp
    codec ``reference`` at ``bits``): one ``mode=equal_bytes`` row per image, ``cannot_reach`` when its smallest
    file is larger."""
    codec, inputs = coded.codec, coded.inputs
    if codec.knob is None:
        raise ValueError(f"codec {codec.name} has no quality knob to search")
    found = []
    for i, target in enumerate(targets):
        found.append(find_closest(lambda q, i=i: coded.size(i, q), target, codec.knob, max_steps=max_steps))
        tick(1)
    files = [coded.get(i, res.quality) for i, res in enumerate(found)]
    ms, dec = measure(_classic_decoder(codec, inputs.resolution), [d for d, _ in files], inputs.targets, with_lpips, with_identity)
    return [_row(name, codec.name, "equal_bytes", codec.setting_label(res.quality), res.quality, len(data),
                 inputs.resolution, m, enc, dt, bits=bits, reference=reference, target_bytes=res.target, cannot_reach=res.cannot_reach,
                 search_steps=res.steps)
            for name, res, (data, enc), m, dt in zip(inputs.names, found, files, ms, dec)]


def warm_up(codec: "Codec", image: Image.Image) -> None:
    """One untimed encode and decode, so that one-off start-up costs do not land in the first timing."""
    codec.decode(codec.encode([image])[0].data)


def run_invcomp(codec: "Codec", inputs: Inputs, *, label: str = "invcomp", batch_size: int = 32,
                with_lpips: bool = True, with_identity: bool = False, tick: Tick = _no_tick) -> tuple[list[dict], list[bytes]]:
    """Encode every image with ``codec`` (any mode; batches of ``batch_size``, which do not change the files) and
    decode each ``.ivc`` file with it (timed): one ``mode=fixed`` row per image under ``label``, and the files."""
    if codec.resolution and codec.resolution != inputs.resolution:  # resolution 0: any size (GC, SC)
        raise InvcompError(f"model {codec.name!r} codes {codec.resolution}x{codec.resolution} images, but the "
                           f"benchmark pixels are {inputs.resolution}x{inputs.resolution}; drop --size or that codec")
    if codec.settings.fit != "crop":
        raise InvcompError("the benchmark codes centre crops; use fit crop")
    bits = codec.settings.bits
    rows, files = [], []

    def dec(data: bytes) -> torch.Tensor:
        return quantize_pixels(codec.decode(data)[1])

    # a fixed-size mode fits the originals itself (the same bytes as `invcomp encode`); one of any size (GC) is given
    # the benchmark's R x R pixels, which it codes as they are
    sources = inputs.originals if inputs.originals is not None and codec.resolution else inputs.images
    for s in range(0, len(inputs.names), batch_size):
        chunk = sources[s:s + batch_size]
        t0 = time.perf_counter()
        enc = codec.encode(chunk)
        per_image = (time.perf_counter() - t0) / len(chunk)
        data = [e.data for e in enc]
        ms, dts = measure(dec, data, inputs.targets[s:s + batch_size], with_lpips, with_identity)
        for name, d, m, dt in zip(inputs.names[s:s + batch_size], data, ms, dts):
            rows.append(_row(name, label, "fixed", f"bits={bits}", bits, len(d), inputs.resolution, m, per_image,
                             dt, bits=bits))
        files.extend(data)
        tick(len(chunk))
    return rows, files
