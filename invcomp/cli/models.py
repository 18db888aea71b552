"""``invcomp models`` (list or register models) and ``invcomp convert`` (third-party checkpoints)."""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Optional

import click

from invcomp.errors import InvcompError
from invcomp.cli.outputs import guard as _guard
from invcomp.files import atomic_write, dumps
from invcomp.service.models import model_rows


@click.command()
@click.option("--register", "register_name", default=None, help="Add --model (and --weights) to your registry as NAME.")
@click.option("--model", "model_spec", default=None, help="With --register: a .pt, TorchScript file, or file.py:factory / "
              "package.module:factory (WARNING: a factory file's code runs, now and at every load).")
@click.option("--weights", "weights_path", default=None, help="With --register: a state_dict for a user model.")
@click.option("--force", is_flag=True, help="With --register: replace an existing user entry.")
@click.option("--json", "as_json", is_flag=True)
@_guard
def models(register_name: Optional[str], model_spec: Optional[str], weights_path: Optional[str], force: bool,
           as_json: bool) -> None:
    """List the shipped and user-registered models (generators and VAE-GAN codecs), or register a generator.

    \b
    User registry: $INVCOMP_HOME/models.json (default ~/.config/invcomp/models.json).
      invcomp models --register mygan --model gen.py:make --weights mygan.pt
    """
    from invcomp.zoo import registry
    from invcomp.zoo.user_models import register, user_home

    if register_name is not None:
        if not model_spec:
            raise InvcompError("--register needs --model")
        from invcomp.nets.generators.custom import code_sha256

        code = code_sha256(model_spec)  # a .py file: hashed first, and exactly those bytes run below
        gen = registry.load_generator(model_spec, "cpu", weights_path, code_sha256=code)
        register(register_name, model_spec, weights_path, gen.sha256, shipped={e.name for e in registry.list_models()},
                 force=force, config_sha256=gen.config_sha256, code_sha256=code)
        click.echo(f"registered {register_name!r} (id {gen.sha256[:8]}, {gen.config.latent_dim}-d -> "
                   f"{gen.config.resolution}x{gen.config.resolution}) in {user_home()}")
        return
    if model_spec or weights_path:
        raise InvcompError("--model and --weights go with --register")
    rows = model_rows()
    if as_json:
        for r in rows:
            click.echo(dumps(r))
        return
    if not rows:
        click.echo(f"no models registered in {registry.pretrained_dir()}")
    for r in rows:
        if r.get("kind") == "residual":
            role = "the default's detail layer" if r.get("role") == "detail" else "layered mode's residual layer"
            click.echo(f"{r['name']}  key {r['key']}  {role} over {r['base']}, {r['rates']} rates, "
                       f"any size  {r['description']}")
        elif r["source"] == "mode":
            click.echo(f"{r['name']}  {r['description']} (mode {r['kind']})")
        elif r["source"] == "user":
            click.echo(f"{r['name']}  id {r['id']}  user model {r['model']}" + (f" + {r['weights']}" if r["weights"] else ""))
        elif r["kind"] in ("gc", "sc"):
            over = f" over {r['base']}" if r.get("base") else ""
            click.echo(f"{r['name']}  {_ids(r)}  {r['kind'].upper()} codec{over}, C={r['channels']}, L={r['centres']}, "
                       f"any size  {r['description']}")
        elif r["kind"] == "vaegan":
            click.echo(f"{r['name']}  {_ids(r)}  VAE-GAN codec, C={r['channels']} at "
                       f"{r['code_side']}x{r['code_side']}, {r['bits']} bits -> {r['resolution']}x{r['resolution']}  "
                       f"{r['description']}")
        else:
            click.echo(f"{r['name']}  {_ids(r)}  {r['architecture']} {r['latent_dim']}-d {r['prior']} -> "
                       f"{r['resolution']}x{r['resolution']}{'  + warm-start network' if r['encoder'] else ''}  "
                       f"{r['description']}")


def _ids(r: dict) -> str:
    """The ids that files name this model by: 4 bytes in version 1, 2 in version 2 (with a prior)."""
    return f"id {r['id']}" + (f" (v2 {r['id_v2']})" if r.get("id_v2") else "")


@click.group()
def convert() -> None:
    """Convert third-party checkpoints into invcomp state_dict + JSON config."""


@convert.command("pgan-zoo")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("-o", "--output", "output", required=True, help="Output name: writes NAME.pt and NAME.json.")
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@_guard
def convert_pgan_zoo(checkpoint: Path, output: str, force: bool) -> None:
    """Convert a pytorch_GAN_zoo PGAN checkpoint (.pth), safely.

    The file is read with a restricted unpickler that allows only tensors and plain containers
    (their config object becomes plain data); nothing in the file is executed. The averaged
    generator (avgG) is used when present. Then: invcomp encode IMG --model NAME.pt
    """
    import torch

    from invcomp.nets.generators.convert import convert_pgan_zoo as convert_fn

    state, config = convert_fn(checkpoint)
    stem = Path(output).with_suffix("") if output.endswith((".pt", ".json")) else Path(output)
    pt, js = stem.with_name(stem.name + ".pt"), stem.with_name(stem.name + ".json")
    for p in (pt, js):
        if p.exists() and not force:
            raise InvcompError(f"{p} exists (use --force to overwrite)")
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write(pt, buf.getvalue(), force=force)
    atomic_write(js, (json.dumps(config.to_json_dict(), indent=2) + "\n").encode(), force=force)
    click.echo(f"wrote {pt} and {js}: PGAN {config.latent_dim}-d -> {config.resolution}x{config.resolution}, "
               f"depths {config.widths}, norm-free {config.norm_free}")
