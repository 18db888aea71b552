"""A whole batch job: the inputs of ``SRC`` merged into the manifest, the pending ones run on an engine, the
manifest compacted, and the report. What ``invcomp batch encode`` and ``invcomp batch decode`` call."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from invcomp.errors import UsageError
from invcomp.files import unwritable_folder
from invcomp.batch.manifest import FAILED, Store, check_job, job_file, lock, plan, to_run
from invcomp.batch.runner import LocalEngine, JobReport, run_job
from invcomp.batch.sources import items_for, stray_outputs
from invcomp.batch.work import DECODE, ENCODE, JobSpec

log = logging.getLogger(__name__)
SUFFIXES = {ENCODE: ".ivc", DECODE: ".png"}


@dataclass(frozen=True)
class JobOptions:
    """How a job runs (not what it codes): ``ray`` is ``auto`` (a running cluster, else a local Ray; local
    processes without Ray), ``local`` (start Ray here), ``none`` (local processes) or a cluster address."""

    ray: str = "auto"
    workers: int = 1
    gpus_per_worker: float = 0
    batch_size: int = 4
    max_attempts: int = 3
    threads_per_worker: int = 1
    force: bool = False
    progress: bool = True


def input_suffixes(kind: str) -> tuple[str, ...]:
    from invcomp.service.items import IMAGE_SUFFIXES

    return IMAGE_SUFFIXES if kind == ENCODE else (".ivc",)


def manifest_path(out: Path, manifest: Optional[Path]) -> Path:
    """Where a job's manifest is: ``manifest``, or ``OUT/manifest.jsonl``."""
    return Path(manifest) if manifest is not None else Path(out) / "manifest.jsonl"


def check_places(out: Path, manifest: Optional[Path]) -> None:
    """Refuse, in one line and before anything is written, an ``--out`` or ``--manifest`` that cannot be written."""
    for flag, path, folder in (("--out", out, Path(out)), ("--manifest", manifest, Path(manifest or out).parent)):
        reason = None if path is None else unwritable_folder(folder)
        if reason is not None:
            raise UsageError(f"cannot write {flag} {path}: {reason}")


def finished(kind: str, items: list[dict[str, Any]], path: Path, options: dict[str, Any]) -> Optional[Store]:
    """The manifest at ``path``, read only, when a run over ``items`` has nothing left to do (each item done under
    these settings, its output still there); ``None`` when there is work. Other settings are refused (as
    :func:`check_job` does); nothing is written."""
    if not path.is_file() or not job_file(path).is_file():
        return None
    held = lock(path)
    try:
        state, existed = Store.open(path)
        check_job(path, {"kind": kind, "options": options}, existed)
        state = plan(state, items, str(path))
        wanted = {it["id"] for it in items}
        if any(r["id"] in wanted for r in to_run(state)):
            return None
        return Store(path, state, compact=False)
    finally:
        held.close()


def prepare(kind: str, items: list[dict[str, Any]], out: Path, manifest: Optional[Path], options: dict[str, Any],
            force: bool = False) -> tuple[Store, list[dict[str, Any]], int, list[dict[str, Any]], Any]:
    """Open (or create) the manifest for ``items`` (:func:`items_for`) -> ``out``: the store, the rows to run,
    how many were done before, the rows refused (items that never ran and whose output exists, a file this job did not
    write, fail at once, unless ``force``) and the manifest's lock (close it when the run ends)."""
    path = manifest_path(out, manifest)
    held = lock(path)
    try:
        return _prepare(kind, path, items, options, force) + (held,)
    except BaseException:
        held.close()
        raise


