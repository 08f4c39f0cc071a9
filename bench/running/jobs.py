"""How many sweep jobs run at once on one machine.

Each job of a multirun measures its samples with ``workers`` processes, so
running one job per core (joblib's own default) would start ``workers`` times
more processes than there are cores. The project's joblib launcher config asks
for ``cores // workers`` jobs instead, through the resolver registered here.
"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

#: ``${bench.parallel_jobs:${workers}}`` in a config: jobs that fit this machine's cores
RESOLVER = "bench.parallel_jobs"


def parallel_jobs(workers: Any) -> int:
    """Jobs to run at once so that jobs x workers processes fill, but do not exceed, the usable cores."""
    import joblib  # counts the cores this process may use (affinity, cgroup quota), as n_jobs=-1 would

    try:
        per_job = int(workers)
    except (TypeError, ValueError):
        raise ValueError(f"workers must be a whole number of processes, got {workers!r}") from None
    if per_job < 1:
        raise ValueError(f"workers must be at least 1, got {per_job}")
    return max(1, joblib.cpu_count() // per_job)


def register_resolver() -> None:
    """Make ``bench.parallel_jobs`` available to configs (idempotent: job processes import this again)."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, parallel_jobs)
