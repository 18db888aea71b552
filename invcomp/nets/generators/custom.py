"""Bring your own generator: load a user's ``nn.Module`` from a factory or a TorchScript file.

Three spec forms are accepted (see :func:`is_custom_spec`):

* ``path/to/file.py:factory``: the file is imported under a unique module name
  and ``factory()`` is called with no arguments;
* ``package.module:factory``: the module is imported from ``sys.path``;
* ``model.pt`` / ``.pth`` / ``.ts``: a TorchScript archive (``torch.jit.save``).

**Security: this executes user code, by design.** The ``.py`` and
``package.module`` forms run arbitrary Python with the caller's rights, and a
TorchScript archive runs its own TorchScript code. Only load generators you
trust. Optional ``weights`` are read with ``torch.load(weights_only=True)``,
which runs no code.

The module must map latents ``(N, latent_dim)`` (or ``(N, latent_dim, 1, 1)``;
a probe forward at load time finds which) to images ``(N, 3, R, R)`` in
[-1, 1], and carry int attributes ``latent_dim`` and ``resolution``, and
optionally ``prior`` (``"normal"`` default, or ``"uniform"``) and bool
``norm_free`` (default ``False``). Outputs are not clamped here.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import logging
import re
import sys
import uuid
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from invcomp.errors import InvcompError
from invcomp.nets.generators.config import PRIORS
from invcomp.files import load_state_dict, sha256_file

log = logging.getLogger(__name__)

TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts")


def _first_line(e: BaseException, limit: int = 200) -> str:
    """``"Type: first line of the message"``, cut to ``limit`` characters."""
    msg = " ".join(s.strip() for s in str(e).splitlines() if s.strip())
    return f"{type(e).__name__}: {msg}"[:limit] if msg else type(e).__name__


def _split(spec: str) -> tuple[str, str] | None:
    """``(target, factory)`` for a syntactically valid ``file.py:factory`` / ``pkg.mod:factory``, else ``None``."""
    target, sep, factory = spec.rpartition(":")
    if not sep or not target or not factory.isidentifier():
        return None
    if target.endswith(".py") or all(part.isidentifier() for part in target.split(".")):
        return target, factory
    return None


def is_torchscript(path: str | Path) -> bool:
    """True when ``path`` has a TorchScript suffix and is a TorchScript zip (not a ``torch.save`` state_dict)."""
    p = Path(path)
    if p.suffix.lower() not in TORCHSCRIPT_SUFFIXES or not p.is_file():
        return False
    try:
        with zipfile.ZipFile(p) as z:
            names = z.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    # Entries are "<archive>/...": TorchScript adds "<archive>/constants.pkl" and "<archive>/code/...".
    # Parts are compared, not substrings, so a torch.save to "code.pt" ("code/data.pkl") is not a match.
    split = [n.split("/") for n in names]
    return any(p[1:] == ["constants.pkl"] or (len(p) > 2 and p[1] == "code") for p in split)


def is_custom_spec(spec: str) -> bool:
    """True for ``file.py:factory``, ``package.module:factory`` or a TorchScript ``.pt/.pth/.ts`` file.

    The factory forms are recognised by syntax only (a missing file is reported by :func:`load_custom`).
    """
    return _split(spec) is not None or is_torchscript(spec)


class LatentAdapter(nn.Module):
    """Wraps a user generator so it takes ``(N, latent_dim)`` latents and returns ``(N, 3, R, R)`` images.

    ``spatial`` says whether the wrapped module wants ``(N, latent_dim, 1, 1)`` instead.
    """

    def __init__(self, inner: nn.Module, *, latent_dim: int, resolution: int, prior: str = "normal",
                 norm_free: bool = False, spatial: bool = False) -> None:
        super().__init__()
        self.inner = inner
        self.latent_dim = latent_dim
        self.resolution = resolution
        self.prior = prior
        self.norm_free = norm_free
        self.spatial = spatial

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` ``(N, latent_dim)`` (``(N, latent_dim, 1, 1)`` is also accepted) -> ``(N, 3, R, R)``."""
        if z.dim() == 4 and z.shape[2:] == (1, 1):
            z = z.flatten(1)
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"expected latents (N, {self.latent_dim}), got {tuple(z.shape)}")
        return self.inner(z[:, :, None, None] if self.spatial else z)


