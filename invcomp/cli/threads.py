"""How many CPU threads torch gets (``invcomp --threads``, ``$INVCOMP_THREADS``).

torch's default is one thread per core whatever else runs. When other processes keep cores busy, its
OpenMP threads then wait on each other, and an encode can take several times longer than with fewer
threads (README, "Threads"). The default here is the CPUs this process may use, less the rounded
1-minute load average, and at least 1. It is applied before torch is imported where possible (through
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


def auto_threads(cpus: Optional[int] = None, load: Optional[float] = None) -> int:
    """``cpus`` less the rounded 1-minute ``load`` average, at least 1 (both read from the OS when ``None``)."""
    cpus = available_cpus() if cpus is None else cpus
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            load = 0.0
    return max(1, min(cpus, cpus - int(round(load))))


def apply_threads(threads: Optional[int]) -> int:
    """Set torch's thread count: ``threads``, else :func:`auto_threads`; returns the count."""
    n = threads or auto_threads()
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    else:
        os.environ["OMP_NUM_THREADS"] = str(n)
    log.info("torch threads: %d", n)
    return n
