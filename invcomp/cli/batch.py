"""``invcomp batch encode|decode``: a whole dataset, resumably, on local processes or Ray (:mod:`invcomp.batch`)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Optional

import click

from invcomp.cli.outputs import guard
from invcomp.files import dumps
from invcomp.cli.decode import decode_options
from invcomp.cli.encode import codec_options
from invcomp.service import encode as service_encode
from invcomp.service.decode import check_decode_options

JOB_OPTIONS = [
    click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
                 help="Output folder: each input's path relative to SRC, mirrored, with .ivc (decode: .png)."),
    click.option("--manifest", default=None, type=click.Path(dir_okay=False, path_type=Path),
                 help="The job's manifest, .jsonl (an append-only journal) or .parquet (rewritten on each update).  "
                      "[default: OUT/manifest.jsonl]"),
    click.option("--ray", "ray_address", default="auto", show_default=True, metavar="auto|local|none|ADDRESS",
                 help="auto: the running Ray cluster, else a local Ray, else (Ray not installed) local processes; "
                      "local: start Ray on this machine; none: local processes; ADDRESS: that cluster."),
    click.option("--workers", default=1, show_default=True, type=click.IntRange(1),
                 help="Workers (processes or Ray actors), each loading the codec once."),
    click.option("--gpus-per-worker", default=0, show_default=True, type=click.FloatRange(0), help="GPUs per Ray actor."),
    click.option("--threads-per-worker", default=1, show_default=True, type=click.IntRange(1),
                 help="Torch threads (and Ray CPUs) per worker."),
    click.option("--batch-size", default=4, show_default=True, type=click.IntRange(1),
                 help="Items per worker call (an image's file does not depend on its batch)."),
    click.option("--max-attempts", default=3, show_default=True, type=click.IntRange(1),
                 help="Tries per item and run for failures that are not bad input (a worker that died, a bug)."),
    click.option("--force", is_flag=True, help="Overwrite outputs that exist but are not this job's."),
    click.option("--json", "as_json", is_flag=True, help="Print the final report as one JSON object on stdout."),
]


def job_options(fn: Callable) -> Callable:
    """Apply :data:`JOB_OPTIONS` to a click command (in their order, first on top)."""
    for option in reversed(JOB_OPTIONS):
        fn = option(fn)
    return fn


@click.group()
def batch() -> None:
    """Code a whole dataset: resumable, idempotent jobs on local processes or a Ray cluster.

    \b
    SRC is a folder (recursive), a quoted glob, or a .jsonl/.parquet manifest of inputs (a `path` per row,
    relative to the manifest; optional `id`, `output`). The manifest (OUT/manifest.jsonl) records each item's
    status, output, bytes, metrics, attempts and error; a rerun does only what is not done.

    \b
    Examples:
      invcomp batch encode faces/ --out coded/ --workers 8
      invcomp batch encode 'faces/**/*.jpg' --out coded/ --ray auto --workers 64 --model dcgan-utkface64
      invcomp batch decode coded/ --out decoded/
    """


JOB_NAMES = ("out", "manifest", "ray_address", "workers", "gpus_per_worker", "threads_per_worker", "batch_size",
             "max_attempts", "force", "as_json")


def _run(kind: str, src: str, params: dict[str, Any], before_work: Optional[Callable[[], Any]] = None) -> None:
    """Run the job: ``params`` are the command's, the job options of :data:`JOB_OPTIONS` and the codec's;
    ``before_work`` runs only when something is left to do."""
    from invcomp.batch import JobOptions, run

    j = {k: params.pop(k) for k in JOB_NAMES}
    job = JobOptions(ray=j["ray_address"], workers=j["workers"], gpus_per_worker=j["gpus_per_worker"],
                     batch_size=j["batch_size"], max_attempts=j["max_attempts"],
                     threads_per_worker=j["threads_per_worker"], force=j["force"])
    report, store = run(kind, src, j["out"], options=params, job=job, manifest=j["manifest"], before_work=before_work)
    if j["as_json"]:
        click.echo(dumps({**report.as_dict(), "manifest": str(store.path)}))
    for item, reason in report.failures:
        click.echo(f"invcomp: error: {item}: {reason}", err=True)
    click.echo(report.summary() + f"; manifest {store.path}", err=True)
    sys.exit(1 if report.failed else 0)


@batch.command("encode")
@click.argument("src")
@job_options
@codec_options
@guard
def encode(src: str, **params: Any) -> None:
    """Encode every image of SRC to OUT/<its relative path>.ivc: the file `invcomp encode IMAGE` writes."""
    codec = {k: v for k, v in params.items() if k not in JOB_NAMES}
    request = service_encode.EncodeRequest(**{**codec, "device": "cpu"})
    # bad options fail in one line before any work (a rerun with nothing left to do loads no codec)
    _run("encode", src, params, before_work=lambda: service_encode.build_encoder(request))


@batch.command("decode")
@click.argument("src")
@job_options
@decode_options
@guard
def decode(src: str, **params: Any) -> None:
    """Decode every .ivc file of SRC to OUT/<its relative path>.png, as `invcomp decode` does."""
    check_decode_options(params["model"], params["weights_path"])
    _run("decode", src, params)