def _probe(module: nn.Module, latent_dim: int, resolution: int, device: str) -> bool:
    """Which latent layout ``module`` takes: ``False`` for ``(N, D)``, ``True`` for ``(N, D, 1, 1)``."""
    want = (2, 3, resolution, resolution)
    seen: list[str] = []
    for spatial in (False, True):
        shape = (2, latent_dim, 1, 1) if spatial else (2, latent_dim)
        try:
            with torch.no_grad():
                out = module(torch.zeros(shape, device=device))
        except Exception as e:  # noqa: BLE001  (user code may raise anything)
            seen.append(f"{shape} -> {_first_line(e, 120)}")
            continue
        if isinstance(out, torch.Tensor) and tuple(out.shape) == want:
            return spatial
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        seen.append(f"{shape} -> {got}")
    raise InvcompError(f"generator must map latents to images {want}; got {'; '.join(seen)}")


def _validate(module: Any, where: str) -> dict[str, Any]:
    """The checked ``latent_dim``, ``resolution``, ``prior`` and ``norm_free`` of a user module."""
    if not isinstance(module, nn.Module):
        raise InvcompError(f"{where} must give a torch.nn.Module, got {type(module).__name__}")
    out: dict[str, Any] = {}
    for attr in ("latent_dim", "resolution"):
        if not hasattr(module, attr):
            raise InvcompError(f"{where}: the module has no integer attribute {attr!r}")
        v = getattr(module, attr)
        if isinstance(v, bool) or not isinstance(v, int):
            raise InvcompError(f"{where}: {attr} must be an int, got {type(v).__name__}")
        if v < 1:
            raise InvcompError(f"{where}: {attr} must be positive, got {v}")
        out[attr] = v
    prior = getattr(module, "prior", "normal")
    if not isinstance(prior, str) or prior not in PRIORS:
        raise InvcompError(f"{where}: unknown prior {prior!r}; use normal or uniform")
    norm_free = getattr(module, "norm_free", False)
    if not isinstance(norm_free, bool):
        raise InvcompError(f"{where}: norm_free must be a bool, got {type(norm_free).__name__}")
    out.update(prior=prior, norm_free=norm_free)
    return out


def state_dict_sha256(module: nn.Module) -> str:
    """Hex sha256 over the state_dict in key order: each name, dtype, shape and raw tensor bytes."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        try:
            h.update(t.numpy().tobytes())
        except TypeError:  # dtypes numpy lacks (bfloat16, ...): hash the raw bytes
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@contextlib.contextmanager
def _on_path(folder: Path) -> Iterator[None]:
    """Put ``folder`` first on ``sys.path`` for the duration, so a generator file can import its siblings."""
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def _read_code(path: Path) -> bytes:
    if not path.is_file():
        raise InvcompError(f"generator file not found: {path}")
    try:
        return path.read_bytes()
    except OSError as e:
        raise InvcompError(f"cannot read generator file {path}: {e.strerror or e}") from None


def code_sha256(spec: str) -> Optional[str]:
    """The sha256 of the ``.py`` file of a ``file.py:factory`` spec (what ``invcomp models --register`` records);
    ``None`` for the other forms (a TorchScript file is checked as its weights are)."""
    parts = _split(spec)
    if parts is None or not parts[0].endswith(".py"):
        return None
    return hashlib.sha256(_read_code(Path(parts[0]))).hexdigest()


def _import_factory(target: str, factory: str, code_sha256: Optional[str] = None) -> tuple[Any, str]:
    """Import ``target`` (a ``.py`` path or dotted module) and return ``(getattr(module, factory), label)``.

    ``code_sha256`` (a ``.py`` file): the file's bytes are read once, checked against it, and those very bytes run;
    a file that changed is refused before any of it runs."""
    log.info("executing generator code from %s (trusted code only)", target)
    if target.endswith(".py"):
        path, label = Path(target), Path(target).name
        code = _read_code(path)
        if code_sha256 is not None and hashlib.sha256(code).hexdigest() != code_sha256:
            now = hashlib.sha256(code).hexdigest()
            raise InvcompError(f"generator file {path} changed since it was registered: it no longer matches its "
                               f"registered sha256 ({code_sha256[:8]} registered, {now[:8]} now) and was not run; "
                               "re-register it with --force")
        name = f"invcomp_custom_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{uuid.uuid4().hex[:8]}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise InvcompError(f"cannot import generator file {path}")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod  # dataclasses and pickling look the module up here
        try:
            with _on_path(path.resolve().parent):
                exec(compile(code, str(path), "exec"), mod.__dict__)  # noqa: S102  (the bytes checked above)
        except (Exception, SystemExit) as e:  # noqa: BLE001  (user code may raise anything)
            del sys.modules[name]
            raise InvcompError(f"cannot import generator file {path}: {_first_line(e)}") from None
    else:
        label = target
        try:
            mod = importlib.import_module(target)
        except (Exception, SystemExit) as e:  # noqa: BLE001  (user code may raise anything)
            raise InvcompError(f"cannot import generator module {target}: {_first_line(e)}") from None
    fn = getattr(mod, factory, None)
    if fn is None:
        raise InvcompError(f"factory {factory!r} not found in {label}")
    if not callable(fn):
        raise InvcompError(f"{factory!r} in {label} is not callable")
    return fn, label


def _from_factory(target: str, factory: str, weights: str | None,
                  code_sha256: Optional[str] = None) -> tuple[nn.Module, dict[str, Any], str]:
    """``(module, attrs, sha256)`` from ``factory()`` in ``target``, with ``weights`` loaded strictly if given."""
    fn, label = _import_factory(target, factory, code_sha256)
    where = f"{factory}() in {label}"
    folder = Path(target).resolve().parent if target.endswith(".py") else None
    try:
        with _on_path(folder) if folder else contextlib.nullcontext():
            module = fn()
    except (Exception, SystemExit) as e:  # noqa: BLE001  (user code may raise anything)
        raise InvcompError(f"{where} failed: {_first_line(e)}") from None
    attrs = _validate(module, where)
    if weights is None:
        return module, attrs, state_dict_sha256(module)
    state = load_state_dict(Path(weights))
    try:
        module.load_state_dict(state, strict=True)
    except Exception as e:  # noqa: BLE001  (a user module's load_state_dict may raise anything)
        raise InvcompError(f"weights {weights} do not fit {where}: {_first_line(e, 300)}") from None
    return module, attrs, sha256_file(Path(weights))


def _from_torchscript(path: str, device: str) -> tuple[nn.Module, dict[str, Any], str]:
    """``(module, attrs, sha256)`` of a TorchScript archive; the sha256 is the file's."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit is deprecated": still supported
            module = torch.jit.load(path, map_location=device)
    except Exception as e:  # noqa: BLE001  (RuntimeError, zip and pickle errors from a bad archive)
        raise InvcompError(f"cannot load TorchScript {path}: {_first_line(e)}") from None
    return module, _validate(module, f"TorchScript {Path(path).name}"), sha256_file(Path(path))


