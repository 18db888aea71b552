"""The compare use case: distortion between an original and a reconstruction, measured as the encoder did when the
``.ivc`` file is given (its fit, at the model resolution; a photo file face by face and over the frame)."""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional

from PIL import Image

from invcomp.errors import InvcompError


def compare(a: Any, b: Any, data: Optional[bytes] = None, *, names: tuple[str, str, str] = ("ORIGINAL",
            "RECONSTRUCTION", "the bitstream")) -> dict:
    """The compare use case: what ``invcomp compare --json`` (and the web app) reports for PIL images ``a`` (original) and ``b`` (reconstruction): the quality
    metrics and ``resolution``; with the ``.ivc`` bytes ``data``, both brought to the model resolution with its fit
    (a layered file's: its last layer's side), plus ``bytes``, ``bpp`` and ``cr`` (a photo file: each face in the
    frame, and the whole frame). The identity is :func:`invcomp.identity.picture_distance`, at the original's
    size. ``names`` (original, reconstruction, bitstream) go into errors."""
    from invcomp import metrics
    from invcomp.formats import ivc as bitstream
    from invcomp.formats import layered as layers
    from invcomp.formats import photo as container
    from invcomp.identity import picture_distance
    from invcomp.imageio import fit_image, from_image, restore_size
    from invcomp.service.report import rates

    row: dict = {"original": names[0], "reconstruction": names[1]}
    seen = (a, b)  # the two pictures as given, for the identity distance
    if data is not None:
        if container.is_photo(data):
            return _photo(a, b, data, row)
        header = bitstream.unpack(data)[0]
        if header.version == 2:  # the model implies the resolution: read the file with it
            from invcomp.codecs import codec_for_header
            from invcomp.codecs.entropy import parse

            header = parse(data, codec_for_header(header))[0]
        if layers.is_layered(data):  # the file's own side: its last residual layer's, not the base's 64 px
            header = replace(header, resolution=layers.resolution(data))
        if b.size not in ((header.width, header.height), (header.resolution, header.resolution)):
            raise InvcompError(f"{names[1]} is {b.width}x{b.height}, but {names[2]} decodes to "
                               f"{header.width}x{header.height} (or {header.resolution}x{header.resolution} with --native)")
        if b.size != a.size and b.size != (header.width, header.height):  # --native: as decode writes it at full size
            seen = (a, restore_size(b, header.width, header.height, header.fit))  # type: ignore[arg-type]
        a = fit_image(a, header.resolution, header.fit)  # type: ignore[arg-type]
        b = fit_image(b, header.resolution, header.fit)  # type: ignore[arg-type]
    elif a.size != b.size:
        raise InvcompError(f"image sizes differ ({a.width}x{a.height} vs {b.width}x{b.height}); pass --bitstream "
                           "to compare at the model resolution")
    x, y = from_image(a)[None], from_image(b)[None]
    row.update(metrics.quality(y, x)[0])
    row["identity"] = picture_distance(*(seen if seen[0].size == seen[1].size else (a, b)))
    row["resolution"] = [a.width, a.height]
    if data is not None:
        r = rates(len(data), x[0])
        row.update({"bytes": r["bytes"], "bpp": r["bpp"], "cr": {"raw_rgb24": r["cr_raw"], "png": r["cr_png"]}})
    return row


def _photo(a: Any, b: Any, data: bytes, row: dict) -> dict:
    """compare --bitstream for a photo file: each face in the frame (as encode measures it), and the whole frame."""
    from invcomp import metrics
    from invcomp.faces import frame
    from invcomp.formats import photo as container

    photo = container.unpack(data)
    if a.size != b.size or b.size != (photo.width, photo.height):
        raise InvcompError(f"a photo file's frame is {photo.width}x{photo.height}; the images are {a.width}x{a.height} "
                           f"and {b.width}x{b.height}")
    faces = [{"face": i, **frame.face_metrics(a, b, rec.placement, with_identity=True)}
             for i, rec in enumerate(photo.faces, start=1) if rec.placement is not None]
    row.update(faces=faces, frame_ssim=frame.frame_ssim(a, b), bytes=len(data),
               bpp=metrics.bpp(len(data), photo.width, photo.height))
    if photo.detail is not None:  # the whole picture is coded: measured as a whole, as a plain file is
        from invcomp.identity import picture_distance
        from invcomp.imageio import from_image

        s = frame.FRAME_SIDE / max(a.size)
        size = a.size if s >= 1 else (max(1, round(a.width * s)), max(1, round(a.height * s)))
        x, y = (from_image(im.convert("RGB").resize(size, Image.Resampling.LANCZOS) if im.size != size else im.convert("RGB"))[None]
                for im in (a, frame.flat(b)))
        m = metrics.quality(y, x, with_lpips=False)[0]
        row.update(frame_psnr=m["psnr"], frame_ms_ssim=m["ms_ssim"], frame_identity=picture_distance(a, b))
    return row
