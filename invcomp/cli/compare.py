"""``invcomp compare``: distortion between an original and a reconstruction, optionally as the encoder measured it."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from ..errors import InvcompError
from ..outputs import dumps, guard
from .common import read_bytes


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
    measured; without it they must be the same size.
    """
    from .. import bitstream, metrics
    from ..imageio import fit_image, from_image, load_image
    from .encode_report import rates

    a, b = load_image(original), load_image(reconstruction)
    row: dict = {"original": str(original), "reconstruction": str(reconstruction)}
    data = b""
    if bitstream_path is not None:
        data = read_bytes(bitstream_path, 1 << 26, ".ivc file")
        from ..faces import container

        if container.is_photo(data):
            return _photo(a, b, data, row, as_json)
        header = bitstream.unpack(data)[0]
        if header.version == 2:  # the model implies the resolution: read the file with it
            from ..codecs import codec_for_header
            from ..codecs.entropy import parse

            header = parse(data, codec_for_header(header))[0]
        if b.size not in ((header.width, header.height), (header.resolution, header.resolution)):
            raise InvcompError(f"{reconstruction} is {b.width}x{b.height}, but {bitstream_path} decodes to "
                               f"{header.width}x{header.height} (or {header.resolution}x{header.resolution} with --native)")
        a = fit_image(a, header.resolution, header.fit)  # type: ignore[arg-type]
        b = fit_image(b, header.resolution, header.fit)  # type: ignore[arg-type]
    elif a.size != b.size:
        raise InvcompError(f"image sizes differ ({a.width}x{a.height} vs {b.width}x{b.height}); pass --bitstream "
                           "to compare at the model resolution")
    x, y = from_image(a)[None], from_image(b)[None]
    m = metrics.quality(y, x, with_identity=True)[0]
    row.update(m)
    row["resolution"] = [a.width, a.height]
    if bitstream_path is not None:
        r = rates(len(data), x[0])
        row.update({"bytes": r["bytes"], "bpp": r["bpp"], "cr": {"raw_rgb24": r["cr_raw"], "png": r["cr_png"]}})
    if as_json:
        click.echo(dumps(row))
        return
    from ..identity import SAME_PERSON

    lp = "n/a (unavailable)" if m["lpips"] is None else f"{m['lpips']:.4f}"
    ident = ("n/a (not installed)" if m["identity"] is None else
             f"{m['identity']:.3f} ({'same person' if m['identity'] < SAME_PERSON else 'another person'} at < {SAME_PERSON})")
    click.echo(f"at {a.width}x{a.height}: PSNR {m['psnr']:.2f} dB, MSE {m['mse']:.6f}, SSIM {m['ssim']:.4f}, "
               f"MS-SSIM {m['ms_ssim']:.4f} ({metrics.ms_ssim_levels(min(a.size))} scales), LPIPS {lp}, identity {ident}")
    if bitstream_path is not None:
        click.echo(f"{row['bytes']} B, {row['bpp']:.3f} bpp, compression ratio {row['cr']['raw_rgb24']:.1f}x vs raw "
                   f"24-bit RGB, {row['cr']['png']:.1f}x vs PNG")


def _photo(a, b, data: bytes, row: dict, as_json: bool) -> None:  # noqa: ANN001  (PIL images)
    """compare --bitstream for a photo file: each face in the frame (as encode measures it), and the whole frame."""
    from .. import metrics
    from ..faces import container, frame

    photo = container.unpack(data)
    if a.size != b.size or b.size != (photo.width, photo.height):
        raise InvcompError(f"a photo file's frame is {photo.width}x{photo.height}; the images are {a.width}x{a.height} "
                           f"and {b.width}x{b.height}")
    faces = [{"face": i, **frame.face_metrics(a, b, rec.placement, with_identity=True)}
             for i, rec in enumerate(photo.faces, start=1) if rec.placement is not None]
    row.update(faces=faces, frame_ssim=frame.frame_ssim(a, b), bytes=len(data),
               bpp=metrics.bpp(len(data), photo.width, photo.height))
    if as_json:
        click.echo(dumps(row))
        return
    for f in faces:
        ident = "n/a" if f["face_identity"] is None else f"{f['face_identity']:.3f}"
        ssim = "n/a" if f["face_ssim"] is None else f"{f['face_ssim']:.4f}, PSNR {f['face_psnr']:.2f} dB"
        click.echo(f"face {f['face']} in the frame: SSIM {ssim}, identity {ident}")
    click.echo(f"frame: SSIM {row['frame_ssim']:.4f} (at <= {frame.FRAME_SIDE} px); {len(data)} B, {row['bpp']:.4f} bpp "
               f"over {photo.width}x{photo.height}")
