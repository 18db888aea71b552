"""The range work: the tone correction (mode 2) and ``--mode auto``, against independent expectations."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import pytest
import torch
from PIL import Image

from invcomp.formats import ivc as bitstream
from invcomp.search import tone
from invcomp.cli import cli
from invcomp.codecs import Codec, EncodeSettings, entropy, load_codec, register_mode, unregister_mode
from invcomp.codecs.modes.auto import AutoCodec, choose
from invcomp.codecs.settings import resolve_one_pass
from invcomp.codecs.loader import codec_for_header
from invcomp.errors import BitstreamError, InvcompError
from invcomp.imageio import to_pil
from invcomp.metrics import psnr, ssim

from .conftest import cli_runner

KNOWN = torch.tensor([[1.2, 0.1, 0.05], [0.8, -0.2, -0.1], [1.0, 0.3, 0.0]])  # a, b, o per channel


def _smooth(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(n, 3, 4, 4, generator=g) - 0.5
    return torch.nn.functional.interpolate(small, size=16, mode="bilinear", align_corners=False)


def test_tone_fit_recovers_a_known_correction() -> None:
    x = _smooth(2, 0)
    target = tone.apply(x, KNOWN.expand(2, 3, 3))
    assert target.abs().max() < 1  # nothing clamped, so the least-squares answer is exactly KNOWN
    assert torch.allclose(tone.fit(x, target, ridge=0.0), KNOWN.expand(2, 3, 3), atol=1e-4)
    assert torch.allclose(tone.fit(x, x, ridge=0.0), tone.IDENTITY.expand(2, 3, 3), atol=1e-4)


def test_grayscale_is_a_tone_correction() -> None:
    x = 1.8 * _smooth(1, 1)  # a face's spread of values
    gray = x.mean(1, keepdim=True).expand_as(x)
    assert torch.allclose(tone.apply(x, tone.fit(x, gray, ridge=0.0)), gray, atol=1e-4)
    assert (tone.matched(x, gray) - gray).abs().max() < 0.02  # the default ridge barely pulls


def test_tone_record_round_trips() -> None:
    assert tone.unpack(tone.pack(tone.IDENTITY)).equal(tone.IDENTITY)  # the identity is on the grid exactly
    assert tone.unpack(tone.pack(KNOWN)).sub(KNOWN).abs().max() <= tone.STEP / 2
    rng = np.random.default_rng(0)
    for _ in range(50):  # any grid point round-trips exactly
        codes = torch.tensor(np.stack([rng.integers(0, 128, 3), rng.integers(0, 128, 3), rng.integers(0, 64, 3)], 1))
        p = tone.dequantise(codes)
        assert tone.unpack(tone.pack(p)).equal(p)
        assert len(tone.pack(p)) == tone.BYTES == 8
    far = torch.tensor([[9.0, -9.0, 9.0]] * 3)  # off the grid: clamped to its edges, not wrapped
    assert tone.unpack(tone.pack(far))[0].tolist() == [3 - tone.STEP, -2.0, 1 - tone.STEP]


def test_a_bad_tone_record_is_an_error() -> None:
    with pytest.raises(BitstreamError, match="tone record needs 8 bytes"):
        tone.unpack(bytes(7))
    with pytest.raises(BitstreamError, match="padding"):
        tone.unpack(bytes(7) + b"\x01")


@pytest.fixture(scope="module")
def tone_codec() -> Codec:
    return load_codec("dcgan-utkface64", EncodeSettings(bits=8), mode="inversion-tone")


def test_the_tone_mode_recovers_a_generated_face_under_a_known_tone(tone_codec: Any) -> None:
    # a face G itself drew, then recoloured: the mode must find both (an independent target, not its own output)
    G = tone_codec.gen.module
    with torch.no_grad():
        x = G(torch.randn(1, 100, generator=torch.Generator().manual_seed(3))).clamp(-1, 1)
    shift = torch.tensor([[1.1, 0.0, 0.05], [0.9, 0.1, 0.0], [0.7, 0.25, -0.05]])
    target = tone.apply(x, shift[None])
    img = to_pil(target[0])
    enc = tone_codec.encode([img])[0]
    header, back = tone_codec.decode(enc.data)
    assert header.mode == bitstream.MODE_INVERSION_TONE
    assert torch.equal(back, enc.recon)
    assert float(ssim(back[None], target)) > 0.9
    side = entropy.parse_with_side(enc.data, tone_codec)[2]
    assert tone.unpack(side).sub(shift).abs().max() < 0.15
    plain = load_codec("dcgan-utkface64", EncodeSettings(bits=8)).encode([img])[0]
    assert float(psnr(back[None], target)) > float(psnr(plain.recon[None], target)) + 1.0  # SSIM barely sees colour


def test_tone_files_in_both_containers_round_trip_and_refuse_truncation(tone_codec: Any, tmp_path: Path) -> None:
    img = Image.open(Path(__file__).resolve().parents[1] / "experiments/data/portraits/grace-hopper.png").convert("RGB")
    for coder, version in (("auto", 2), ("elias", 1)):
        c = load_codec("dcgan-utkface64", EncodeSettings(bits=6, coder=coder, iters=5), mode="inversion-tone")
        enc = c.encode([img])[0]
        assert enc.header.version == version
        header, x = codec_for_header(bitstream.unpack(enc.data)[0]).decode(enc.data)  # found from the header
        assert torch.equal(x, enc.recon) and header.mode == 2
        # the same latent without its tone is another picture (a grayscale photo): the record is really applied
        _, z, side = entropy.read_with_side(enc.data, c)
        assert len(side) == 8 and (c.synthesise(z)[0] - x).abs().max() > 0.05
        (tmp_path / f"v{version}.ivc").write_bytes(enc.data)
    r = cli_runner().invoke(cli, ["decode", str(tmp_path / "v2.ivc"), str(tmp_path / "v1.ivc"), "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.stderr
    v2 = (tmp_path / "v2.ivc").read_bytes()
    cut = v2[:9]  # ends inside the tone record; fix the CRC so that the length check is what fires
    cut = cut + bitstream.crc16(cut)
    with pytest.raises(BitstreamError):
        load_codec("dcgan-utkface64", mode="inversion-tone", for_decode=True).decode(cut)


# --- --mode auto ---------------------------------------------------------------------------------------------

def test_choose_keeps_the_smallest_file_that_draws_the_face_within_the_budget() -> None:
    scores, sizes = [0.60, 0.80, 0.81], [50, 100, 200]
    assert choose(scores, sizes, 0.0, None) == 2  # quality only
    assert choose(scores, sizes, 0.02, None) == 1  # 0.80 is within 0.02 of 0.81 and half the bytes
    assert choose(scores, sizes, 0.5, None) == 0  # anything goes: the smallest
    assert choose(scores, sizes, 0.0, 150) == 1  # the best that fits
    assert choose(scores, sizes, 0.0, 40) is None
    assert choose([0.7, 0.7], [60, 50], 0.0, None) == 1  # the same score: the smaller file
    assert choose([0.7, 0.75], [50, 50], 0.1, None) == 1  # the same size: the higher score


SIDE = 4


class _Toy(Codec):
    """Toy modes at 4 x 4: ``exact`` codes every pixel (48 symbols), ``flat`` only the mean colour (3 symbols)."""

    mode, mode_key, title, symbols = 6, "toy-exact", "toy exact (test)", 3 * SIDE * SIDE

    def __init__(self, settings: Optional[EncodeSettings] = None) -> None:
        s = resolve_one_pass(settings or EncodeSettings(), bits=8, scaling="max", mode=self.title)
        super().__init__(name=self.mode_key, model_id=bytes([0xEE, self.mode, 0, 0]), resolution=SIDE,
                         latent_dim=self.symbols, settings=s)

    @classmethod
    def load(cls, spec: Optional[str], settings: Optional[EncodeSettings] = None, *, device: str = "cpu",
             for_decode: bool = False, **options: Any) -> "_Toy":
        return cls(None if for_decode else settings)

    @classmethod
    def for_header(cls, header: bitstream.Header, *, device: str = "cpu") -> "_Toy":
        return cls()

    def find_symbols(self, target: torch.Tensor, progress: Any) -> tuple[torch.Tensor, list[dict]]:
        return target.flatten(1), [{} for _ in range(target.shape[0])]

    def synthesise(self, z: torch.Tensor) -> torch.Tensor:
        return z.view(-1, 3, SIDE, SIDE).clamp(-1, 1)


class _Flat(_Toy):
    mode, mode_key, title, symbols = 7, "toy-flat", "toy flat (test)", 3

    def find_symbols(self, target: torch.Tensor, progress: Any) -> tuple[torch.Tensor, list[dict]]:
        return target.mean((2, 3)), [{} for _ in range(target.shape[0])]

    def synthesise(self, z: torch.Tensor) -> torch.Tensor:
        return z[:, :, None, None].expand(-1, 3, SIDE, SIDE).clamp(-1, 1)


@pytest.fixture
def toys() -> Iterator[tuple[Codec, Codec]]:
    register_mode(_Toy)
    register_mode(_Flat)
    try:
        yield _Flat(), _Toy()
    finally:
        unregister_mode(_Toy.mode)
        unregister_mode(_Flat.mode)


def _noise(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8), "RGB")


def test_auto_picks_the_better_of_two_toy_modes(toys: tuple[Codec, Codec]) -> None:
    flat, exact = toys
    images = [_noise(0), Image.new("RGB", (SIDE, SIDE), (200, 30, 90))]
    sizes = {c.mode: [len(e.data) for e in c.encode(images)] for c in (flat, exact)}
    assert all(a < b for a, b in zip(sizes[7], sizes[6]))  # the flat file is the smaller one
    auto = AutoCodec([flat, exact], decoder_for=codec_for_header, tolerance=0.0)
    picked = auto.encode(images)
    # noise: only the exact mode draws it; a flat image: both draw it exactly, so the smaller (flat) file wins
    assert [e.header.mode for e in picked] == [6, 7]
    assert picked[0].extra["auto"]["chosen"] == "toy-exact:toy-exact"
    for e in picked:
        header, x = auto.decode(e.data)
        assert torch.equal(x, e.recon) and header.mode == e.header.mode
    # a budget under the exact file leaves the flat one; a budget under both fails that image alone
    capped = AutoCodec([flat, exact], decoder_for=codec_for_header, tolerance=0.0, max_bytes=sizes[6][0] - 1)
    assert capped.encode(images[:1])[0].header.mode == 7
    none = AutoCodec([flat, exact], decoder_for=codec_for_header, max_bytes=sizes[7][0] - 1).encode(images)
    assert isinstance(none[0], InvcompError) and "no mode fits" in str(none[0])
    # a tolerance of 1 takes any file: the smallest
    assert AutoCodec([flat, exact], decoder_for=codec_for_header, tolerance=1.0).encode(images[:1])[0].header.mode == 7


def test_auto_records_its_choice(tmp_path: Path) -> None:
    src = Path(__file__).resolve().parents[1] / "experiments/data/portraits/astronaut-face.png"
    run = cli_runner().invoke
    r = run(cli, ["encode", str(src), "--mode", "auto", "--iters", "2", "-o", str(tmp_path / "a.ivc"), "--json"])
    assert r.exit_code == 0, r.stderr
    row = json.loads(r.stdout)
    cands = {c["codec"]: c for c in row["auto"]["candidates"]}
    # the three VAE-GANs and the warm start's preview always; the searches where they could win (and then tone too)
    assert {k for k in cands if k.startswith("vaegan:")} == {"vaegan:vaegan-utkface64-c2", "vaegan:vaegan-utkface64aug-c4",
                                                            "vaegan:vaegan-utkface64aug-c8"}
    assert "inversion:dcgan-utkface64@0" in cands
    assert set(row["auto"]["searched"]) <= set(cands) and row["slope"] == 0.0007
    header = bitstream.unpack((tmp_path / "a.ivc").read_bytes())[0]
    assert row["mode"] == row["auto"]["chosen"].split(":")[0] == {0: "inversion", 1: "vaegan", 2: "inversion-tone"}[header.mode]
    # the file kept is the one worth its bytes: the most SSIM - price x bytes among the candidates
    best = max(cands.values(), key=lambda c: c["ssim"] - 0.0007 * c["bytes"])
    assert row["bytes"] == best["bytes"] and abs(row["ssim"] - best["ssim"]) < 1e-3
    # an expert's tolerance: the earlier rule, every candidate coded in full (no preview)
    r = run(cli, ["encode", str(src), "--mode", "auto", "--iters", "2", "--auto-tolerance", "0.03", "-o",
                  str(tmp_path / "t.ivc"), "--json"])
    assert r.exit_code == 0, r.stderr
    tol = json.loads(r.stdout)
    kinds = {c["codec"].split(":")[0] for c in tol["auto"]["candidates"]}
    assert kinds == {"inversion", "inversion-tone", "vaegan"} and len(tol["auto"]["candidates"]) == 5
    top = max(d["ssim"] for d in tol["auto"]["candidates"])  # (the SSIMs are rounded to 1e-4 in the report)
    lo, hi = (min(c["bytes"] for c in tol["auto"]["candidates"] if c["ssim"] >= top - 0.03 + e) for e in (-1e-4, 1e-4))
    assert lo <= tol["bytes"] <= hi
    r = run(cli, ["encode", str(src), "--mode", "auto", "--auto-tolerance", "0.03", "--quality", "high", "-o",
                  str(tmp_path / "u.ivc")])
    assert r.exit_code == 1 and "not both" in r.stderr and not (tmp_path / "u.ivc").exists()
    r = run(cli, ["encode", str(src), "--iters", "2", "--model", "auto:dcgan-utkface64", "-o", str(tmp_path / "b.ivc")])
    assert r.exit_code == 0 and (tmp_path / "b.ivc").read_bytes() == (tmp_path / "a.ivc").read_bytes()
    r = run(cli, ["decode", str(tmp_path / "a.ivc"), "-o", str(tmp_path / "a.png")])
    assert r.exit_code == 0, r.stderr
    # a byte budget: every candidate is rate-controlled to it, and the file fits
    r = run(cli, ["encode", str(src), "--iters", "2", "--target-bytes", "60", "-o", str(tmp_path / "c.ivc"), "--json"])
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "c.ivc").stat().st_size <= 60
    r = run(cli, ["encode", str(src), "--mode", "inversion-tone", "--iters", "2", "-o", str(tmp_path / "e.ivc")])
    assert r.exit_code == 0, r.stderr  # mode 2 alone defaults to the shipped generator, as mode 0 does
    assert bitstream.unpack((tmp_path / "e.ivc").read_bytes())[0].mode == 2
    r = run(cli, ["encode", str(src), "--mode", "auto", "--channels", "4", "-o", str(tmp_path / "d.ivc")])
    assert r.exit_code == 1 and "do not apply to --mode auto" in r.stderr and not (tmp_path / "d.ivc").exists()


def test_augmentation_keeps_shape_and_range_and_is_seeded() -> None:
    from invcomp.train.augment import augment

    x = _smooth(6, 2).clamp(-1, 1)
    x = torch.nn.functional.interpolate(x, size=32, mode="bilinear", align_corners=False)
    assert augment(x, torch.Generator().manual_seed(0), 0.0) is x  # p = 0: untouched
    a = augment(x, torch.Generator().manual_seed(0), 1.0)
    b = augment(x, torch.Generator().manual_seed(0), 1.0)
    assert a.shape == x.shape and torch.equal(a, b) and a.min() >= -1 and a.max() <= 1
    assert (a - x).abs().amax(dim=(1, 2, 3)).min() > 0.01  # every face changed at p = 1
    half = augment(x.repeat(20, 1, 1, 1), torch.Generator().manual_seed(1), 0.5)
    changed = (half - x.repeat(20, 1, 1, 1)).abs().amax(dim=(1, 2, 3)) > 1e-6
    assert 0.3 < float(changed.float().mean()) < 0.7  # about half of them


def test_bench_codes_auto_as_encode_does(tmp_path: Path) -> None:
    import csv

    faces = tmp_path / "faces"
    faces.mkdir()
    src = Path(__file__).resolve().parents[1] / "experiments/data/portraits/grace-hopper.png"
    (faces / "g.png").write_bytes(src.read_bytes())
    run = cli_runner().invoke
    r = run(cli, ["bench", str(faces), "--codecs", "invcomp:auto,webp", "--iters", "2", "--out", str(tmp_path / "out"),
                  "--no-plots", "--no-lpips", "--no-identity"])
    assert r.exit_code == 0, r.stderr
    rows = [x for x in csv.DictReader((tmp_path / "out" / "per_image.csv").open())
            if x["codec"] == "invcomp:auto" and x["mode"] == "fixed"]
    assert len(rows) == 1
    r = run(cli, ["encode", str(faces / "g.png"), "--mode", "auto", "--iters", "2", "-o", str(tmp_path / "g.ivc")])
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "g.ivc").stat().st_size == int(rows[0]["bytes"])
    api = load_codec(settings=EncodeSettings(iters=2)).encode([Image.open(faces / "g.png").convert("RGB")])[0].data
    assert api == (tmp_path / "g.ivc").read_bytes()
