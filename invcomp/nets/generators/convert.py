"""Safe conversion of pytorch_GAN_zoo PGAN checkpoints (``.pth``) to an invcomp state_dict + JSON config.

Their file is a dict ``{"config", "netG", "netD", "avgG"[, "tmp"]}`` whose ``config`` is a pickled
``models.utils.config.BaseConfig`` object, so ``torch.load(weights_only=True)`` refuses it. We read it
with :class:`RestrictedUnpickler`, which resolves only tensor-rebuild functions, storages and plain
containers, and maps their config class to an inert attribute bag. Any other global (``os.system``,
``builtins.eval``, ...) is refused before anything runs: nothing in the file is executed.
"""
from __future__ import annotations

import collections
import pickle
from pathlib import Path
from typing import Any

import torch

from invcomp.errors import InvcompError
from invcomp.nets.generators.config import GeneratorConfig
from invcomp.nets.generators.pgan import infer_pgan_arch, load_pgan, normalise_keys

ZOO_CONFIG_CLASSES = {("models.utils.config", "BaseConfig")}


class ZooConfig:
    """Stand-in for their ``BaseConfig``: unpickling only fills ``__dict__``; it has no behaviour."""


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch", "Size"): torch.Size,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals in ``_ALLOWED`` (plus their config class, as :class:`ZooConfig`)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ZOO_CONFIG_CLASSES:
            return ZooConfig
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"forbidden global {module}.{name} in checkpoint")


class _RestrictedPickleModule:
    """A ``pickle_module`` for ``torch.load``: torch resolves storages itself, everything else comes to us."""

    Unpickler = RestrictedUnpickler
    UnpicklingError = pickle.UnpicklingError
    __name__ = "invcomp_restricted_pickle"

    @staticmethod
    def load(f: Any, **kw: Any) -> Any:
        return RestrictedUnpickler(f, **kw).load()


def read_zoo_checkpoint(path: str | Path) -> dict:
    """Load their ``.pth`` without executing code; raises :class:`InvcompError` on anything else."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_RestrictedPickleModule)
    except FileNotFoundError:
        raise InvcompError(f"checkpoint not found: {path}") from None
    except Exception as e:  # UnpicklingError from find_class, or a file that is no checkpoint
        detail = (str(e).splitlines() or [""])[0][:160]
        raise InvcompError(f"refused {path}: {type(e).__name__}{': ' + detail if detail else ''}") from None
    if not isinstance(obj, dict) or "netG" not in obj:
        raise InvcompError(f"{path} is not a pytorch_GAN_zoo checkpoint (no netG entry)")
    return obj


def convert_pgan_zoo(path: str | Path) -> tuple[dict[str, torch.Tensor], GeneratorConfig]:
    """Their checkpoint -> (invcomp PGAN state_dict from ``avgG``, or ``netG`` without one; config)."""
    ck = read_zoo_checkpoint(path)
    cfg = ck.get("config")
    fields = dict(vars(cfg)) if isinstance(cfg, ZooConfig) else dict(cfg) if isinstance(cfg, dict) else {}
    get = fields.get
    source = "avgG" if isinstance(ck.get("avgG"), dict) else "netG"
    state = normalise_keys(ck[source])
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InvcompError(f"{path}: {source} is not a state_dict of tensors")
    try:
        kw = {
            "alpha": float(get("alpha", 0.0) or 0.0),
            "leaky": float(get("leakyReluLeak", 0.2)),
            "normalization": bool(get("perChannelNormalization", True)),
            "output_activation": "tanh" if str(get("lossMode", "WGANGP")).upper() in ("MSE", "DCGAN") else "none",
        }
        depths = [int(get("depthScale0", 0)), *[int(d) for d in (get("depthOtherScales", []) or [])]]
    except (TypeError, ValueError) as e:
        raise InvcompError(f"{path}: unreadable config field ({e})") from None
    arch = infer_pgan_arch(state, **kw)
    if "depthScale0" in fields and depths != list(arch.depths):
        raise InvcompError(f"{path}: config depths {depths} disagree with the weights {list(arch.depths)}")
    load_pgan(state, **kw)  # checks that the weights build
    config = GeneratorConfig(
        architecture="pgan", latent_dim=arch.latent_dim, resolution=arch.resolution, prior="normal",
        widths=list(arch.depths), norm_free=arch.normalization,
        options={"alpha": kw["alpha"], "leaky": kw["leaky"], "normalization": kw["normalization"],
                 "output_activation": kw["output_activation"]},
        training={"source": f"pytorch_GAN_zoo checkpoint {Path(path).name} ({source})",
                  "zoo_config": {k: v for k, v in fields.items() if isinstance(v, (int, float, str, bool, type(None)))
                                 or (isinstance(v, list) and all(isinstance(x, (int, float)) for x in v))}},
    )
    return state, config
