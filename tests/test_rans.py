"""The residual and detail layers code without CompressAI: the shipped Gaussian tables are CompressAI's, invcomp's rANS
encoder writes CompressAI's bytes, and invcomp's GDN and convolutions compute what CompressAI's do."""
from __future__ import annotations

import random
import warnings

import pytest
import torch

from invcomp.coding import gaussian, rans
from invcomp.errors import InvcompError

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    compressai = pytest.importorskip("compressai")


def _theirs():  # type: ignore[no-untyped-def]
    from compressai.entropy_models import GaussianConditional
    from compressai.models.google import get_scale_table

    g = GaussianConditional(None, scale_bound=0.11)
    g.update_scale_table(get_scale_table(), force=True)
    return g


def test_the_shipped_tables_are_compressais() -> None:
    g, t = _theirs(), gaussian.tables()
    lengths = g._cdf_length.tolist()
    assert [list(c) for c in t.cdfs] == [g._quantized_cdf[i, :n].tolist() for i, n in enumerate(lengths)]
    assert list(t.offsets) == g._offset.tolist()
    assert torch.equal(gaussian.scale_table(), g.scale_table)


@pytest.mark.parametrize("spread", [0.3, 4.0, 300.0])
def test_indexes_streams_and_values_are_compressais(spread: float) -> None:
    g, gen = _theirs(), torch.Generator().manual_seed(int(spread * 10))
    for shape in ((1, 48, 1, 1), (1, 48, 3, 5), (1, 8, 16, 16)):
        scales = torch.rand(shape, generator=gen) * spread
        means = torch.randn(shape, generator=gen) * 3
        y = means + torch.randn(shape, generator=gen) * scales * 4  # some symbols escape their tables
        idx = g.build_indexes(scales)
        assert torch.equal(gaussian.build_indexes(scales), idx.int())
        data = gaussian.compress(y, scales, means)
        assert data == g.compress(y, idx, means=means)[0]
        assert torch.equal(gaussian.decompress(data, scales, means, "x"), g.decompress([data], idx, means=means))


def test_the_encoder_is_compressais_byte_for_byte_and_decodes_back() -> None:
    from compressai import ans

    g, t, rng = _theirs(), gaussian.tables(), random.Random(3)
    args = (g._quantized_cdf.tolist(), g._cdf_length.tolist(), g._offset.tolist())
    for n in (1, 2, 50, 2000):
        idx = [rng.randrange(len(t.cdfs)) for _ in range(n)]
        sym = [rng.choice([int(rng.gauss(0, 2)), rng.randint(-3000, 3000), -(2 ** 20), 2 ** 20]) for _ in idx]
        data = rans.encode(sym, idx, t)
        assert data == ans.RansEncoder().encode_with_indexes(sym, idx, *args)
        assert rans.decode(data, idx, t) == sym
    with pytest.raises(InvcompError, match="too far outside"):  # CompressAI's encoder would never return
        rans.encode([2 ** 30], [0], t)


def test_a_residual_network_computes_what_compressais_layers_compute() -> None:
    from compressai.layers import GDN as TheirGDN

    from invcomp.nets.layers import GDN

    torch.manual_seed(0)
    for inverse in (False, True):
        theirs, mine = TheirGDN(16, inverse=inverse), GDN(16, inverse=inverse)
        with torch.no_grad():
            theirs.beta.uniform_(0.5, 2)
            theirs.gamma.uniform_(0, 0.3)
        assert mine.load_state_dict(theirs.state_dict()) is not None  # the same names, all of them
        x = torch.randn(2, 16, 9, 7, requires_grad=True)
        x2 = x.detach().clone().requires_grad_(True)
        a, b = theirs(x), mine(x2)
        assert torch.equal(a, b)
        a.square().sum().backward()
        b.square().sum().backward()
        assert torch.equal(x.grad, x2.grad)
        assert torch.equal(theirs.beta.grad, mine.beta.grad) and torch.equal(theirs.gamma.grad, mine.gamma.grad)
