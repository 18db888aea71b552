"""Batch workers as Ray actors: each loads the codec once (:class:`invcomp.batch.work.Worker`), then codes the
batches the driver sends it. Ray schedules the actors (CPUs, GPUs, nodes); the driver keeps the manifest.

Each actor dies with the driver: Ray ends the actors of a driver that is gone, and an actor on the driver's host
also watches the driver's process itself (:func:`invcomp.batch.work.die_with_driver`), so a ``kill -9`` of the
driver leaves no actor coding on. Actors are not restarted by Ray, nor their calls retried: a batch whose actor dies comes back to the driver
as an error, the driver retries its items (counting the attempt in the manifest), and a new actor takes
the dead one's place.
"""
from __future__ import annotations

import logging
from typing import Any, Optional

from invcomp.errors import UsageError
from invcomp.batch.work import JobSpec, WorkItem, Worker, driver_process

log = logging.getLogger(__name__)


def have_ray() -> bool:
    """Whether the ``ray`` extra is installed."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def connect(address: str, *, num_cpus: Optional[int] = None) -> bool:
    """Join or start Ray: ``local`` starts one on this machine, ``auto`` joins the running cluster (``ray start``,
    ``$RAY_ADDRESS``) or else starts a local one, anything else is a cluster address. A Ray already
    initialised in this process is used as it is. Returns whether this call started it (then the caller
    shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    kw: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": False}
    if address == "auto":
        try:
            ray.init(address="auto", **kw)
            return True
        except ConnectionError:
            log.info("no running Ray cluster: starting a local one")
            address = "local"
    if address != "local":
        _reachable(address)
    try:
        if address == "local":
            ray.init(num_cpus=num_cpus, **kw)
        else:
            ray.init(address=address, **kw)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise UsageError(f"cannot reach Ray at {address}: {str(e).strip().splitlines()[0] if str(e) else e}") from None
    return True


def _reachable(address: str) -> None:
    """Refuse, in seconds and one line, a ``HOST:PORT`` (or ``ray://HOST:PORT``) nobody listens on (Ray
    itself retries for minutes)."""
    import socket

    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not port.isdigit():
        raise UsageError(f"--ray {address}: give auto, local, none or HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as e:
        raise UsageError(f"cannot reach Ray at {address}: {e.strerror or e}") from None


def check_gpus(gpus: float) -> None:
    """Refuse ``--gpus-per-worker`` that the connected Ray cluster cannot give."""
    import ray

    have = ray.cluster_resources().get("GPU", 0)
    if gpus and have < gpus:
        raise UsageError(f"--gpus-per-worker {gpus:g}: this Ray cluster has no GPU to give ({have:g} GPUs)")


class RayEngine:
    """``workers`` actors, each with ``cpus`` CPUs and ``gpus`` GPUs, that code batches of a job."""

    name = "ray"

    def __init__(self, spec: JobSpec, workers: int, *, cpus: float = 1, gpus: float = 0) -> None:
        import ray

        check_gpus(gpus)
        self.spec, self.workers, self.deaths = spec, workers, 0
        self._cls = ray.remote(num_cpus=cpus, num_gpus=gpus, max_restarts=0, max_task_retries=0)(Worker)
        self.driver = driver_process()
        self.actors = [self._cls.remote(spec, self.driver) for _ in range(workers)]
        self._owner: dict[Any, Any] = {}  # in-flight ref -> its actor

    def submit(self, batch: list[WorkItem]) -> Any:
        load = {id(a): 0 for a in self.actors}
        for a in self._owner.values():
            if id(a) in load:
                load[id(a)] += 1
        actor = min(self.actors, key=lambda a: load[id(a)])
        ref = actor.run.remote(batch)
        self._owner[ref] = actor
        return ref

    def busy_actors(self) -> list[Any]:
        """The actors with a batch in flight (for tests that kill one)."""
        return list({id(a): a for a in self._owner.values()}.values())

    def wait(self, handles: list[Any], timeout: float) -> list[tuple[Any, Any]]:
        import ray
        from ray.exceptions import RayActorError, RayError

        ready, _ = ray.wait(handles, num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            actor = self._owner.pop(ref)
            try:
                out.append((ref, ray.get(ref)))
            except RayActorError as e:
                self._replace(actor)
                out.append((ref, e))
            except RayError as e:  # the batch raised (a bug, MemoryError): the actor lives on
                out.append((ref, e))
        return out

    def _replace(self, dead: Any) -> None:
        """Put a new actor in a dead one's place (once, however many of its batches come back lost)."""
        if any(a is dead for a in self.actors):
            self.deaths += 1
            self.actors = [a for a in self.actors if a is not dead] + [self._cls.remote(self.spec, self.driver)]
            log.warning("a worker died; started another (%d so far)", self.deaths)

    def close(self) -> None:
        import ray

        for a in self.actors:
            ray.kill(a)
        self.actors = []
