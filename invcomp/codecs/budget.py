"""The decode budget: every size a file makes the decoder draw, checked against ``--max-pixels`` before any work.

One function, :func:`check_budget`, decides for every file kind (plain, layered, photo, GC and SC) and for the
layered encoder's plan; :func:`file_steps` lists, from a file's headers alone (nothing decoded), what decoding it
will draw. See :func:`check_budget` for the formula. Pure (no torch).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from invcomp.errors import InvcompError

MIB = 1 << 20
FIXED_BYTES = 384 * MIB
"""The budget's constant part: one network pass over a GC tile with its halo (768 x 768 px at
:data:`NETWORK_BYTES_PER_PIXEL`: 288 MiB), plus the plain decoder's 100 MB (``docs/robustness.md``)."""
BUDGET_BYTES_PER_PIXEL = 16
"""The budget's part per pixel of ``--max-pixels``: what the most costly kind of picture, a GC or SC one, takes per
pixel (:data:`FRAME_BYTES_PER_PIXEL`)."""
OUTPUT_BYTES_PER_PIXEL = 8
"""The picture written, per pixel: the uint8 frame, its copy into the PNG writer, and a photo's paste region
(measured: a plain decode 2.2 B/px at 64 Mpx, a photo decode about twice that)."""
FRAME_BYTES_PER_PIXEL = 16
"""A GC or SC picture, per pixel: the picture and its code maps (measured over a 64 x 64 decode, one thread: GC
166, 253 and 396 MiB at 1, 4.2 and 16.8 Mpx, about 12 B per pixel more; SC 310 and 436 MiB at 4.2 and 16.8 Mpx)."""
NETWORK_BYTES_PER_PIXEL = 512
"""A network pass at full resolution, per pixel of its output: the residual layer's activations (measured
509-565 B/px at 512-1024 px, decoding and encoding alike) and a GC generator tile."""
DETAIL_BYTES_PER_PIXEL = 12
"""A detail layer's correction resized to a frame larger than the detail picture, per frame pixel: one float32
channel at a time (4 B), its sum with the frame's channel (4 B) and the frame's copy (3 B)."""
SYNTH_BYTES_PER_CELL = 2048
"""SC's synthesiser, per cell of the 16-px code grid (8 B per image pixel)."""
BASE_SIDE = 64  # a version-2 generator's side (every shipped base draws 64 px)


@dataclass(frozen=True)
class Step:
    """One picture that a decode draws: ``what`` it is (for the message), its ``width`` x ``height`` in pixels,
    its peak memory per pixel (or in all: ``memory``, e.g. a GC tile with its halo), and whether it is network
    work (counted in the file's sum)."""

    what: str
    width: int
    height: int
    bytes_per_pixel: int = NETWORK_BYTES_PER_PIXEL
    network: bool = True
    memory: Optional[int] = None

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def bytes(self) -> int:
        return self.pixels * self.bytes_per_pixel if self.memory is None else self.memory


def memory_budget(max_pixels: int) -> int:
    """The decoder's memory budget in bytes for a pixel limit: ``FIXED_BYTES + BUDGET_BYTES_PER_PIXEL *
    max_pixels`` = 384 MiB + 16 B per pixel (above the process's floor: torch and the loaded models). At 64 Mpx
    (the default) 1,361 MiB; at 4 Mpx 445 MiB; at 1 Mpx 399 MiB."""
    return FIXED_BYTES + BUDGET_BYTES_PER_PIXEL * max_pixels


