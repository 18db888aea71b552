"""``invcomp serve``: the web app (FastAPI + uvicorn, the ``web`` extra), with background jobs in worker processes."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

import click

from invcomp.errors import InvcompError
from invcomp.cli.outputs import guard
from invcomp.nets import resolve_device

log = logging.getLogger(__name__)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but a loopback address needs --token.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--data", "data", default="invcomp-web", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder of the job store (jobs.sqlite) and the jobs' files; a restart with the same folder resumes.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(0),
              help="Worker processes: jobs that run at once (0: queue only).")
@click.option("--threads-per-worker", default=1, show_default=True, type=click.IntRange(1), help="torch threads of each.")
@click.option("--token", default=None, envvar="INVCOMP_TOKEN", show_envvar=True,
              help="Required for every request, as 'Authorization: Bearer T' or the cookie /login sets.")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--bench", "bench", multiple=True, type=click.Path(file_okay=False, path_type=Path),
              help="An `invcomp bench` results folder, or a folder of them, for the Benchmarks page (repeatable).  "
                   "[default: experiments/results, when it is here]")
@click.option("--retention", default=168.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Hours after which finished jobs and their files are removed.")
@click.option("--max-upload-mb", default=20.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Largest file accepted.")
@click.option("--max-files", default=16, show_default=True, type=click.IntRange(1), help="Files per request.")
@click.option("--max-pixels", default=16_000_000, show_default=True, type=click.IntRange(1), help="Pixels per image.")
@click.option("--max-queue", default=500, show_default=True, type=click.IntRange(1), help="Jobs waiting at once.")
@click.option("--max-iters", default=2000, show_default=True, type=click.IntRange(0), help="Search iterations a request may ask.")
@click.option("--job-timeout", default=900.0, show_default=True, type=click.FloatRange(min=1),
              help="Seconds a job of any kind may run (its worker is killed past it).")
@click.option("--read-timeout", default=15.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds a request body may go without a byte (then 408).")
@click.option("--upload-timeout", default=120.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds a whole request body may take (then 408).")
@click.option("--max-uploads-per-client", default=4, show_default=True, type=click.IntRange(1),
              help="Uploads one client address may have in flight (then 429).")
@guard
def serve(host: str, port: int, data: Path, workers: int, threads_per_worker: int, token: Optional[str], device: str,
          bench: Sequence[Path], retention: float, max_upload_mb: float, max_files: int, max_pixels: int,
          max_queue: int, max_iters: int, job_timeout: float, read_timeout: float, upload_timeout: float,
          max_uploads_per_client: int) -> None:
    """Start the web app: compress, decompress and compare in the browser or over a JSON API (/docs).

    \b
    Examples:
      invcomp serve                                   # http://127.0.0.1:8000/
      invcomp serve --workers 2 --data /srv/invcomp --bench results/
      INVCOMP_TOKEN=... invcomp serve --host 0.0.0.0  # other machines: a token is required
    """
    try:
        import uvicorn

        from invcomp.web.app import create_app
        from invcomp.web.config import Limits, WebConfig
    except ImportError as e:
        raise InvcompError(f"invcomp serve needs the web extra ({e.name} is missing): pip install 'invcomp[web]'") from None
    if not bench and Path("experiments/results").is_dir():
        bench = (Path("experiments/results"),)
    limits = Limits(max_upload_bytes=int(max_upload_mb * 1_000_000), max_files=max_files, max_pixels=max_pixels,
                    max_queue=max_queue, max_iters=max_iters, job_timeout=job_timeout, read_timeout=read_timeout,
                    upload_seconds=upload_timeout, max_uploads_per_client=max_uploads_per_client)
    config = WebConfig(data=data.resolve(), host=host, port=port, workers=workers, threads_per_worker=threads_per_worker,
                       token=token, device=resolve_device(device), retention_seconds=retention * 3600,
                       bench_dirs=tuple(b.resolve() for b in bench), limits=limits)
    app = create_app(config)  # checks the binding first (a token off loopback)
    click.echo(f"invcomp serve: http://{host if ':' not in host else '[' + host + ']'}:{port}/ ({workers} worker(s), "
               f"data in {config.data}); API docs at /docs", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)
