"""``python -m bench list``: every configured method and dataset, and whether it runs here."""

from __future__ import annotations

import os
from importlib import resources
from typing import Any

from hydra import compose, initialize_config_module
from hydra.utils import instantiate

from bench.datasets.base import DatasetUnavailable


def config_names(group: str) -> list[str]:
    """Names of the configs in one group of the shipped ``conf/`` package."""
    folder = resources.files("bench.conf") / group
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _status_of_method(cfg: Any) -> tuple[str, str, str]:
    try:
        method = instantiate(cfg.method)
    except Exception as exc:  # noqa: BLE001 - a broken optional dependency is a status, not a crash
        return "?", "no", f"{type(exc).__name__}: {exc}"
    reason = method.unavailable_reason()
    return method.family.value, ("yes" if reason is None else "no"), (reason or method.description)


def _status_of_task(cfg: Any) -> tuple[str, str, str]:
    try:
        task = instantiate(cfg.task)
    except Exception as exc:  # noqa: BLE001
        return "?", "no", f"{type(exc).__name__}: {exc}"
    reason = task.unavailable_reason()
    return task.kind, ("yes" if reason is None else "no"), (reason or task.describe())


def _status_of_dataset(cfg: Any) -> tuple[str, str]:
    try:
        dataset = instantiate(cfg.dataset)
        n = len(dataset.samples())
    except DatasetUnavailable as exc:
        return "no", str(exc)
    except Exception as exc:  # noqa: BLE001
        return "no", f"{type(exc).__name__}: {exc}"
    return "yes", f"{n} samples: {dataset.describe()}"


def catalog(data_root: str | None = None) -> dict[str, list[dict[str, str]]]:
    overrides = [f"data_root={data_root}"] if data_root else []
    out: dict[str, list[dict[str, str]]] = {"methods": [], "datasets": [], "tasks": []}
    with initialize_config_module(config_module="bench.conf", version_base="1.3"):
        for name in config_names("method"):
            family, ok, note = _status_of_method(compose("config", overrides=[*overrides, f"method={name}"]))
            out["methods"].append({"name": name, "family": family, "usable": ok, "note": note})
        for name in config_names("dataset"):
            if name in ("folder", "video-folder"):
                out["datasets"].append(
                    {"name": name, "usable": "yes", "note": f"any folder: dataset={name} dataset.root=DIR"}
                )
                continue
            ok, note = _status_of_dataset(compose("config", overrides=[*overrides, f"dataset={name}"]))
            out["datasets"].append({"name": name, "usable": ok, "note": note})
        for name in config_names("task"):
            kind, ok, note = _status_of_task(compose("config", overrides=[*overrides, f"task={name}"]))
            out["tasks"].append({"name": name, "kind": kind, "usable": ok, "note": note})
    return out


def print_catalog(data_root: str | None = None) -> None:
    cat = catalog(data_root)
    width = max(len(m["name"]) for m in cat["methods"] + cat["datasets"] + cat["tasks"]) + 2
    print("methods (codecs are the SBAR methods):")
    for m in cat["methods"]:
        print(f"  {m['name']:<{width}}{m['family']:<6}{m['usable']:<5}{m['note']}")
    print("datasets:")
    for d in cat["datasets"]:
        print(f"  {d['name']:<{width}}{d['usable']:<5}{d['note']}")
    print("tasks (task=<name>; human metrics psnr-rgb and ms-ssim-rgb are always measured):")
    kind_width = max((len(t["kind"]) for t in cat["tasks"]), default=0) + 2
    for t in cat["tasks"]:
        print(f"  {t['name']:<{width}}{t['kind']:<{kind_width}}{t['usable']:<5}{t['note']}")
    root = data_root or os.environ.get("HMC_BENCH_DATA", "data")
    print(f"\ndata root: {root} (set HMC_BENCH_DATA or pass --data-root)")
