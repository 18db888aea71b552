"""Batch jobs: code whole datasets, resumably, on local processes or Ray actors, with a manifest as the
source of truth (``invcomp batch encode|decode``).

    from invcomp.batch import JobOptions, run
    report, store = run("encode", "faces/", Path("out"), options=encode_options, job=JobOptions(workers=4))

- :mod:`~invcomp.batch.manifest`: the rows, JSONL/Parquet, merging, what to run (pure; the driver writes);
- :mod:`~invcomp.batch.sources`: ``SRC`` (folder, glob, manifest of inputs) to rows with outputs;
- :mod:`~invcomp.batch.work`: the worker (loads the codec once; codes exactly as ``invcomp encode``);
- :mod:`~invcomp.batch.runner`: the driver loop, retries, the report, and local processes;
- :mod:`~invcomp.batch.ray_engine`: Ray actors (the ``ray`` extra);
- :mod:`~invcomp.batch.job`: the whole job.
"""
from __future__ import annotations

from invcomp.batch.job import JobOptions, run

__all__ = ["JobOptions", "run"]
