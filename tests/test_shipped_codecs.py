"""The shipped warm-start encoders and VAE-GAN codecs: registry entries, hashes, and that the weights are trained."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from invcomp.formats import ivc as bitstream
from invcomp.codecs.settings import ITERS_FROM_PRIOR, ITERS_FROM_WARM_START
from invcomp.cli import cli
from invcomp.nets.warmstart import predict_latents
from invcomp.zoo.warmstart import shipped_warm_start
from invcomp.zoo import registry
from invcomp.metrics import ssim

from .conftest import DEMO_IMAGE, REPO, cli_runner

REGISTRY = json.loads((REPO / "pretrained" / "models.json").read_text())
WITH_ENCODER = sorted(n for n, r in REGISTRY.items() if r.get("encoder"))
VAEGANS = sorted(n for n, r in REGISTRY.items() if r.get("kind") == "vaegan" and not r.get("alias_of"))




def test_the_shipped_models_include_encoders_and_vaegans() -> None:
    # The PGAN's 9.8-MB encoder no longer ships (the tree must fit in 50 MiB): `invcomp train warm-start` rebuilds it.
    assert {"dcgan-utkface64"} <= set(WITH_ENCODER)
    assert {"vaegan-utkface64-c2", "vaegan-utkface64-c4"} <= set(VAEGANS)


@pytest.mark.parametrize("name", WITH_ENCODER)
def test_shipped_encoder_matches_its_hash_and_generator(name: str) -> None:
    entry = REGISTRY[name]["encoder"]
    path = REPO / "pretrained" / entry["weights"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
    assert entry["sha256"][:8] in path.name
    gen = registry.load_generator(name)
    enc = shipped_warm_start(gen)
    assert enc is not None and enc.sha256 == entry["sha256"]
    # trained for this generator, or for an earlier release of it (the float32 weights its alias decodes)
    releases = {gen.sha256} | {e.sha256 for e in registry.list_models() if e.alias_of == name}
    assert enc.config.generator_sha256 in releases
    assert not any(p.requires_grad for p in enc.module.parameters())


@pytest.mark.parametrize("name", WITH_ENCODER)
def test_shipped_encoder_recovers_latents_of_its_generator(name: str) -> None:
    # Predicting the prior's mean (0) gives a latent MSE of 1 on N(0, I) draws, and a random direction on the sphere
    # of radius sqrt(D) gives 2 against the true direction (norm-free generators); a trained encoder does better.
    gen = registry.load_generator(name)
    enc = shipped_warm_start(gen)
    assert enc is not None
    z = torch.randn(64, gen.config.latent_dim, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        x = gen.module(z)
        mu = predict_latents(enc.module, x)
    chance = 1.0
    if gen.config.norm_free:  # compare directions: mu is on the sphere of radius sqrt(D)
        z = z / z.norm(dim=1, keepdim=True) * gen.config.latent_dim ** 0.5
        chance = 2.0
    mse = float((mu - z).pow(2).mean())
    assert mse < 0.8 * chance, mse
    # and its guess draws an image closer to x than a random latent's does
    with torch.no_grad():
        assert float(ssim(gen.module(mu), x).mean()) > float(ssim(gen.module(torch.randn_like(z)), x).mean()) + 0.1


def test_auto_init_uses_the_shipped_encoder_and_its_default_iterations(tmp_path: Path) -> None:
    out = tmp_path / "a.ivc"
    r = cli_runner().invoke(cli, ["encode", str(DEMO_IMAGE), "-o", str(out), "--model", "dcgan-utkface64", "--device", "cpu",
                                  "--iters", "0", "--json"])
    assert r.exit_code == 0, r.stderr
    row = json.loads(r.stdout.splitlines()[0])
    assert row["init"] == "encoder" and row["model"] == "dcgan-utkface64"
    assert bitstream.unpack(out.read_bytes())[0].mode == bitstream.MODE_INVERSION
    assert ITERS_FROM_WARM_START == 50 < ITERS_FROM_PRIOR  # issue 33: a short search from the warm start


@pytest.mark.parametrize("name", VAEGANS)
def test_shipped_vaegan_codes_the_demo_face_through_the_cli(name: str, tmp_path: Path) -> None:
    entry = REGISTRY[name]
    path = REPO / "pretrained" / entry["weights"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
    c = int(name.rsplit("-c", 1)[1])
    out, png = tmp_path / "a.ivc", tmp_path / "a.png"
    # --channels C picks the plain vaegan-utkface64-cC; the augmented ones are named
    how = ["--mode", "vaegan", "--channels", str(c)] if name == f"vaegan-utkface64-c{c}" else ["--model", name]
    r = cli_runner().invoke(cli, ["encode", str(DEMO_IMAGE), "-o", str(out), *how, "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.stderr
    row = json.loads(r.stdout.splitlines()[0])
    assert row["model"] == name and row["mode"] == "vaegan"
    header = bitstream.unpack(out.read_bytes())[0]
    v2_id = registry.decode_id(entry["sha256"], entry["config_sha256"], entry["prior"]["sha256"])
    assert header.mode == bitstream.MODE_VAEGAN and header.version == 2 and header.model_id == v2_id
    # decode finds the codec by the model id in the file, with no --model
    r = cli_runner().invoke(cli, ["decode", str(out), "-o", str(png), "--native", "--device", "cpu"])
    assert r.exit_code == 0, r.stderr
    assert Image.open(png).size == (64, 64)
    # trained weights: far above what an untrained codec gives this face (about 0 SSIM)
    assert row["ssim"] > 0.5, row


def test_models_lists_generators_encoders_and_vaegans() -> None:
    r = cli_runner().invoke(cli, ["models", "--json"])
    assert r.exit_code == 0, r.stderr
    rows = {d["name"]: d for d in map(json.loads, r.stdout.splitlines())}
    for name in VAEGANS:
        assert rows[name]["kind"] == "vaegan" and rows[name]["channels"] == int(name.rsplit("-c", 1)[1])
    for name in WITH_ENCODER:
        assert rows[name]["kind"] == "generator" and rows[name]["encoder"].endswith(REGISTRY[name]["encoder"]["weights"])
    text = cli_runner().invoke(cli, ["models"]).stdout
    assert all(n in text for n in REGISTRY)