def check_budget(steps: Sequence[Step], output: Optional[Step], max_pixels: int, name: str = "this file") -> None:
    """Refuse, with one line, a decode (or a layered encode) whose sizes exceed the limits; the one check that every
    file kind and the layered encoder's plan go through.

    ``steps`` are the pictures it draws (each residual layer at its resolution, each generator pass, each face of
    a photo file and its paste-back box, each GC tile, SC's synthesiser grid); ``output`` is the picture written
    (``None``: not checked, as ``--native`` skips the declared size). With ``P = max_pixels``:

    1. the output, and every step, is at most ``P`` pixels;
    2. the network work of the whole file, the sum of the pixels of its network steps, is at most ``P``
       (a layered file's layers, a photo file's faces and their layers, a GC file's tiles);
    3. the peak memory, estimated as ``output pixels * its bytes per pixel (8; GC and SC 16) + max over steps of
       (pixels * bytes_per_pixel)`` (a network pass 512 B/px, a GC tile with its halo 288 MiB), is at most
       ``memory_budget(P) = FIXED_BYTES + BUDGET_BYTES_PER_PIXEL * P``, i.e. ``384 MiB + 16 B * P`` (1,361 MiB
       at the default 64 Mpx; 399 MiB at 1 Mpx, 445 MiB at 4 Mpx).

    So a residual layer (512 B/px) can be at most ``sqrt((384 MiB + 16 P - 8 * output) / 512)`` px on a side:
    1,664 px for a small picture at the default limit (2,048 px would take 2 GiB; the issue's 4,080 px, 8.1 GiB),
    and 16 of them pass (2) only if their squares add up to at most ``P``. A plain or photo file of exactly ``P``
    pixels and a GC or SC file of ``P`` pixels (16 B/px and a 288-MiB tile) all pass. (A 64-px generator's own
    picture is not counted: every model draws it.)
    """
    budget = memory_budget(max_pixels)
    limit = f"over the limit of {max_pixels:,} (raise it with --max-pixels"
    if output is not None and output.pixels > max_pixels:
        native = ", or use --native" if output.what in ("image", "photo") else ""  # a GC picture is its size either way
        raise InvcompError(f"{name} declares a {output.width}x{output.height} = {output.pixels:,} pixel {output.what}, "
                           f"{limit}{native})")
    for s in steps:
        if s.pixels > max_pixels:
            raise InvcompError(f"{name}: {s.what} is {s.width}x{s.height} = {s.pixels:,} pixels, {limit})")
    work = sum(s.pixels for s in steps if s.network)
    if work > max_pixels:
        raise InvcompError(f"{name}: its layers, faces, tiles and detail layer add up to {work:,} pixels of network work, {limit})")
    out_bytes = OUTPUT_BYTES_PER_PIXEL * output.pixels if output is not None else 0
    worst = max(steps, key=lambda s: s.bytes, default=None)
    peak = out_bytes + (worst.bytes if worst is not None else 0)
    if peak > budget:
        what = f"{worst.what} ({worst.width}x{worst.height})" if worst is not None else "its picture"
        raise InvcompError(f"{name}: {what} would take about {peak / MIB:,.0f} MiB, over the memory budget "
                           f"of {budget / MIB:,.0f} MiB for --max-pixels {max_pixels:,} (384 MiB + 16 B per pixel; "
                           "raise --max-pixels)")


def file_steps(data: bytes, *, native: bool = False, where: str = "") -> tuple[list[Step], Optional[Step]]:
    """What decoding ``data`` (any ``.ivc`` file) will draw, from its headers alone: the steps and the output
    (``None`` with ``native``, except for GC and SC, whose picture is the declared size either way). Raises
    :class:`~invcomp.errors.BitstreamError` for headers that do not parse."""
    from invcomp.formats import ivc as bitstream
    from invcomp.formats import layered as layers
    from invcomp.formats import photo as container

    if container.is_photo(data):
        return _photo_steps(container.unpack(data), native, where)
    header = bitstream.unpack(data)[0]
    if header.mode in (4, 5):  # GC, SC: whole frames at their own size, tile by tile
        return _gc_steps(header.width, header.height, header.mode == 5, where), Step(
            "picture", header.width, header.height, FRAME_BYTES_PER_PIXEL, network=False)
    side = max(BASE_SIDE, header.resolution)
    steps = [Step(f"{where}the generator's picture", side, side)] if side > BASE_SIDE else []  # a 64-px one: free
    if layers.is_layered(data):
        for i, (layer, _) in enumerate(layers.split(data)[1], start=1):  # layer 0: the base (layers.describe)
            if layer.kind == layers.KIND_RESIDUAL:
                steps.append(Step(f"{where}layer {i} (residual)", layer.resolution, layer.resolution))
                side = layer.resolution
    out = None if native else Step("image", header.width, header.height, OUTPUT_BYTES_PER_PIXEL, network=False)
    return steps, out


