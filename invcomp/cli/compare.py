"""``invcomp compare``: distortion between an original and a reconstruction, optionally as the encoder measured it."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from invcomp.cli.outputs import guard
from invcomp.files import dumps
from invcomp.service.compare import compare as compare_images
from invcomp.service.items import check_readable, read_bytes


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
    m = compare_images(a, b, data, names=(str(original), str(reconstruction), str(bitstream_path)))
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


def _photo_lines(row: dict, data: bytes) -> None:
    from invcomp.faces import frame
    from invcomp.formats import photo as container

    photo = container.unpack(data)
    for f in row["faces"]:
        ident = "n/a" if f["face_identity"] is None else f"{f['face_identity']:.3f}"
        ssim = "n/a" if f["face_ssim"] is None else f"{f['face_ssim']:.4f}, PSNR {f['face_psnr']:.2f} dB"
        click.echo(f"face {f['face']} in the frame: SSIM {ssim}, identity {ident}")
    whole = ""
    if "frame_psnr" in row:  # a detail layer: the whole picture was coded
        ident = "n/a" if row["frame_identity"] is None else f"{row['frame_identity']:.3f} (same person at < 0.6)"
        whole = f", PSNR {row['frame_psnr']:.2f} dB, MS-SSIM {row['frame_ms_ssim']:.4f}, identity {ident}"
    click.echo(f"frame: SSIM {row['frame_ssim']:.4f}{whole} (at <= {frame.FRAME_SIDE} px); {row['bytes']} B, "
               f"{row['bpp']:.4f} bpp over {photo.width}x{photo.height}")
