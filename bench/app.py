"""The Hydra application behind ``python -m bench run``: config in, results out."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Any

import hydra
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from bench import jobs, provenance
from bench.datasets.base import DatasetUnavailable, ImageDataset
from bench.evaluation import evaluate_task
from bench.methods.base import Method, MethodUnavailable
from bench.runner import BitstreamCache, TaskLogs, run_sweep
from bench.store import RunStore, aggregate, compressai_json, write_outputs
from bench.tasks.base import Task

log = logging.getLogger("bench")
jobs.register_resolver()  # the default launcher config sizes n_jobs with it


#: bump when a change to the harness changes the numbers rows hold
MEASUREMENT_VERSION = 1
#: method options that do not change what one (sample, rate) row measures
_NOT_HASHED = ("rates", "description", "name")


class UserError(RuntimeError):
    """A problem the user can fix; printed as one message, no traceback."""


def resolve_device(device: str) -> str:
    """``auto`` is CUDA when torch sees a GPU, else the CPU; anything else as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def row_config_hash(method_cfg: dict[str, Any], metrics: list[str]) -> str:
    """Hash of everything that decides a row's numbers (not the rate list)."""
    relevant = {k: v for k, v in method_cfg.items() if k not in _NOT_HASHED}
    return provenance.config_hash({"method": relevant, "metrics": metrics, "version": MEASUREMENT_VERSION})


def encode_key(method_cfg: dict[str, Any], codec_versions: dict[str, str]) -> str:
    """Hash of what decides a method's bytes: its config, the harness version, the codec versions."""
    relevant = {k: v for k, v in method_cfg.items() if k not in _NOT_HASHED}
    return provenance.config_hash({"method": relevant, "codecs": codec_versions, "version": MEASUREMENT_VERSION})


def parse_shard(value: Any) -> tuple[int, int] | None:
    """``"i/n"`` -> (i, n) with 0 <= i < n; None for no sharding."""
    if value is None:
        return None
    try:
        i, n = (int(x) for x in str(value).split("/"))
    except ValueError:
        raise UserError(f"shard must be 'i/n' (e.g. shard=0/4), got {value!r}") from None
    if n < 1 or not 0 <= i < n:
        raise UserError(f"shard {value!r}: need 0 <= i < n")
    return i, n


def format_table(table: pd.DataFrame, name: str, dataset: str) -> str:
    """The aggregate table as printed: per-class columns stay in the files only."""
    shown = table[[c for c in table.columns if c.count("/") < 2]]
    return f"{name} on {dataset}\n" + shown.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="nan")


@dataclass
class TaskSetup:
    """A task built from config, with the hash that keys its prediction rows."""

    task: Task
    config: dict[str, Any]
    hash: str


def task_config_hash(conf: dict[str, Any]) -> str:
    """Hash of a resolved task config that keys its prediction rows (options that change only speed left out)."""
    hashed = {k: v for k, v in conf.items() if k not in ("batch_size", "device", "threads")}
    return provenance.config_hash({"task": hashed, "version": MEASUREMENT_VERSION})


def build_tasks(cfg: DictConfig) -> list[TaskSetup]:
    """The run's machine tasks (``task=<name>``), each checked to be runnable here."""
    setups = []
    if cfg.get("task") is not None:
        task: Task = instantiate(cfg.task)
        why = task.unavailable_reason()
        if why:
            raise UserError(f"task {task.name!r} cannot run here: {why}")
        conf = OmegaConf.to_container(cfg.task, resolve=True)
        setups.append(TaskSetup(task, conf, task_config_hash(conf)))
    return setups


