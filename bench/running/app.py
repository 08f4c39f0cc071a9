"""The Hydra application behind ``python -m bench run``: config in, results out."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, replace
from typing import Any

import hydra
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from bench import provenance
from bench.datasets.base import DatasetUnavailable, ImageDataset, Sample
from bench.devices import resolve_device
from bench.methods.base import HUMAN, Method, MethodUnavailable
from bench.running import jobs, keys
from bench.running.evaluation import evaluate_task
from bench.running.profile import profile
from bench.running.runner import BitstreamCache, TaskLogs, run_sweep
from bench.running.store import RunStore, aggregate, compressai_json, write_outputs
from bench.tasks.base import Task

log = logging.getLogger("bench")
jobs.register_resolver()  # the default launcher config sizes n_jobs with it


class UserError(RuntimeError):
    """A problem the user can fix; printed as one message, no traceback."""


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
    """A task built from config, with its identity (``bench.running.keys.task_identity``) and the key made from it."""

    task: Task
    config: dict[str, Any]
    identity: dict[str, Any]

    @property
    def key(self) -> str:
        return keys.key_of(self.identity)


def task_config(name: str) -> DictConfig:
    """The config ``conf/task/<name>.yaml`` (or a plugin's), composed as ``task=<name>`` would compose it."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import MissingConfigException

    try:
        if GlobalHydra.instance().is_initialized():
            return compose("config", overrides=[f"task={name}"]).task
        with initialize_config_module(config_module="bench.conf", version_base="1.3"):
            return compose("config", overrides=[f"task={name}"]).task
    except MissingConfigException as exc:
        raise UserError(f"no task config named {name!r} (python -m bench list shows the tasks)") from exc


def build_tasks(cfg: DictConfig, method: Method | None = None) -> list[TaskSetup]:
    """The run's machine tasks, each checked to be runnable here.

    ``task=<name>`` when the run names one; otherwise the tasks the method serves
    (``Method.served_tasks``: a human-machine method's own tasks), from their configs.
    """
    if cfg.get("task") is not None:
        configs = [cfg.task]
    else:
        configs = [task_config(name) for name in (method.served_tasks() if method is not None else [])]
    setups = []
    for task_cfg in configs:
        task: Task = instantiate(task_cfg)
        why = task.unavailable_reason()
        if why:
            raise UserError(f"task {task.name!r} cannot run here: {why}")
        conf = OmegaConf.to_container(task_cfg, resolve=True)
        setups.append(TaskSetup(task, conf, keys.task_identity(conf, task)))
    return setups


def targeted(
    method: Method, settings: Any, dataset: ImageDataset, samples: list[Sample]
) -> tuple[Method, dict[str, Any]]:
    """The method driven to target bitrates (``rate_target``), and what the targeting is; as it is without one."""
    if not settings:
        return method, {}
    from bench.running import targeting as T

    rt = OmegaConf.to_container(settings, resolve=True) if isinstance(settings, DictConfig) else dict(settings)
    unknown = sorted(set(rt) - {"profile", "mode", "tolerance", "calibration_samples"})
    if unknown:
        raise UserError(
            f"rate_target: unknown key(s) {unknown}; it takes profile, mode, tolerance and calibration_samples"
        )
    try:
        targets = T.targets_of(rt.get("profile", "jpeg-ai"))
        mode = str(rt.get("mode", "image"))
        if mode not in T.MODES:
            raise T.TargetingError(f"rate_target.mode must be one of {T.MODES}, not {mode!r}")
        tolerance = float(rt.get("tolerance", 0.02))
        fixed = None
        calibration = T.calibration_subset(samples, rt.get("calibration_samples"))
        if mode == "dataset":
            log.info("rate targets: calibrating one %s setting per target on %d samples", method.name, len(calibration))
            fixed = T.calibrate(method, [dataset.load(s) for s in calibration], targets, tolerance)
        wrapped = T.TargetedMethod(method, targets, tolerance, fixed)
    except T.TargetingError as exc:
        raise UserError(f"method {method.name!r}: {exc}") from exc
    knob = wrapped.knob
    described = {"profile": rt.get("profile", "jpeg-ai"), "targets": targets, "mode": mode, "tolerance": tolerance}
    described["knob"] = knob.name if not knob.choices else f"{knob.name} (nearest of {list(knob.choices)})"
    if fixed is not None:
        described["settings"] = {str(t): v for t, v in fixed.items()}
        if len(calibration) < len(samples):
            described["calibration_samples"] = [s.id for s in calibration]
    return wrapped, described


def sample_contents(dataset: ImageDataset, samples: list[Sample]) -> list[Sample]:
    """The samples with their ``content`` digest (what every row records); an unreadable one fails later."""
    out = []
    for s in samples:
        try:
            content = dataset.content_digest(s)
        except Exception as exc:  # noqa: BLE001 - unreadable: its rows fail with the reason when it is measured
            content = f"unreadable:{type(exc).__name__}"
        out.append(replace(s, content=content))
    return out


def rate_weights(method: Method) -> dict[str, str]:
    """Rate point -> digest of the weight files it reads (what rows record as ``weights``)."""
    try:
        return {str(r): keys.weights_key(method.weight_files(r)) for r in method.rates}
    except (OSError, MethodUnavailable) as exc:
        raise UserError(f"method {method.name!r}: cannot read its weight files: {exc}") from exc


def weights_meta(method: Method) -> list[dict[str, Any]]:
    """``meta.weights``: every weight file of every rate point, with its SHA-256, origin and training record."""
    from bench.training.weights import describe

    out = []
    for rate in method.rates:
        for role, f in method.weight_files(rate).items():
            if isinstance(f, str):  # generated in memory: the digest is all there is
                out.append({"rate": rate, "role": role, "origin": "generated", "sha256": f})
            else:
                out.append(describe(role, f, method.weights_origin(role), rate=rate))
    return out


def dataset_meta(dataset: ImageDataset, samples: list[Sample]) -> dict[str, Any]:
    """Which samples, with which content and ground truth, stand behind the results (``meta.sample_set``)."""
    from bench.io.digests import file_sha256, json_sha256

    labels = {p.name: file_sha256(p) for p in dataset.label_files()}
    contents = sorted((s.id, s.content) for s in samples)
    return {
        "n": len(samples),
        "digest": json_sha256([contents, labels]),
        "labels": labels,
        "contents": dict(contents),
    }


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
    samples = sample_contents(dataset, samples)
    mine = samples if shard is None else [s for k, s in enumerate(samples) if k % shard[1] == shard[0]]
    metrics = list(cfg.metrics)
    task_setups = build_tasks(cfg, method)
    method_cfg = OmegaConf.to_container(cfg.method, resolve=True)
    dataset_cfg = OmegaConf.to_container(cfg.dataset, resolve=True)
    device = keys.device_identity(method, getattr(method, "device", "cpu"))
    identity = keys.run_identity(method_cfg, dataset_cfg, metrics, method.versions(), device)
    method, targeting = targeted(method, cfg.get("rate_target"), dataset, samples)
    if targeting:
        identity["rate_target"] = targeting
    run_key = keys.key_of(identity)
    store = RunStore(cfg.results_dir, dataset.name, method.name, run_key)
    stamp = keys.RowStamp({s.id: s.content or "" for s in samples}, rate_weights(method))
    dataset_key = keys.key_of({"dataset": identity["dataset"]})
    tasks = [
        TaskLogs(
            t.task,
            store.task_log(t.task.name, t.key),
            store.reference_log(t.task.name, keys.key_of({"task": t.identity, "dataset": dataset_key})),
        )
        for t in task_setups
    ]
    note = keys.describe_previous(store.root / dataset.name / method.name, run_key, identity)
    if note:
        log.info(note)
    stale = store.human.stale_count(stamp)
    if stale:
        log.info(
            "%d rows in %s were measured on other sample content or weights: measured again (those rows stay, "
            "never used)",
            stale,
            store.run_dir,
        )
    store.write_config({"method": method_cfg, "dataset": dataset_cfg, "metrics": metrics})
    store.write_identity(identity)
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
        cache = BitstreamCache(cfg.cache_dir, keys.cache_key(identity), stamp.weights)
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
            stamp=stamp,
        )
    except MethodUnavailable as exc:
        raise UserError(str(exc)) from exc
    wanted = {s.id for s in samples}
    rows = store.sample_table(stamp)
    rows = rows[rows["sample"].isin(wanted)] if not rows.empty else rows
    table = aggregate(rows, method.rates)
    ok = rows[rows["error"].isna()] if not rows.empty and "error" in rows else rows
    present = set() if ok.empty else {(r, str(t)) for r, t in zip(ok["sample"], ok["rate"])}
    missing = len(wanted) * len(method.rates) - len(present & {(s, str(r)) for s in wanted for r in method.rates})
    task_meta = {}
    for t in tasks:
        task_table, task_meta[t.task.name] = evaluate_task(t, dataset, samples, method.rates, stamp)
        task_missing = len(wanted) * len(method.rates) - int(task_table[f"{t.task.name}/n"].sum())
        task_meta[t.task.name]["complete"] = task_missing == 0
        missing += max(0, task_missing)
        table = table.merge(task_table, on="rate", how="left") if not table.empty else task_table
    for setup, t in zip(task_setups, tasks):
        task_meta[t.task.name]["identity"] = setup.identity
        task_meta[t.task.name]["key"] = setup.key
        task_meta[t.task.name]["rows"] = t.predictions.path.relative_to(store.root).as_posix()
        task_meta[t.task.name]["reference_rows"] = t.reference.path.relative_to(store.root).as_posix()
    complexity = profile(method, dataset, samples, [t.task for t in task_setups]) if cfg.get("complexity") else {}
    if complexity.get("rates") and len(table) == len(method.rates):
        per_rate = [complexity["rates"].get(str(r), {}) for r in method.rates]
        table["kmac_enc"] = [p.get("encoder") for p in per_rate]
        table["kmac_dec"] = [(p.get("decoder") or {}).get(HUMAN) for p in per_rate]
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
        "sample_set": dataset_meta(dataset, samples),
        "complete": missing == 0 and not failures,
        "missing_rows": missing,
        "shard": cfg.get("shard"),
        "failures": failures,
        "config": {
            "method": method_cfg,
            "dataset": dataset_cfg,
            "metrics": metrics,
            "tasks": {t.task.name: t.config for t in task_setups},
        },
        "tasks": task_meta,
        "identity": identity,
        "config_hash": run_key,
        "rate_weights": stamp.weights,
        "weights": weights_meta(method),
        "rate_target": targeting,
        "complexity": complexity,
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
    lossless = int(table["n_lossless"].sum()) if "n_lossless" in table else 0
    if lossless:
        print(f"{lossless} rows were lossless (PSNR = inf): each point's PSNR averages the other samples (n_lossless)")
    log.info("results: %s (rows: %s)", store.json_path, store.rows_path)
    return {"json": str(store.json_path), **stats}


@hydra.main(version_base="1.3", config_path="pkg://bench.conf", config_name="config")
def hydra_main(cfg: DictConfig) -> dict[str, Any]:
    try:
        return run_job(cfg)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
