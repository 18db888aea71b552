"""Does channels-last, bfloat16, folding BatchNorm or ``torch.compile`` speed up the search on the CPU? (issue 33)

    python experiments/cpu_tricks.py --limit 4 --iters 50

The default search (warm start, one face at a time, one thread) on ``--limit`` held-out faces, with each variant:
milliseconds per step (median over faces, after a warm-up face), and the bytes and SSIM of the files, against the
plain float32 search. ``compile`` also reports its one-off compile time, which a one-face process pays in full.
"""
from __future__ import annotations

import copy
import statistics
import sys
import time
from pathlib import Path

import click
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from invcomp.codecs import EncodeSettings  # noqa: E402
from invcomp.codecs.modes.inversion import InversionCodec  # noqa: E402
from invcomp.data import list_images  # noqa: E402


def fold_batchnorm(G: torch.nn.Module) -> torch.nn.Module:
    """A copy of a DCGAN generator with each eval-mode BatchNorm folded into the ConvTranspose before it."""
    G = copy.deepcopy(G)
    seq = G.main
    layers = list(seq)
    out = []
    i = 0
    while i < len(layers):
        m = layers[i]
        if isinstance(m, torch.nn.ConvTranspose2d) and i + 1 < len(layers) and isinstance(layers[i + 1], torch.nn.BatchNorm2d):
            bn = layers[i + 1]
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            conv = torch.nn.ConvTranspose2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, bias=True)
            conv.weight.data = m.weight.data * scale[None, :, None, None]
            conv.bias.data = bn.bias - bn.running_mean * scale
            out.append(conv)
            i += 2
        else:
            out.append(m)
            i += 1
    G.main = torch.nn.Sequential(*out)
    return G.eval()


class Wrapped(torch.nn.Module):
    def __init__(self, G: torch.nn.Module, kind: str) -> None:
        super().__init__()
        self.G, self.kind, self.latent_dim = G, kind, G.latent_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.kind == "bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return self.G(z).float()
        y = self.G(z)
        return y.contiguous() if self.kind == "channels_last" else y


@click.command()
@click.option("--data", default="../shared/data/utkface", show_default=True)
@click.option("--limit", default=4, show_default=True)
@click.option("--iters", default=50, show_default=True)
@click.option("--variants", default="plain,channels_last,bf16,fold_bn,compile", show_default=True)
def main(data: str, limit: int, iters: int, variants: str) -> None:
    torch.set_num_threads(1)
    images = [Image.open(p).convert("RGB") for p in list_images(data, "holdout")[:limit + 1]]
    base = InversionCodec.load("dcgan-utkface64", EncodeSettings(iters=iters))
    G0 = base.gen.module
    print("| variant | ms / step | bytes | SSIM | one-off s |\n|---|---|---|---|---|")
    for v in variants.split(","):
        codec = copy.copy(base)
        gen = copy.copy(base.gen)
        t_once = 0.0
        if v == "plain":
            G = G0
        elif v == "channels_last":
            G = Wrapped(copy.deepcopy(G0).to(memory_format=torch.channels_last), v)
        elif v == "bf16":
            G = Wrapped(G0, v)
        elif v == "fold_bn":
            G = fold_batchnorm(G0)
        else:
            t0 = time.perf_counter()
            G = torch.compile(G0)
            G(torch.zeros(1, G0.latent_dim)).sum()  # compile the forward
            t_once = time.perf_counter() - t0
        gen.module = G
        codec.gen = gen
        ms, sizes, ssims = [], [], []
        for k, im in enumerate(images):
            t0 = time.perf_counter()
            e = codec.encode([im])[0]
            if k:  # the first face warms up
                ms.append(1000 * (time.perf_counter() - t0) / iters)
                sizes.append(len(e.data))
                ssims.append(e.ssim())
        print(f"| {v} | {statistics.median(ms):.1f} | {statistics.mean(sizes):.1f} | {statistics.mean(ssims):.4f} | "
              f"{t_once:.1f} |", flush=True)


if __name__ == "__main__":
    main()