def run_job(cfg: DictConfig) -> dict[str, Any]:
    """Run one (method, dataset) sweep from a composed config; returns a summary."""
    method: Method = instantiate(cfg.method)
    dataset: ImageDataset = instantiate(cfg.dataset)
    if method.uses_torch and hasattr(method, "device"):
        method.device = resolve_device(str(cfg.device))
    reason = method.unavailable_reason()
    if reason:
        raise UserError(f"method {method.name!r} cannot run here: {reason}")
    coded, held = getattr(method, "media", "image"), getattr(dataset, "media", "image")  # video: clips
    if coded != held:
        raise UserError(
            f"method {method.name!r} codes {coded}s but dataset {dataset.name!r} holds {held}s: "
            "choose a method and a dataset of the same kind (`python -m bench list`)"
        )
    try:
        samples = dataset.samples()
    except DatasetUnavailable as exc:
        raise UserError(str(exc)) from exc
    if cfg.limit is not None:
        samples = samples[: int(cfg.limit)]
    shard = parse_shard(cfg.get("shard"))
    mine = samples if shard is None else [s for k, s in enumerate(samples) if k % shard[1] == shard[0]]
    metrics = list(cfg.metrics)
    task_setups = build_tasks(cfg)
    method_cfg = OmegaConf.to_container(cfg.method, resolve=True)
    if method.uses_torch and hasattr(method, "device"):
        method_cfg["device"] = method.device  # numbers may differ across devices: keep them apart
    dataset_cfg = OmegaConf.to_container(cfg.dataset, resolve=True)
    chash = row_config_hash(method_cfg, metrics)
    store = RunStore(cfg.results_dir, dataset.name, method.name, chash)
    tasks = [
        TaskLogs(t.task, store.task_log(t.task.name, t.hash), store.reference_log(t.task.name, t.hash))
        for t in task_setups
    ]
    store.write_config({"method": method_cfg, "dataset": dataset_cfg, "metrics": metrics})
    log.info(
        "%s (%s) on %s: %d samples x %d rates%s",
        method.name,
        method.family.value,
        dataset.describe(),
        len(mine),
        len(method.rates),
        "" if shard is None else f" (shard {shard[0]}/{shard[1]} of {len(samples)} samples)",
    )
    cache = None
    if cfg.get("cache_dir") is not None:
        cache = BitstreamCache(cfg.cache_dir, encode_key(method_cfg, method.versions()))
    try:
        stats = run_sweep(
            method,
            dataset,
            store,
            metrics=metrics,
            workers=int(cfg.workers),
            resume=bool(cfg.resume),
            progress=bool(cfg.progress),
            samples=mine,
            tasks=tasks,
            cache=cache,
        )
    except MethodUnavailable as exc:
        raise UserError(str(exc)) from exc
    wanted = {s.id for s in samples}
    rows = store.sample_table()
    rows = rows[rows["sample"].isin(wanted)] if not rows.empty else rows
    table = aggregate(rows, method.rates)
    present = set() if rows.empty else {(r, str(t)) for r, t in zip(rows["sample"], rows["rate"])}
    missing = len(wanted) * len(method.rates) - len(present & {(s, str(r)) for s in wanted for r in method.rates})
    task_meta = {}
    for t in tasks:
        task_table, task_meta[t.task.name] = evaluate_task(t, dataset, samples, method.rates)
        table = table.merge(task_table, on="rate", how="left") if not table.empty else task_table
    failures = (
        []
        if rows.empty or "error" not in rows
        else (rows[rows["error"].notna()][["sample", "rate", "error"]].to_dict("records"))
    )
    meta = {
        "bpp_source": method.bpp_source,
        "family": method.family.value,
        "method": method.name,
        "dataset": dataset.name,
        "dataset_description": dataset.describe(),
        "samples": len(samples),
        "complete": missing == 0,
        "shard": cfg.get("shard"),
        "failures": failures,
        "config": {
            "method": method_cfg,
            "dataset": dataset_cfg,
            "metrics": metrics,
            "tasks": {t.task.name: t.config for t in task_setups},
        },
        "tasks": task_meta,
        "config_hash": chash,
        "rows": store.rows_path.relative_to(store.root).as_posix(),  # relative: results move with their folder
        "codec_versions": method.versions(),
        "provenance": provenance.provenance(device=getattr(method, "device", "cpu")),
    }
    write_outputs(store, compressai_json(method.name, method.description, table, meta), table)
    if shard is not None and missing:
        log.warning(
            "shard %d/%d: results are partial until every shard has run (%d (sample, rate) rows missing); "
            "run once more without shard to write the final JSON",
            shard[0],
            shard[1],
            missing,
        )
    print(format_table(table, method.name, dataset.name))
    if failures:
        print(f"{len(failures)} (sample, rate) pairs failed; see meta.failures in {store.json_path}")
    log.info("results: %s (rows: %s)", store.json_path, store.rows_path)
    return {"json": str(store.json_path), **stats}


@hydra.main(version_base="1.3", config_path="pkg://bench.conf", config_name="config")
def hydra_main(cfg: DictConfig) -> dict[str, Any]:
    try:
        return run_job(cfg)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
