"""The codec loader (model spec + settings -> codec), the built-in modes, and the codec for a given file."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Optional

from invcomp.codecs.registry import MODES
from invcomp.codecs.settings import DEFAULT_MODEL, EncodeSettings
from invcomp.errors import InvcompError

if TYPE_CHECKING:
    from invcomp.codecs.base import Codec
    from invcomp.formats import ivc as bitstream

BUILT_IN = ("invcomp.codecs.modes.inversion", "invcomp.codecs.modes.vaegan", "invcomp.codecs.modes.layered",
            "invcomp.codecs.modes.gc", "invcomp.codecs.modes.sc")  # inversion: modes 0, 2
AUTO = "auto"  # --mode auto: not a file mode (it writes the chosen mode's file), see invcomp.codecs.modes.auto


def modes() -> dict[int, type[Codec]]:
    """:data:`MODES`, with the built-in modes imported."""
    for name in BUILT_IN:
        importlib.import_module(name)
    return MODES


def mode_by_key(key: str) -> type[Codec]:
    """The codec class of ``--mode KEY`` (``inversion``, ``vaegan``, or a registered one)."""
    for cls in modes().values():
        if cls.mode_key == key:
            return cls
    known = ", ".join([c.mode_key for c in sorted(modes().values(), key=lambda c: c.mode)] + [AUTO])
    raise InvcompError(f"unknown mode {key!r}; known: {known}")


def split_spec(spec: Optional[str]) -> tuple[Optional[str], Optional[str]]:
    """``"vaegan:vaegan-utkface64-c4"`` -> ``("vaegan", "vaegan-utkface64-c4")``; a spec with no mode prefix
    (``"dcgan-utkface64"``, ``"gen.py:make"``) -> ``(None, spec)``."""
    if spec is None:
        return None, None
    head, sep, rest = spec.partition(":")
    if sep and any(c.mode_key == head for c in modes().values()):
        return head, rest or None
    return None, spec


def mode_for_spec(spec: Optional[str], mode: Optional[str] = None) -> tuple[type[Codec], Optional[str]]:
    """The codec class for a spec (and an explicit ``mode``), and the spec without its mode prefix."""
    prefix, spec = split_spec(spec)
    if prefix and mode and prefix != mode:
        raise InvcompError(f"the model spec says mode {prefix!r} but mode {mode!r} was asked for")
    key = prefix or mode
    if key is not None:
        cls = mode_by_key(key)
    else:
        spec = spec or DEFAULT_MODEL
        ordered = sorted(modes().values(), key=lambda c: c.mode)
        cls = next((c for c in ordered[1:] if c.claims(spec)), ordered[0])
    if spec is None and cls.searches:  # the inversion modes (0 and 2) default to the shipped generator
        spec = DEFAULT_MODEL
    return cls, spec


def load_codec(spec: Optional[str] = None, settings: Optional[EncodeSettings] = None, *, mode: Optional[str] = None,
               device: str = "cpu", for_decode: bool = False, **options: Any) -> Any:
    """The codec for a model spec and settings: the one loader, so the CLI, the API and the bench agree.

    ``spec`` is a model name or path, optionally prefixed with a mode (``vaegan:NAME``); ``mode`` names the
    mode explicitly (``auto``: every mode, the best file per image, :mod:`invcomp.codecs.modes.auto`). With neither a
    spec nor a mode, ``auto``. With a spec only, the first mode (other than GAN inversion, the default) that
    claims it gets it. ``settings`` fields left ``None`` take the mode's defaults
    (:mod:`invcomp.codecs.settings`). ``options`` go to the mode's loader (``weights``, ``warm_start`` for
    inversion; ``channels`` for VAE-GAN); one that the mode does not take is refused.

    Example::

        codec = load_codec("dcgan-utkface64")   # what `invcomp encode` does
        enc = codec.encode([img])[0]             # enc.data: the .ivc bytes
        header, x = codec.decode(enc.data)       # x: (3, 64, 64) in [-1, 1]
    """
    prefix, rest = (spec.split(":", 1) if spec and spec.startswith(AUTO + ":") else
                    (AUTO, None) if spec == AUTO else (None, spec))
    if mode == AUTO or prefix == AUTO or (mode is None and spec is None):
        return _load_auto(rest or None, settings, device, {k: v for k, v in options.items() if v is not None})
    cls, spec = mode_for_spec(spec, mode)
    if not for_decode and spec is not None:  # an alias (an earlier release of a model) only decodes its files
        from invcomp.zoo.registry import list_models

        alias_of = next((e.alias_of for e in list_models() if e.name == spec and e.alias_of), None)
        if alias_of:
            raise InvcompError(f"model {spec!r} is kept only to decode the files of an earlier release; encode with "
                               f"{alias_of!r}")
    options = {k: v for k, v in options.items() if v is not None}
    return cls.load(spec, settings, device=device, for_decode=for_decode, **options)  # type: ignore[arg-type]


def _load_auto(spec: Optional[str], settings: Optional[EncodeSettings], device: str, options: dict) -> Any:
    """``--mode auto``: GAN inversion on generator ``spec`` (default ``dcgan-utkface64``) with and without its tone
    record, and the shipped VAE-GAN codecs; ``settings`` go to the inversion candidates (the VAE-GANs keep their
    own bits); options ``slope`` (the price of a byte: the rate-distortion decision), ``search_gain`` (which
    searches are skipped), ``tolerance`` (the earlier rule instead) and ``max_bytes`` set the decision."""
    from invcomp.codecs.modes import auto

    tol, max_bytes = options.pop("tolerance", None), options.pop("max_bytes", auto.DEFAULT_MAX_BYTES)
    slope, gain = options.pop("slope", None), options.pop("search_gain", auto.SEARCH_GAIN)
    if options:
        raise InvcompError(f"{', '.join(sorted(options))} do not apply to --mode auto")
    settings, spec = settings or EncodeSettings(), spec or auto.AUTO_MODEL
    cands = [load_codec(spec, settings, mode="inversion", device=device)]
    cands.append(mode_by_key("inversion-tone").sharing(cands[0]))  # the same generator and settings, loaded once
    one_pass = EncodeSettings(coder=settings.coder, fit=settings.fit)
    cands += [load_codec(name, one_pass, mode="vaegan", device=device) for name in auto.AUTO_VAEGANS]
    goal_only = []
    try:  # the layered mode over the same generator and settings; it runs with a target only (with no budget,
        cands.append(mode_by_key("layered").sharing(cands[0]))  # layers only add bytes)
        goal_only.append(len(cands) - 1)
    except InvcompError as e:  # e.g. CompressAI is not installed
        auto.log.info("--mode auto runs without the layered candidate: %s", e)
    return auto.AutoCodec(cands, decoder_for=lambda h: codec_for_header(h, device=device), tolerance=tol,
                          slope=slope, search_gain=gain, max_bytes=max_bytes, refine={1: auto.TONE_REFINE},  # tone refines the plain search's latent
                          goal_only=goal_only)


def codec_for_header(header: "bitstream.Header", *, model: Optional[str] = None, device: str = "cpu",
                     **options: Any) -> Any:
    """The codec that decodes a file with this header: its mode's, with the model its id names, or ``model``
    (checked against that id when the file is decoded)."""
    cls = modes().get(header.mode)
    if cls is None:
        known = ", ".join(f"{m} ({c.mode_key})" for m, c in sorted(modes().items()))
        raise InvcompError(f"this file is of mode {header.mode}, which this invcomp does not know (it knows {known})")
    if model is None:
        return cls.for_header(header, device=device)
    return load_codec(model, device=device, for_decode=True, **options)  # its mode is checked on decode


def decode_file(data: bytes, *, cache: dict, model: Optional[str] = None, weights: Optional[str] = None,
                native: bool = False, max_pixels: Optional[int] = None, device: str = "cpu",
                name: str = "this file") -> tuple[Any, Any, Any]:
    """Decode one ``.ivc`` file as ``invcomp decode`` does: ``(header, codec, PIL image)``.

    The declared size is checked against ``max_pixels`` from the header, before any work (unless ``native``);
    the codec comes from ``cache``, keyed by (mode, model id) or by ``model``, so one kind of model is never
    handed to another kind's check; the image is the model resolution (``native``) or the original size.
    """
    from invcomp.formats import ivc as bitstream

    header = bitstream.unpack(data)[0]
    if not native and max_pixels is not None and header.width * header.height > max_pixels:
        raise InvcompError(f"{name} declares a {header.width}x{header.height} = {header.width * header.height:,} pixel "
                           f"image, over the limit of {max_pixels:,} (raise it with --max-pixels, or use --native)")
    key = (model, weights) if model is not None else (header.mode, header.model_id)
    if key not in cache:
        cache[key] = codec_for_header(header, model=model, device=device, weights=weights)
    codec = cache[key]
    header, img = codec.decode_picture(data, native=native, max_pixels=max_pixels)
    return header, codec, img
