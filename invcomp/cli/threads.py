"""How many CPU threads torch gets (``invcomp --threads``, ``$INVCOMP_THREADS``).

torch's default is one thread per core whatever else runs. When other processes keep cores busy, its
OpenMP threads then wait on each other, and an encode can take several times longer than with fewer
threads (README, "Threads"). The default here is the CPUs this process may use (its affinity, capped by a
cgroup quota), less the rounded 1-minute load average, and at least 1; an ``OMP_NUM_THREADS`` set by the
user is left alone. A search also runs one image per thread, each single-threaded
(:mod:`invcomp.codecs.modes.inversion`). It is applied before torch is imported where possible (through
``OMP_NUM_THREADS``), and with ``torch.set_num_threads`` when torch is already loaded.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Optional

log = logging.getLogger(__name__)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cgroup_cpus(cpus: int) -> int:
    """``cpus`` capped by a cgroup v2 CPU quota (``docker --cpus``), where there is one."""
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()
        return cpus if quota == "max" else max(1, min(cpus, int(quota) // int(period)))
    except (OSError, ValueError):
        return cpus


def auto_threads(cpus: Optional[int] = None, load: Optional[float] = None) -> int:
    """``cpus`` less the rounded 1-minute ``load`` average, at least 1 (both read from the OS when ``None``)."""
    cpus = _cgroup_cpus(available_cpus()) if cpus is None else cpus
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            load = 0.0
    return max(1, min(cpus, cpus - int(round(load))))


def apply_threads(threads: Optional[int]) -> Optional[int]:
    """Set torch's thread count: ``threads``, else an ``OMP_NUM_THREADS`` the user set (left as it is), else
    :func:`auto_threads`; returns the count (``None`` when the user's ``OMP_NUM_THREADS`` rules)."""
    if threads is None and os.environ.get("OMP_NUM_THREADS") and "INVCOMP_AUTO_THREADS" not in os.environ:
        return None
    n = threads or auto_threads()
    os.environ["INVCOMP_AUTO_THREADS"] = str(n)  # so a child process (or a second call) is not taken for the user
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    else:
        os.environ["OMP_NUM_THREADS"] = str(n)
    log.info("torch threads: %d", n)
    return n
