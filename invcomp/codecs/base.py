"""The codec contract: one :class:`Codec` base that every mode implements.

A mode says only what differs: how it finds the symbols of a batch of images (:meth:`Codec.find_symbols`:
a search, or one forward pass), how it draws images from symbols (:meth:`Codec.synthesise`), and how its
model is loaded (:meth:`Codec.load`, :meth:`Codec.for_header`). Fitting images to the model resolution and
the whole entropy stage (:mod:`invcomp.codecs.entropy`) are shared. No file I/O here: the CLI reads and
writes files around :meth:`Codec.encode` and :meth:`Codec.decode`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Optional, Union

import torch
from PIL import Image

from invcomp.coding.quantize import dequantize
from invcomp.codecs import entropy, rate
from invcomp.codecs.encoded import Encoded, Progress, decoded_picture, prepare, stored_pixels  # noqa: F401  (re-exported)
from invcomp.codecs.settings import EncodeSettings
from invcomp.formats import ivc as bitstream

class Codec(ABC):
    """Images <-> ``.ivc`` bytes for one mode and one model.

    Class attributes a mode sets: ``mode`` (the header's mode number, 0..7), ``mode_key`` (its name in
    ``--mode`` and in ``mode:model`` specs), ``title`` (its human name) and ``searches``. Instance attributes:
    ``name`` (the model's), ``model_id`` (4 bytes, version-1 files), ``resolution`` R, ``latent_dim`` D
    (symbols per image), ``prior`` (``normal``/``uniform``, the generator's latent prior), ``norm_free`` (no
    norm stored), ``settings`` (every field resolved), and, for a model that ships them, ``tables``
    (:class:`invcomp.coding.tables.Prior`, the entropy coder's probability tables of its symbols, not to be confused
    with ``prior``, the latent distribution) with ``model_id_v2`` (2 bytes, version-2 files).
    """

    mode: ClassVar[int]
    mode_key: ClassVar[str]
    title: ClassVar[str]
    searches: ClassVar[bool] = False  # True for modes that take the search settings (iters, init, loss, ...)
    side_bytes: ClassVar[int] = 0  # a fixed-length side record per file (e.g. a tone correction), see side_info

    def __init__(self, *, name: str, model_id: bytes, resolution: int, latent_dim: int, settings: EncodeSettings,
                 prior: str = "normal", norm_free: bool = False, tables: Any = None,
                 model_id_v2: Optional[bytes] = None) -> None:
        self.name, self.model_id, self.resolution, self.latent_dim = name, model_id, resolution, latent_dim
        self.settings, self.prior, self.norm_free = settings, prior, norm_free
        self.tables, self.model_id_v2 = tables, model_id_v2
        if tables is not None and tables.symbols != latent_dim:
            raise ValueError(f"the tables code {tables.symbols} symbols, the model {latent_dim}")

    # --- what a mode implements -------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def load(cls, spec: str, settings: Optional[EncodeSettings] = None, *, device: str = "cpu",
             for_decode: bool = False, **options: Any) -> "Codec":
        """The codec for model ``spec`` with ``settings`` resolved (``for_decode``: skip what only encoding
        needs). ``options`` are mode-specific; unknown ones must be refused."""

    @classmethod
    def sharing(cls, codec: "Codec") -> "Codec":
        """A codec of this mode over the loaded model and resolved settings of ``codec`` (nothing loaded again):
        how auto builds its candidates. Modes that cannot share refuse."""
        from invcomp.errors import InvcompError

        raise InvcompError(f"the {cls.title} mode cannot share the model of a {codec.title} codec")

    @classmethod
    def models(cls) -> list[str]:
        """The model names this mode offers besides the registry's (a mode registered from outside the package lists
        its own here, so that ``invcomp models`` and the web app's catalog offer them); the built-in modes: none."""
        return []

    @classmethod
    def claims(cls, spec: str) -> bool:
        """Whether ``spec`` names a model of this mode (used when no mode is given)."""
        return False

    @classmethod
    def for_header(cls, header: bitstream.Header, *, device: str = "cpu") -> "Codec":
        """The codec that can decode a file with this header: its model is the installed (shipped or
        user-registered) one whose weights' sha256 starts with the header's model id."""
        from invcomp.errors import UnknownModelError
        from invcomp.zoo.registry import name_for_id

        name = name_for_id(header.model_id)
        if name is None:
            raise UnknownModelError(f"bitstream needs model id {header.model_id.hex()}, which is not installed; see "
                                    f"`invcomp models`, or pass --model (a {cls.title} model)")
        return cls.load(name, device=device, for_decode=True)

    @abstractmethod
    def find_symbols(self, target: torch.Tensor, progress: Optional[Progress]) -> tuple[torch.Tensor, list[dict]]:
        """Float symbols ``(N, D)`` for targets ``(N, 3, R, R)`` in [-1, 1], and a dict of extras per image."""

    @abstractmethod
    def synthesise(self, z: torch.Tensor) -> torch.Tensor:
        """Dequantised symbols ``(N, D)`` -> images ``(N, 3, R, R)`` in [-1, 1] on the CPU."""

    def side_info(self, recon: torch.Tensor, target: torch.Tensor) -> bytes:
        """The side record (:attr:`side_bytes` bytes) of one image, from its reconstruction before :meth:`finish`
        and its target, both ``(3, R, R)`` in [-1, 1]. Modes without one write nothing."""
        return b""

    def finish(self, recon: torch.Tensor, side: bytes) -> torch.Tensor:
        """Apply a side record to a reconstruction ``(N, 3, R, R)`` (what the decoder does after synthesis)."""
        return recon

    def work(self, n_images: int) -> int:
        """Work units (for progress bars) to encode ``n_images``; a search counts one per image per step."""
        return n_images

    def describe(self) -> dict[str, Any]:
        """What a JSON row records about this codec and its settings."""
        return {"mode": self.mode_key, "model": self.name, "bits": self.settings.bits, "resolution": self.resolution,
                "iters": 0, "init": "none"}

    def start(self, target: torch.Tensor) -> Union[str, torch.Tensor, None]:
        """Where a search of targets ``(N, 3, R, R)`` starts: its symbols ``(N, D)``, the name of a start without
        symbols, or ``None`` (modes that do not search). Rate control picks the bit depth from it."""
        return None

    def check_goal(self, goal: "rate.RateTarget") -> None:
        """Refuse, before any work, a rate goal this codec cannot meet (an :class:`InvcompError`); most can."""

    # --- the contract, shared -------------------------------------------------------------------------------
    def encode(self, images: list[Image.Image], *, goal: Optional["rate.RateTarget"] = None,
               progress: Optional[Progress] = None, init: Optional[torch.Tensor] = None) -> list[Any]:
        """Encode RGB images: fit each to ``R x R``, find its symbols, quantise and code them. ``goal``: a byte
        budget or an SSIM to meet per image (rate control, :mod:`invcomp.codecs.rate`: then an image that cannot
        meet it gets its :class:`InvcompError` in its place). ``init``: the symbols ``(N, D)`` a search starts from
        instead of its own start (modes that search only).

        An image's bytes do not depend on the other images in the call, nor on its position.
        """
        if not images:
            return []
        if goal is not None:
            return rate.search_to_goal(self, images, goal, progress=progress)
        target = torch.stack([prepare(im, self.resolution, self.settings.fit) for im in images])
        z, extras = self.find_symbols(target, progress) if init is None else self.find_symbols(target, progress, init=init)  # type: ignore[call-arg]
        return self.encode_symbols(z, images, target=target, extras=extras)

    def encode_symbols(self, z: torch.Tensor, images: list[Image.Image], *, target: Optional[torch.Tensor] = None,
                       extras: Optional[list[dict]] = None) -> list[Encoded]:
        """Quantise and code given float symbols ``z`` ``(N, D)`` of ``images`` (no search): the second half of
        :meth:`encode`, also used to code a float latent found elsewhere (the seeds' post-hoc QSGD)."""
        if z.shape != (len(images), self.latent_dim):
            raise ValueError(f"symbols must be ({len(images)}, {self.latent_dim}), got {tuple(z.shape)}")
        if target is None:
            target = torch.stack([prepare(im, self.resolution, self.settings.fit) for im in images])
        q = entropy.quantise_rows(z, self.settings, norm_free=self.norm_free,
                                  prior=self.tables if entropy.container(self) == 2 else None)
        zq = dequantize(q)
        raw = torch.cat([self.synthesise(zq[i:i + 1]) for i in range(len(images))])  # per row, as decode does
        sides = [self.side_info(raw[i], target[i]) for i in range(len(images))]
        recon = torch.cat([self.finish(raw[i:i + 1], side) for i, side in enumerate(sides)])
        packed = entropy.pack_rows(self, q, [im.size for im in images], sides)
        z = z.detach().float().cpu()
        return [Encoded(data, header, target[i], recon[i], z[i], q.levels[i], dict(extras[i]) if extras else {})
                for i, (data, header) in enumerate(packed)]

    def decode_picture(self, data: bytes, *, native: bool = False,
                       max_pixels: Optional[int] = None) -> tuple[bitstream.Header, Image.Image]:
        """``.ivc`` bytes -> header and the picture ``invcomp decode`` writes: the reconstruction restored to the
        original size, or at the model resolution with ``native``. (``max_pixels``: for codecs whose work grows with
        the declared size; the caller has checked the header against it.)"""
        from invcomp.imageio import restore_size, to_pil

        header, recon = self.decode(data)
        img = to_pil(recon)
        return header, img if native else restore_size(img, header.width, header.height, header.fit)

    def decode(self, data: bytes) -> tuple[bitstream.Header, torch.Tensor]:
        """``.ivc`` bytes -> header and the model-resolution reconstruction ``(3, R, R)`` in [-1, 1].

        A file of another mode or model is refused with :class:`~invcomp.errors.BitstreamError` or
        :class:`~invcomp.errors.UnknownModelError`.
        """
        header, z, side = entropy.read_with_side(data, self)
        return header, self.finish(self.synthesise(z), side)[0]