def load_custom(spec: str, weights: str | None = None, device: str = "cpu", *,
                code_sha256: Optional[str] = None) -> tuple[nn.Module, dict[str, Any], str]:
    """Load a user generator; returns ``(module, info, sha256)``.

    ``module`` is a :class:`LatentAdapter` on ``device``, in eval mode with every parameter frozen,
    mapping ``(N, latent_dim)`` -> ``(N, 3, R, R)``. ``info`` has ``latent_dim``, ``resolution``,
    ``prior``, ``norm_free``, ``kind`` (``"factory"`` or ``"torchscript"``) and ``name``.
    ``sha256`` is of the weights as loaded: the ``weights`` file, the TorchScript file, or (a bare
    factory) :func:`state_dict_sha256`. ``code_sha256`` (a ``file.py:factory`` spec, as registered): the file must
    still have it, checked before it is imported (:func:`code_sha256`). Every user-caused failure raises a one-line
    :class:`InvcompError`.
    """
    parts = _split(spec)
    if parts is not None:
        module, attrs, digest = _from_factory(*parts, weights, code_sha256)
        kind, name = "factory", parts[1]
    elif is_torchscript(spec):
        if weights is not None:
            raise InvcompError(f"weights are not used with a TorchScript file ({spec} carries its own)")
        module, attrs, digest = _from_torchscript(spec, device)
        kind, name = "torchscript", Path(spec).stem
    else:
        raise InvcompError(f"not a custom generator spec: {spec!r} "
                           "(want file.py:factory, package.module:factory or a TorchScript .pt)")
    module = module.to(device).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    spatial = _probe(module, attrs["latent_dim"], attrs["resolution"], device)
    adapter = LatentAdapter(module, spatial=spatial, **attrs).to(device).eval()
    log.info("loaded %s generator %s: %d-d %s prior, %dpx, sha256 %s", kind, name, attrs["latent_dim"],
             attrs["prior"], attrs["resolution"], digest[:8])
    return adapter, {**attrs, "kind": kind, "name": name}, digest