def native_side(data: bytes) -> tuple[int, int]:
    """The picture a face file decodes to with ``--native`` (width, height): the model's side, a layered file's last
    residual layer's, or a GC/SC file's declared size."""
    from invcomp.formats import ivc as bitstream
    from invcomp.formats import layered as layers

    header = bitstream.unpack(data)[0]
    if header.mode in (4, 5):
        return header.width, header.height
    side = max(BASE_SIDE, header.resolution)
    if layers.is_layered(data):
        side = max([side] + [layer.resolution for layer, _ in layers.split(data)[1] if layer.kind == layers.KIND_RESIDUAL])
    return side, side


def _gc_steps(width: int, height: int, sc: bool, where: str) -> list[Step]:
    from invcomp.nets.generative.tiles import DECODE_HALO, TILE

    cell = 16
    gh, gw = -(-height // cell), -(-width // cell)
    span = min(gh, TILE + 2 * DECODE_HALO) * min(gw, TILE + 2 * DECODE_HALO) * cell * cell  # a tile with its halo
    own_w, own_h = min(width, TILE * cell), min(height, TILE * cell)
    steps = [Step(f"{where}a tile of the generator", own_w, own_h, network=False, memory=span * NETWORK_BYTES_PER_PIXEL),
             Step(f"{where}the tiles", width, height, 0)]  # their own pixels: the whole picture, once
    if sc:
        steps.append(Step(f"{where}the synthesiser's code grid", gw, gh, SYNTH_BYTES_PER_CELL, network=False))
    return steps


def _photo_steps(photo, native: bool, where: str) -> tuple[list[Step], Optional[Step]]:  # type: ignore[no-untyped-def]
    from invcomp.formats import photo as container

    steps: list[Step] = []
    sides = []
    for i, rec in enumerate(photo.faces, start=1):
        face = f"{where}face {i}'s "
        inner, out = file_steps(rec.data, native=True, where=face)
        steps += inner
        if out is not None:  # a GC/SC face: its picture
            steps.append(Step(f"{face}picture", out.width, out.height, out.bytes_per_pixel, network=False))
        w, h = native_side(rec.data)
        sides.append(w)
        if native:
            continue
        if rec.placement is None:  # the face file over the whole frame
            steps.append(Step(f"{face}paste over the frame", photo.width, photo.height, OUTPUT_BYTES_PER_PIXEL))
        else:
            left, top, right, bottom = rec.placement.bounds()
            bw = max(0, min(right, photo.width) - max(left, 0))
            bh = max(0, min(bottom, photo.height) - max(top, 0))
            steps.append(Step(f"{face}paste-back box", bw, bh, OUTPUT_BYTES_PER_PIXEL))
    if native:  # the faces side by side at the first face's side
        return steps, Step("strip of faces", sides[0] * len(sides), sides[0], OUTPUT_BYTES_PER_PIXEL, network=False)
    if photo.detail is not None:  # the residual network at the detail picture's size, then its correction resized
        dw, dh = container.detail_size(photo.width, photo.height, photo.detail.side)
        steps.append(Step(f"{where}the detail layer ({dw}x{dh} px)", dw, dh))
        if (dw, dh) != (photo.width, photo.height):
            steps.append(Step(f"{where}the detail layer's correction over the frame", photo.width, photo.height,
                              DETAIL_BYTES_PER_PIXEL, network=False))
    return steps, Step("photo", photo.width, photo.height, OUTPUT_BYTES_PER_PIXEL, network=False)


def check_file(data: bytes, max_pixels: int, *, native: bool = False, name: str = "this file") -> None:
    """:func:`check_budget` of a whole file (:func:`file_steps`), before anything in it is decoded."""
    steps, output = file_steps(data, native=native)
    check_budget(steps, output, max_pixels, name)
