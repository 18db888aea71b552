"""How much of a full tone search (mode 2) a short refinement of the plain search's latent keeps: the measurement
behind ``invcomp.codecs.modes.auto.TONE_REFINE``.

    python experiments/ood_faces.py --data ../shared/data/utkface --limit 64 --out /tmp/ood
    python experiments/tone_refine.py --data /tmp/ood/colour --limit 12

Per face, with the shipped DCGAN and its default search (warm start, 200 steps, quantiser-aware, 6 bits): the
plain search; the full tone search (200 steps from the warm start, scoring G(z) after its best tone correction);
and refinements of the plain search's latent under the tone loss (steps at peak learning rate). Every picture is
the quantised latent's, with the tone record fitted and stored on its 8-byte grid, as the codec writes it. Printed:
mean SSIM and PSNR on the 8-bit pixels, and the search steps each costs.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import click
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from invcomp.bench.run import load_inputs  # noqa: E402
from invcomp.codecs import EncodeSettings, load_codec, stored_pixels  # noqa: E402
from invcomp.metrics import psnr, ssim  # noqa: E402

log = logging.getLogger("tone_refine")
REFINES = ((50, 0.1), (100, 0.2), (100, 0.5))


@click.command()
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--limit", default=12, show_default=True)
def main(data: str, limit: int) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    plain = load_codec("dcgan-utkface64", mode="inversion")
    toned = load_codec("dcgan-utkface64", mode="inversion-tone")
    inputs = load_inputs(data, 64, limit)
    x = inputs.targets
    rows: dict[str, list[tuple[float, float]]] = {}

    def score(label: str, codec, z: torch.Tensor) -> None:  # type: ignore[no-untyped-def]
        enc = codec.encode_symbols(z, inputs.originals)  # quantised, toned (mode 2) as the file holds it
        y = stored_pixels(torch.stack([e.recon for e in enc]))
        rows[label] = [(float(a), float(b)) for a, b in zip(ssim(y, x), psnr(y, x))]

    z0, _ = plain.find_symbols(x, None)
    score("plain search, 200 steps", plain, z0)
    score("plain search + tone record fitted after it", toned, z0)
    zt, _ = toned.find_symbols(x, None)
    score("full tone search, 200 steps", toned, zt)
    for steps, lr in REFINES:
        c = load_codec("dcgan-utkface64", EncodeSettings(iters=steps, lr=lr), mode="inversion-tone")
        zr, _ = c.find_symbols(x, None, init=z0)
        score(f"plain search + {steps} tone steps at lr {lr}", toned, zr)
    log.info("%d faces of %s (tone record on its 8-byte grid in every toned row):", len(x), data)
    for label, r in rows.items():
        log.info("  %-48s SSIM %.4f  PSNR %.2f dB", label, sum(a for a, _ in r) / len(r), sum(b for _, b in r) / len(r))


if __name__ == "__main__":
    main()
