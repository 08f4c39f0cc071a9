"""``python -m bench list``: every method, dataset, task and metric, where it comes from, and whether it runs here.

Configs come from the harness's own ``bench.conf`` and from every source on Hydra's search path: installed
plugins (the ``hmc_bench.configs`` entry point, ``hydra_plugins.hmc_bench_searchpath``) and ``hydra.searchpath``
given with ``--searchpath``; metrics from the registry (plugins' ``hmc_bench.metrics`` entry point)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from hydra.utils import instantiate

from bench.datasets.base import DatasetUnavailable


def config_names(group: str) -> list[str]:
    """Names of the configs in one group of the shipped ``conf/`` package."""
    folder = resources.files("bench.conf") / group
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def search_path(extra: Sequence[str] = ()) -> list[tuple[str, str]]:
    """(origin, ``pkg://``/``file://`` path) of every config source, in Hydra's order: the harness's own, then
    ``extra`` (``hydra.searchpath`` given on the command line), then installed plugins."""
    from importlib.metadata import entry_points

    from bench.resolvers import CONFIGS_GROUP

    sources = [("hmc-bench", "pkg://bench.conf"), *((p, p) for p in extra)]
    for ep in sorted(entry_points(group=CONFIGS_GROUP), key=lambda e: e.name):
        sources.append((f"plugin:{ep.name}", f"pkg://{ep.value}"))
    return sources


def _yaml_names(path: str, group: str) -> list[str]:
    if path.startswith("pkg://"):
        try:
            folder = resources.files(path[len("pkg://") :].replace("/", ".")) / group
        except ModuleNotFoundError:
            return []
    else:
        folder = Path(path.removeprefix("file://")) / group
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def config_sources(group: str, extra: Sequence[str] = ()) -> dict[str, str]:
    """Config name -> where it comes from (``hmc-bench``, ``plugin:<entry point>`` or a search path given); the
    first source on the path wins a name, as Hydra's own lookup does."""
    out: dict[str, str] = {}
    for origin, path in search_path(extra):
        for name in _yaml_names(path, group):
            out.setdefault(name, origin)
    return dict(sorted(out.items()))


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


def catalog(data_root: str | None = None, searchpath: Sequence[str] = ()) -> dict[str, list[dict[str, str]]]:
    overrides = [f"data_root={data_root}"] if data_root else []
    if searchpath:
        from bench.resolvers import plugin_configs

        overrides.append(f"hydra.searchpath=[{','.join([*searchpath, *plugin_configs()])}]")
    out: dict[str, list[dict[str, str]]] = {"methods": [], "datasets": [], "tasks": [], "metrics": []}
    with initialize_config_module(config_module="bench.conf", version_base="1.3"):
        for name, origin in config_sources("method", searchpath).items():
            family, ok, note = _status_of_method(compose("config", overrides=[*overrides, f"method={name}"]))
            out["methods"].append({"name": name, "family": family, "usable": ok, "note": note, "from": origin})
        for name, origin in config_sources("dataset", searchpath).items():
            if name in ("folder", "video-folder"):
                note = f"any folder: dataset={name} dataset.root=DIR"
                out["datasets"].append({"name": name, "usable": "yes", "note": note, "from": origin})
                continue
            ok, note = _status_of_dataset(compose("config", overrides=[*overrides, f"dataset={name}"]))
            out["datasets"].append({"name": name, "usable": ok, "note": note, "from": origin})
        for name, origin in config_sources("task", searchpath).items():
            kind, ok, note = _status_of_task(compose("config", overrides=[*overrides, f"task={name}"]))
            out["tasks"].append({"name": name, "kind": kind, "usable": ok, "note": note, "from": origin})
    from bench.metrics import registry

    for name, m in sorted(registry.declared().items()):
        kind = "human" if m.human else "task"
        direction = "higher is better" if m.higher_is_better else "lower is better"
        unit = f", {m.unit}" if m.unit else ""
        note = f"{kind}, {direction}{unit}, {m.aggregation}: {m.description}"
        out["metrics"].append({"name": name, "note": note, "from": m.origin})
    return out


def _origin(entry: dict[str, str]) -> str:
    return "" if entry.get("from") == "hmc-bench" else f"[{entry['from']}] "


def print_catalog(data_root: str | None = None, searchpath: Sequence[str] = ()) -> None:
    cat = catalog(data_root, searchpath)
    width = max(len(m["name"]) for m in cat["methods"] + cat["datasets"] + cat["tasks"] + cat["metrics"]) + 2
    print("methods (codecs are the SBAR methods; [where] a plugin's):")
    for m in cat["methods"]:
        print(f"  {m['name']:<{width}}{m['family']:<6}{m['usable']:<5}{_origin(m)}{m['note']}")
    print("datasets:")
    for d in cat["datasets"]:
        print(f"  {d['name']:<{width}}{d['usable']:<5}{_origin(d)}{d['note']}")
    print("tasks (task=<name>; a human-machine method measures its own tasks when none is given):")
    kind_width = max((len(t["kind"]) for t in cat["tasks"]), default=0) + 2
    for t in cat["tasks"]:
        print(f"  {t['name']:<{width}}{t['kind']:<{kind_width}}{t['usable']:<5}{_origin(t)}{t['note']}")
    print("metrics (metrics=[...] picks human ones; psnr-rgb and ms-ssim-rgb by default):")
    for m in cat["metrics"]:
        print(f"  {m['name']:<{width}}{_origin(m)}{m['note']}")
    root = data_root or os.environ.get("HMC_BENCH_DATA", "data")
    print(f"\ndata root: {root} (set HMC_BENCH_DATA or pass --data-root)")
