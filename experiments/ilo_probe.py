"""Would an intermediate-layer latent (ILO, Daras et al. 2021) pay for itself in bytes? A measured probe.

    python experiments/ilo_probe.py --data /tmp/ood/reframed --limit 12

For each face: the default inversion's float latent z, then G's first-block feature map h = G1(z) (512 x 4 x 4,
after BatchNorm and ReLU) freed and optimised for 200 steps (SSIM loss, Adam, lr 0.05) as delta = h' - h with an
L1 penalty mu * mean|delta| that keeps it sparse (ILO's ball constraint, in Lagrangian form). Then delta is
quantised with a uniform step (a fraction of h's standard deviation) and its cost estimated as the ideal code
length under a zero-mean Laplacian fitted to the quantised values of all faces (an entropy coder's best case;
a real coder pays more). Printed per setting: mean SSIM of G(z) (float), of the float ILO picture, of the
quantised ILO picture, and the estimated extra bytes per face. No file format changes; this is the measurement
behind not shipping ILO (README, "Faces the generator never saw").
"""
from __future__ import annotations

import logging
import math
import sys
from pathlib import Path

import click
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from invcomp.bench.run import load_inputs  # noqa: E402
from invcomp.codecs import load_codec  # noqa: E402
from invcomp.metrics import ssim  # noqa: E402

log = logging.getLogger("ilo_probe")


def laplace_bits(q: torch.Tensor) -> float:
    """Ideal code length in bits of integer symbols ``q`` under a discretised zero-mean Laplacian fitted to them."""
    b = max(float(q.float().abs().mean()), 1e-3)
    v = q.float()
    p = torch.exp(-(v.abs() - 0.5).clamp(min=0) / b) - torch.exp(-(v.abs() + 0.5) / b)
    p = torch.where(v == 0, 1 - math.exp(-0.5 / b), p / 2)
    return float(-torch.log2(p.clamp(min=1e-12)).sum())


@click.command()
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--limit", default=12, show_default=True)
@click.option("--iters", default=200, show_default=True)
def main(data: str, limit: int, iters: int) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    codec = load_codec("dcgan-utkface64")
    G = codec.gen.module
    g1, rest = G.main[:3], G.main[3:]
    inputs = load_inputs(data, 64, limit)
    z, _ = codec.find_symbols(inputs.targets, None)
    with torch.no_grad():
        h0 = g1(z[:, :, None, None])
        base = float(ssim(G(z).clamp(-1, 1), inputs.targets).mean())
    sd = float(h0.std())
    log.info("%d faces of %s: G(z) float SSIM %.4f; feature map 512x4x4, std %.3f", len(z), data, base, sd)
    for mu in (0.1, 1.0, 10.0, 100.0):
        delta = torch.zeros_like(h0, requires_grad=True)
        opt = torch.optim.Adam([delta], lr=0.05)
        for _ in range(iters):
            x = rest(torch.relu(h0 + delta)).clamp(-1, 1)
            loss = (1 - ssim(x, inputs.targets)).sum() + mu * delta.abs().mean(dim=(1, 2, 3)).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            free = float(ssim(rest(torch.relu(h0 + delta)).clamp(-1, 1), inputs.targets).mean())
            for frac in (0.5, 1.0, 2.0, 4.0):
                step = frac * sd
                q = torch.round(delta / step)
                xq = rest(torch.relu(h0 + q * step)).clamp(-1, 1)
                sq = float(ssim(xq, inputs.targets).mean())
                extra = laplace_bits(q) / 8 / len(z)
                log.info("mu %-5g step %.2f sd: SSIM float ILO %.4f, quantised %.4f (+%.4f over G(z)); "
                         "~%.0f extra bytes per face; %.1f%% of the 8192 symbols nonzero", mu, frac, free, sq,
                         sq - base, extra, 100 * float((q != 0).float().mean()))


if __name__ == "__main__":
    main()