def _prepare(kind: str, path: Path, items: list[dict[str, Any]], options: dict[str, Any],
             force: bool) -> tuple[Store, list[dict[str, Any]], int, list[dict[str, Any]]]:
    state, existed = Store.open(path)
    check_job(path, {"kind": kind, "options": options}, existed)
    state = plan(state, items, str(path))
    wanted = {it["id"] for it in items}
    todo = [r for r in to_run(state) if r["id"] in wanted]
    done_before = len(wanted) - len(todo)
    store = Store(path, state)
    refused = [] if force else [{**r, "status": FAILED, "error": f"{r['output']} exists (use --force to overwrite)"}
                                for r in stray_outputs(todo)]
    store.update(refused)
    gone = {r["id"] for r in refused}
    return store, [r for r in todo if r["id"] not in gone], done_before, refused


def uses_ray(opts: JobOptions) -> bool:
    """Whether ``opts`` run on Ray; refuses, in one line, what cannot run here (Ray asked for but missing,
    GPUs without Ray)."""
    from invcomp.batch.ray_engine import have_ray

    use_ray = opts.ray != "none" and (opts.ray != "auto" or have_ray())
    if use_ray and not have_ray():
        raise UsageError(f"--ray {opts.ray} needs Ray, which is not installed: pip install 'invcomp[ray]' "
                         "(without --ray, batch runs in local processes)")
    if opts.gpus_per_worker and not use_ray:
        raise UsageError("--gpus-per-worker needs Ray (pip install 'invcomp[ray]'), which is not installed"
                         if not have_ray() else "--gpus-per-worker needs Ray: drop --ray none")
    return use_ray


def engine_for(spec: JobSpec, opts: JobOptions) -> Any:
    """The engine ``opts.ray`` names (Ray already connected by :func:`run`)."""
    if not uses_ray(opts):
        return LocalEngine(spec, opts.workers)
    from invcomp.batch.ray_engine import RayEngine

    return RayEngine(spec, opts.workers, cpus=opts.threads_per_worker, gpus=opts.gpus_per_worker)


def run(kind: str, src: str, out: Path, *, options: dict[str, Any], job: JobOptions = JobOptions(),
        manifest: Optional[Path] = None, on_result: Optional[Callable] = None,
        before_work: Optional[Callable[[], Any]] = None) -> tuple[JobReport, Store]:
    """Run a batch job end to end and return its report and manifest store. A rerun with nothing left to do
    returns at once, with no worker, engine or Ray started; otherwise ``before_work()`` (e.g. a check of the
    options that loads the codec) is called before any of them."""
    use_ray = uses_ray(job)
    check_places(out, manifest)
    items = items_for(src, Path(out), input_suffixes(kind), SUFFIXES[kind])
    done = finished(kind, items, manifest_path(out, manifest), options)
    if done is not None:
        log.info("manifest %s: all %d items are done; nothing to run", done.path, len(items))
        return JobReport(total=len(items), skipped=len(items), workers=0), done  # no worker was started
    if before_work is not None:
        before_work()
    started = False
    if use_ray:  # reach Ray (and its GPUs) before any manifest is written: a bad address leaves nothing
        from invcomp.batch.ray_engine import connect

        started = connect(job.ray)
    try:
        if use_ray:
            from invcomp.batch.ray_engine import check_gpus

            check_gpus(job.gpus_per_worker)
        store, todo, done_before, refused, held = prepare(kind, items, out, manifest, options, job.force)
        try:
            report = JobReport(total=len(todo) + done_before + len(refused), skipped=done_before, workers=job.workers,
                               failed=len(refused), failures=[[r["id"], r["error"]] for r in refused])
            if todo:
                engine = engine_for(JobSpec(kind, options, job.threads_per_worker), job)
                report.engine = getattr(engine, "name", "")
                try:
                    run_job(store, todo, engine, batch_size=job.batch_size, max_attempts=job.max_attempts,
                            report=report, on_result=on_result, progress=job.progress)
                finally:
                    engine.close()
            store.compact()
        finally:
            held.close()
    finally:
        if started:
            import ray

            ray.shutdown()
    log.info("manifest: %s (%d rows)", store.path, len(store.state))
    return report, store

