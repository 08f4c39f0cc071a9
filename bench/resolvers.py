"""Config resolvers: values a config cannot know until it runs (where shipped weights are, how many jobs fit).

Registered once per process by ``import bench``, so every entry point (the CLI, Hydra's job processes,
``hydra.compose`` in tests and in ``bench list``) resolves the same configs the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

#: ``${bench.checkpoints:}``: the folder of shipped and trained weights
CHECKPOINTS = "bench.checkpoints"
#: ``${bench.plugin_configs:}``: the config packages of installed plugins (``hydra.searchpath`` of the primary configs)
PLUGIN_CONFIGS = "bench.plugin_configs"
#: entry-point group under which a plugin names its config package (``method/``, ``dataset/``, ``task/`` groups)
CONFIGS_GROUP = "hmc_bench.configs"


def project_root() -> Path:
    """The checkout the installed package lives in (editable install): where ``checkpoints/`` and ``results/`` are."""
    return Path(__file__).resolve().parent.parent


def project_checkpoints() -> Path:
    """The checkpoints the project ships, found from the installed package (not the working directory)."""
    return project_root() / "checkpoints"


def checkpoints_root() -> str:
    """``$HMC_BENCH_CHECKPOINTS`` when set, else the project's own ``checkpoints/`` folder."""
    return os.environ.get("HMC_BENCH_CHECKPOINTS") or str(project_checkpoints())


def plugin_configs() -> list[str]:
    """``pkg://`` search-path entries of every installed plugin's config package, in entry-point name order."""
    from importlib.metadata import entry_points

    seen: dict[str, str] = {}
    for ep in sorted(entry_points(group=CONFIGS_GROUP), key=lambda e: e.name):
        seen.setdefault(ep.value, f"pkg://{ep.value}")  # the same package installed twice is one source
    return list(seen.values())


def register() -> None:
    """Make the resolvers available to configs (idempotent: job processes import this again)."""
    from bench.running import jobs

    if not OmegaConf.has_resolver(CHECKPOINTS):
        OmegaConf.register_new_resolver(CHECKPOINTS, checkpoints_root)
    if not OmegaConf.has_resolver(PLUGIN_CONFIGS):
        OmegaConf.register_new_resolver(PLUGIN_CONFIGS, plugin_configs)
    jobs.register_resolver()
