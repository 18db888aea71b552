"""``invcomp compare``: distortion between an original and a reconstruction, optionally as the encoder measured it."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import click

from invcomp.errors import InvcompError
from invcomp.cli.outputs import guard
from invcomp.files import dumps
from invcomp.cli.common import check_readable, read_bytes


@click.command()
@click.argument("original", type=click.Path(path_type=Path))
@click.argument("reconstruction", type=click.Path(path_type=Path))
@click.option("--bitstream", "bitstream_path", type=click.Path(path_type=Path),
              help="The .ivc file: measure as the encoder did (its fit, at the model resolution), with bytes, bpp and ratios.")
@click.option("--json", "as_json", is_flag=True)
@guard
def compare(original: Path, reconstruction: Path, bitstream_path: Optional[Path], as_json: bool) -> None:
    """Distortion between ORIGINAL and RECONSTRUCTION (PSNR, MSE, SSIM, MS-SSIM, LPIPS, identity).

    With --bitstream both images are brought to the model resolution with the
    bitstream's fit (for crop: the coded centre square), which is what encode
    measured; without it they must be the same size. The identity distance is
    always that of the reconstruction at the original's size (a --native one is
    first put back as decode writes it), as encode --json and the web app give it.
    """
    for path in (original, reconstruction, *([bitstream_path] if bitstream_path is not None else [])):
        check_readable(path)  # before torch is imported
    from invcomp import metrics
    from invcomp.imageio import load_image

    a, b = load_image(original), load_image(reconstruction)
    data = read_bytes(bitstream_path, 1 << 26, ".ivc file") if bitstream_path is not None else None
    m = measure(a, b, data, names=(str(original), str(reconstruction), str(bitstream_path)))
    if as_json:
        click.echo(dumps(m))
        return
    if "faces" in m:
        _photo_lines(m, data or b"")
        return
    from invcomp.identity import SAME_PERSON

    w, h = m["resolution"]
    lp = "n/a (unavailable)" if m["lpips"] is None else f"{m['lpips']:.4f}"
    ident = ("n/a (not installed)" if m["identity"] is None else
             f"{m['identity']:.3f} ({'same person' if m['identity'] < SAME_PERSON else 'another person'} at < {SAME_PERSON})")
    click.echo(f"at {w}x{h}: PSNR {m['psnr']:.2f} dB, MSE {m['mse']:.6f}, SSIM {m['ssim']:.4f}, "
               f"MS-SSIM {m['ms_ssim']:.4f} ({metrics.ms_ssim_levels(min(w, h))} scales), LPIPS {lp}, identity {ident}")
    if bitstream_path is not None:
        click.echo(f"{m['bytes']} B, {m['bpp']:.3f} bpp, compression ratio {m['cr']['raw_rgb24']:.1f}x vs raw "
                   f"24-bit RGB" + ("" if m['cr']['png'] is None else f", {m['cr']['png']:.1f}x vs PNG"))


def measure(a: Any, b: Any, data: Optional[bytes] = None, *, names: tuple[str, str, str] = ("ORIGINAL",
            "RECONSTRUCTION", "the bitstream")) -> dict:
    """What ``invcomp compare --json`` reports for PIL images ``a`` (original) and ``b`` (reconstruction): the quality
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
    from invcomp.cli.encode_report import rates

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
    return row


def _photo_lines(row: dict, data: bytes) -> None:
    from invcomp.faces import frame
    from invcomp.formats import photo as container

    photo = container.unpack(data)
    for f in row["faces"]:
        ident = "n/a" if f["face_identity"] is None else f"{f['face_identity']:.3f}"
        ssim = "n/a" if f["face_ssim"] is None else f"{f['face_ssim']:.4f}, PSNR {f['face_psnr']:.2f} dB"
        click.echo(f"face {f['face']} in the frame: SSIM {ssim}, identity {ident}")
    click.echo(f"frame: SSIM {row['frame_ssim']:.4f} (at <= {frame.FRAME_SIDE} px); {row['bytes']} B, {row['bpp']:.4f} bpp "
               f"over {photo.width}x{photo.height}")
