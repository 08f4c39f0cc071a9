"""``python -m bench check``: the drift gate. Re-run pinned smoke sweeps and compare their numbers with a golden record.

A golden record is a folder::

    smoke.yaml                   the pinned sweeps: per dataset, methods and their rate points, metrics, tolerances
    <dataset>/<method>.json      the golden results (our results format; timings, host and row paths left out)
    CHANGES.md, history.jsonl    why and when the record was rewritten (``--update --reason``)

``smoke.yaml`` pins one sweep (top-level ``dataset`` and ``methods``) or several (``sweeps:``, a list of them, e.g.
scikit-image's photographs with image codecs and clips panned across them with video codecs). A sweep's keys:
``dataset``, ``methods`` (name -> rate points), optional ``metrics``, ``task``, ``overrides``, ``tolerances``,
``limit``, ``workers``; the same keys at the top level are defaults for every sweep.

``check`` runs each sweep through the same code as ``python -m bench run`` (Hydra compose of ``bench.conf``
and :func:`bench.running.app.run_job`) into a temporary folder, or reads ``--results DIR``, and compares bpp and
every metric per rate point with the golden numbers. Timings are not compared, nor anything about the machine:
numbers only. Exit 0 when all are within tolerance, 1 on drift (the rows that moved are printed, with the package
and codec versions that differ from the record's: an FFmpeg/x264 or Pillow update is the usual cause), 2 on a usage
or input error.

Task network: a sweep's optional ``task: NAME`` (e.g. ``classification``) adds ``task=NAME`` to its runs.
Where the task cannot run here (its weights are missing) the check prints ``task NAME skipped: <reason>`` and
compares the human-side numbers only (the task's keys ``NAME/...`` and ``bpp@NAME`` are left out); with
``--require-tasks`` that is an error (exit 2), and ``--update`` always needs the task.

Tolerances: ``bpp*`` and ``kbps`` relative 1e-9 (bytes are exact for one codec build), PSNR 1e-6 dB absolute,
MS-SSIM 1e-6 absolute, other metrics 1e-6 absolute; ``smoke.yaml``'s ``tolerances`` and
``--tolerance METRIC=[abs:|rel:]VALUE`` override them (``METRIC`` is a results key or its prefix before ``-``, e.g.
``psnr`` for ``psnr-rgb`` and ``psnr-yuv420``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import io
import json
import math
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import provenance
from bench.running.store import atomic_write_text

CONFIG_NAME = "smoke.yaml"
#: keys of one pinned sweep; all but ``dataset`` and ``methods`` may also stand at the top level as defaults
SWEEP_KEYS = ("dataset", "methods", "metrics", "task", "overrides", "tolerances", "limit", "workers")
SWEEP_DEFAULT_KEYS = SWEEP_KEYS[2:]
IGNORED_SUFFIX = "_time"  # encoding_time, decoding_time: not reproducible, never compared
#: default tolerances: (results-key prefix, kind, value); first match wins
DEFAULT_TOLERANCES: tuple[tuple[str, str, float], ...] = (
    ("bpp", "rel", 1e-9),
    ("kbps", "rel", 1e-9),
    ("psnr", "abs", 1e-6),
    ("ms-ssim", "abs", 1e-6),
    ("", "abs", 1e-6),
)


class CheckError(RuntimeError):
    """A problem with the golden record or the arguments (exit 2), not a drift."""


@dataclass(frozen=True)
class Tolerance:
    kind: str  # "abs" or "rel"
    value: float

    def ok(self, golden: float, new: float) -> bool:
        if math.isnan(golden) or math.isnan(new):
            return math.isnan(golden) and math.isnan(new)
        if math.isinf(golden) or math.isinf(new):
            return golden == new
        limit = self.value if self.kind == "abs" else self.value * abs(golden)
        return abs(new - golden) <= limit

    def __str__(self) -> str:
        return f"{self.kind} {self.value:g}"


@dataclass(frozen=True)
class Drift:
    """One number (or one missing piece) that differs from the golden record."""

    method: str
    rate: str
    metric: str
    golden: Any
    new: Any
    diff: str
    tolerance: str
    dataset: str = ""


def _matches(name: str, key: str) -> bool:
    return key == name or key.startswith(name + "-") or key.startswith(name + "/")


def parse_tolerance(text: str, default_kind: str | None = None) -> tuple[str, Tolerance]:
    """``METRIC=VALUE``, ``METRIC=abs:VALUE`` or ``METRIC=rel:VALUE``."""
    name, sep, spec = text.partition("=")
    if not sep or not name:
        raise CheckError(f"tolerance {text!r}: expected METRIC=[abs:|rel:]VALUE, e.g. psnr-rgb=1e-4")
    kind, _, number = spec.rpartition(":")
    kind = kind or default_kind or ("rel" if name.startswith("bpp") else "abs")
    try:
        value = float(number)
    except ValueError:
        raise CheckError(f"tolerance {text!r}: {number!r} is not a number") from None
    if kind not in ("abs", "rel") or not value >= 0:
        raise CheckError(f"tolerance {text!r}: kind must be abs or rel and the value >= 0")
    return name, Tolerance(kind, value)


def tolerance_for(key: str, overrides: Mapping[str, Tolerance]) -> Tolerance:
    """The override naming ``key`` exactly, else one naming its prefix, else the default."""
    if key in overrides:
        return overrides[key]
    for name, tol in sorted(overrides.items(), key=lambda kv: -len(kv[0])):
        if _matches(name, key):
            return tol
    for prefix, kind, value in DEFAULT_TOLERANCES:
        if key.startswith(prefix):
            return Tolerance(kind, value)
    raise AssertionError("unreachable: the last default matches every key")


# ---------------------------------------------------------------------------------------------------------------
# the golden record


def load_config(baseline: Path) -> dict[str, Any]:
    """The pinned smoke sweeps of a golden record: ``{"sweeps": [sweep, ...]}``, top-level defaults merged in.

    A record of one sweep (top-level ``dataset`` and ``methods``, the original layout) reads as a list of one.
    """
    from omegaconf import OmegaConf

    path = baseline / CONFIG_NAME
    if not path.is_file():
        raise CheckError(f"{path}: no such file; a golden record needs its pinned sweep ({CONFIG_NAME})")
    try:
        cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as exc:  # noqa: BLE001 - any YAML problem is one message naming the file
        raise CheckError(f"{path}: cannot read ({exc})") from None
    if not isinstance(cfg, dict):
        raise CheckError(f"{path}: needs 'dataset' and 'methods', or 'sweeps' (a list of them)")
    if "sweeps" in cfg:
        if "dataset" in cfg or "methods" in cfg:
            raise CheckError(f"{path}: has both 'sweeps' and a top-level 'dataset'/'methods'; keep one form")
        raw = cfg["sweeps"]
        if not isinstance(raw, list) or not raw or not all(isinstance(s, dict) for s in raw):
            raise CheckError(f"{path}: 'sweeps' must be a non-empty list of {{dataset, methods, ...}}")
    else:
        raw = [{k: cfg[k] for k in ("dataset", "methods") if k in cfg}]
    defaults = {k: cfg[k] for k in SWEEP_DEFAULT_KEYS if k in cfg}
    sweeps = []
    for n, given in enumerate(raw):
        where = f"{path}: sweeps[{n}]" if "sweeps" in cfg else str(path)
        unknown = sorted(set(given) - set(SWEEP_KEYS))
        if unknown:
            raise CheckError(f"{where}: unknown key(s) {', '.join(unknown)}; a sweep takes {', '.join(SWEEP_KEYS)}")
        if not isinstance(given.get("methods"), dict) or not given.get("dataset"):
            raise CheckError(f"{where}: needs 'dataset' and 'methods' (method name -> list of rate points)")
        for method, rates in given["methods"].items():
            if not isinstance(rates, list) or not rates:
                raise CheckError(f"{where}: methods.{method} must be a non-empty list of rate points")
        sweep = {**defaults, **given}
        sweep["tolerances"] = {**(defaults.get("tolerances") or {}), **(given.get("tolerances") or {})}
        sweeps.append(sweep)
    datasets = [str(s["dataset"]) for s in sweeps]
    twice = sorted({d for d in datasets if datasets.count(d) > 1})
    if twice:
        raise CheckError(f"{path}: dataset(s) {', '.join(twice)} pinned by more than one sweep (one folder each)")
    return {"sweeps": sweeps}


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), dict):
        raise CheckError(f"{path}: not a results JSON (no 'results' object)")
    return doc


def golden_documents(baseline: Path, sweep: dict[str, Any], missing_ok: bool = False) -> dict[str, dict[str, Any]]:
    """The golden results of one sweep's methods; ``missing_ok`` (``--update``) leaves out those not recorded yet."""
    out = {}
    for method in sweep["methods"]:
        path = baseline / str(sweep["dataset"]) / f"{method}.json"
        if not path.is_file():
            if missing_ok:
                continue
            raise CheckError(f"{path}: golden results missing; create them with --update --reason '...'")
        out[method] = _read(path)
    return out


def fresh_documents(root: Path, sweep: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
    """The results of one sweep's pinned methods under ``root`` (None where a method has none)."""
    out: dict[str, dict[str, Any] | None] = {}
    for method in sweep["methods"]:
        path = root / str(sweep["dataset"]) / f"{method}.json"
        out[method] = _read(path) if path.is_file() else None
    return out


def smoke_task(cfg: dict[str, Any]) -> str | None:
    """The task network a sweep names (``task: NAME``), or None."""
    task = cfg.get("task")
    if task is not None and (not isinstance(task, str) or not task):
        raise CheckError(f"{CONFIG_NAME}: 'task' must be a task config name, e.g. classification")
    return task


def is_task_key(key: str, task: str) -> bool:
    """A results key the task produces: ``TASK/metric`` or ``bpp@TASK``."""
    return key.startswith(task + "/") or key.endswith("@" + task)


def _compose(cfg: dict[str, Any], overrides: list[str]) -> Any:
    from hydra import compose, initialize_config_module

    overrides = overrides + [str(o) for o in cfg.get("overrides") or []]
    with initialize_config_module(config_module="bench.conf", version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def task_unavailable_reason(cfg: dict[str, Any], task: str) -> str | None:
    """Why the smoke sweep's task cannot run here (e.g. missing weights), or None."""
    from hydra.utils import instantiate

    method = next(iter(cfg["methods"]))
    try:
        job = _compose(cfg, [f"method={method}", f"dataset={cfg['dataset']}", f"task={task}"])
        return instantiate(job.task).unavailable_reason()
    except Exception as exc:  # noqa: BLE001 - an unknown task or bad config is one message
        raise CheckError(f"{CONFIG_NAME}: task {task!r}: {exc}") from None


def _override_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_override_value(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return json.dumps(value)


def run_smoke(cfg: dict[str, Any], results_dir: Path, *, quiet: bool = True, with_task: bool = True) -> None:
    """Run one pinned sweep with the code path of ``python -m bench run`` (compose + run_job), one job per method.

    ``with_task``: add ``task=NAME`` (the sweep's ``task``) to every run; False where the task is unavailable.
    """
    from bench.running.app import UserError, run_job

    task = smoke_task(cfg) if with_task else None

    for method, rates in cfg["methods"].items():
        overrides = [
            f"method={method}",
            f"dataset={cfg['dataset']}",
            f"method.rates={_override_value(rates)}",
            f"results_dir={_override_value(str(results_dir))}",
            "progress=false",
            "resume=false",
        ]
        if cfg.get("metrics"):
            overrides.append(f"metrics={_override_value(list(cfg['metrics']))}")
        if "limit" in cfg:
            overrides.append(f"limit={_override_value(cfg['limit'])}")
        if "workers" in cfg:
            overrides.append(f"workers={int(cfg['workers'])}")
        if task:
            overrides.append(f"task={task}")
        job = _compose(cfg, overrides)
        sink = io.StringIO()
        try:
            with contextlib.redirect_stdout(sink) if quiet else contextlib.nullcontext():
                run_job(job)
        except UserError as exc:
            raise CheckError(f"smoke run of {method!r} on {cfg['dataset']!r} failed: {exc}") from None


# ---------------------------------------------------------------------------------------------------------------
# comparing


def _number(value: Any) -> float | None:
    if value is None:
        return math.nan  # the store writes NaN as null
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return "null" if value is None else str(value)


def compare(
    golden: Mapping[str, dict[str, Any]],
    fresh: Mapping[str, dict[str, Any] | None],
    overrides: Mapping[str, Tolerance] | None = None,
    skip_tasks: Sequence[str] = (),
    dataset: str = "",
) -> tuple[list[Drift], int, list[str]]:
    """Drifted rows, the count of numbers compared, and notes (keys the golden record does not pin).

    ``skip_tasks``: tasks that could not run here; their keys are not compared (every other golden key still is).
    ``dataset`` labels the drifted rows and notes.
    """
    where = f"{dataset}/" if dataset else ""
    overrides = overrides or {}
    drifts: list[Drift] = []
    notes: list[str] = []
    compared = 0
    for method, gdoc in golden.items():
        ndoc = fresh.get(method)
        if ndoc is None:
            drifts.append(Drift(method, "—", "(results)", "present", "missing", "", "", dataset))
            continue
        gres, nres = gdoc["results"], ndoc["results"]
        g_rates = [str(r) for r in gres.get("rate", range(len(gres.get("bpp", []))))]
        n_rates = [str(r) for r in nres.get("rate", range(len(nres.get("bpp", []))))]
        keys = [
            k
            for k in gres
            if k != "rate" and not k.endswith(IGNORED_SUFFIX) and not any(is_task_key(k, t) for t in skip_tasks)
        ]
        extra = sorted(k for k in nres if k not in gres and k != "rate" and not k.endswith(IGNORED_SUFFIX))
        if extra:
            notes.append(f"{where}{method}: keys not in the golden record (not compared): {', '.join(extra)}")
        for i, rate in enumerate(g_rates):
            if rate not in n_rates:
                drifts.append(Drift(method, rate, "(rate point)", "present", "missing", "", "", dataset))
                continue
            j = n_rates.index(rate)
            for key in keys:
                gvals = gres[key]
                if not isinstance(gvals, list):
                    continue  # per-class dicts and the like: not per-rate numbers
                tol = tolerance_for(key, overrides)
                nvals = nres.get(key)
                g = gvals[i] if i < len(gvals) else None
                n = nvals[j] if isinstance(nvals, list) and j < len(nvals) else "missing"
                gnum, nnum = _number(g), _number(n)
                compared += 1
                if gnum is None or nnum is None:
                    if g != n:
                        drifts.append(Drift(method, rate, key, _fmt(g), _fmt(n), "", str(tol), dataset))
                    continue
                if not tol.ok(gnum, nnum):
                    diff = nnum - gnum if math.isfinite(nnum - gnum) else math.nan
                    drifts.append(Drift(method, rate, key, _fmt(g), _fmt(n), f"{diff:+.3e}", str(tol), dataset))
    return drifts, compared, notes


def drift_table(drifts: Sequence[Drift]) -> str:
    """One line per drifted number: dataset, method, rate, metric, golden, new, diff, tolerance."""
    header = ("dataset", "method", "rate", "metric", "golden", "new", "diff", "tolerance")
    rows = [header] + [tuple(str(getattr(d, k)) for k in header) for d in drifts]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows)


def version_changes(
    golden: Mapping[str, dict[str, Any]], fresh: Mapping[str, dict[str, Any] | None] | None = None
) -> list[str]:
    """Versions that differ from the golden record's (likely causes of drift).

    Python packages: the record's against this environment. Codec libraries (a results file's
    ``meta.codec_versions``, e.g. PyAV and the FFmpeg it bundles, whose x264 writes the H.264 bytes): each golden
    file's against the fresh file of the same key.
    """
    now = provenance.package_versions()
    seen: dict[str, str] = {}
    for doc in golden.values():
        meta = doc.get("meta") or {}
        versions = (meta.get("provenance") or {}).get("versions") or {}
        seen.update({str(k): str(v) for k, v in versions.items()})
    out = [f"{k} {v} -> {now.get(k, 'absent')}" for k, v in sorted(seen.items()) if now.get(k) != v]
    for key, doc in golden.items():
        new_doc = (fresh or {}).get(key)
        if new_doc is None:
            continue
        old = (doc.get("meta") or {}).get("codec_versions") or {}
        new = (new_doc.get("meta") or {}).get("codec_versions") or {}
        for lib in sorted(set(old) | set(new)):
            if str(old.get(lib, "absent")) != str(new.get(lib, "absent")):
                out.append(f"{key} {lib} {old.get(lib, 'absent')} -> {new.get(lib, 'absent')}")
    return out


# ---------------------------------------------------------------------------------------------------------------
# updating


def _unlocate(value: Any, weights: str | None) -> Any:
    """``value`` with absolute paths made machine-free: ``$HMC_BENCH_WEIGHTS/...`` or ``<local>/NAME``."""
    if isinstance(value, dict):
        return {k: _unlocate(v, weights) for k, v in value.items()}
    if isinstance(value, list):
        return [_unlocate(v, weights) for v in value]
    if isinstance(value, str) and value.startswith(("/", "~")) and "\n" not in value:
        path = Path(value)
        if weights and path.is_relative_to(weights):
            return "$HMC_BENCH_WEIGHTS/" + path.relative_to(weights).as_posix()
        return "<local>/" + path.name
    return value


def sanitize(doc: dict[str, Any]) -> dict[str, Any]:
    """What the golden record keeps: numbers, config, code version; not timings, host, row or local file paths."""
    out = json.loads(json.dumps(doc))
    out["results"] = {k: v for k, v in out["results"].items() if not k.endswith(IGNORED_SUFFIX)}
    meta = out.get("meta")
    if isinstance(meta, dict):
        meta.pop("rows", None)
        if isinstance(meta.get("config"), dict):  # e.g. a task's resolved model path under HMC_BENCH_WEIGHTS
            weights = os.environ.get("HMC_BENCH_WEIGHTS")
            meta["config"] = _unlocate(meta["config"], weights)
        prov = meta.get("provenance")
        if isinstance(prov, dict):
            for key in ("host", "platform"):
                prov.pop(key, None)
    return out


def write_golden(
    baseline: Path,
    results: Sequence[tuple[dict[str, Any], Mapping[str, dict[str, Any] | None]]],
    reason: str,
    drifts: list[Drift],
    added: Sequence[str] = (),
) -> None:
    """Rewrite the golden results of every (sweep, fresh results) pair and append why to CHANGES.md and history.jsonl.

    ``added``: ``dataset/method`` results new to the record (nothing to compare them with).
    """
    missing = [f"{sweep['dataset']}/{m}" for sweep, fresh in results for m, d in fresh.items() if d is None]
    if missing:
        raise CheckError(f"cannot update: no fresh results for {', '.join(missing)}")
    keep = set()
    for sweep, fresh in results:
        folder = baseline / str(sweep["dataset"])
        for method, doc in fresh.items():
            path = folder / f"{method}.json"
            atomic_write_text(path, json.dumps(sanitize(doc), indent=2, allow_nan=False) + "\n")
            keep.add(path)
    for stale in baseline.glob("*/*.json"):
        if stale not in keep:
            stale.unlink()
    git = provenance.git_state()
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    commit = (git.get("commit") or "unknown")[:12] + ("+dirty" if git.get("dirty") else "")
    entry = {
        "time": now,
        "commit": git.get("commit"),
        "dirty": git.get("dirty"),
        "reason": reason,
        "sweeps": [
            {"dataset": s["dataset"], "methods": {m: list(r) for m, r in s["methods"].items()}} for s, _ in results
        ],
        "added": list(added),
        "drifted": len(drifts),
        "changes": [asdict(d) for d in drifts[:200]],
        "versions": provenance.package_versions(),
    }
    with (baseline / "history.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, sort_keys=True) + "\n")
    changes = baseline / "CHANGES.md"
    text = changes.read_text(encoding="utf-8") if changes.exists() else "# Golden record changes\n"
    text = text.rstrip("\n") + f"\n\n## {now} — commit {commit}\n\n{reason.strip()}\n"
    if added:
        text += f"\nAdded: {', '.join(added)}.\n"
    if drifts:
        text += f"\n{len(drifts)} value(s) changed:\n\n```\n{drift_table(drifts[:50])}\n```\n"
    atomic_write_text(changes, text)


# ---------------------------------------------------------------------------------------------------------------
# command line


def skipped_tasks(sweeps: Sequence[dict[str, Any]], *, require: bool, update: bool, out) -> list[str]:
    """The sweeps' tasks that cannot run here (each reported once); an error when they are required."""
    skipped: list[str] = []
    checked: set[str] = set()
    for sweep in sweeps:
        task = smoke_task(sweep)
        if not task or task in checked:
            continue
        checked.add(task)
        why = task_unavailable_reason(sweep, task)
        if why:
            if require or update:
                flag = "--update" if update else "--require-tasks"
                raise CheckError(f"task {task} is required ({flag}) but cannot run here: {why}")
            print(f"task {task} skipped: {why}", file=out)
            skipped.append(task)
    return skipped


def _summary(sweep: dict[str, Any], skipped: Sequence[str]) -> str:
    methods = ", ".join(f"{m} ({len(r)} rates)" for m, r in sweep["methods"].items())
    task = smoke_task(sweep)
    with_task = "" if not task else (f"; task {task} not compared" if task in skipped else f"; task {task}")
    return f"{sweep['dataset']}: {methods}{with_task}"


def check(
    baseline: Path,
    *,
    results: Path | None = None,
    tolerances: Sequence[str] = (),
    update: bool = False,
    reason: str | None = None,
    keep_results: Path | None = None,
    require_tasks: bool = False,
    out=sys.stdout,
) -> int:
    """Run the drift gate; returns the exit status (0 ok or updated, 1 drift, 2 error)."""
    if update and not (reason and reason.strip()):
        raise CheckError("--update needs --reason '...': say why the golden numbers change")
    sweeps = load_config(baseline)["sweeps"]
    command_line = dict(parse_tolerance(t) for t in tolerances)
    limits = [{**dict(parse_tolerance(f"{k}={v}") for k, v in s["tolerances"].items()), **command_line} for s in sweeps]
    golden = [golden_documents(baseline, sweep, missing_ok=update) for sweep in sweeps]
    skipped = [] if results is not None else skipped_tasks(sweeps, require=require_tasks, update=update, out=out)

    if results is not None:
        if not results.is_dir():
            raise CheckError(f"{results}: no such results folder")
        fresh = [fresh_documents(results, sweep) for sweep in sweeps]
    else:
        with tempfile.TemporaryDirectory(prefix="bench-check-") as tmp:
            root = keep_results or Path(tmp)
            fresh = []
            for sweep in sweeps:
                run_smoke(sweep, root, with_task=smoke_task(sweep) not in skipped)
                fresh.append(fresh_documents(root, sweep))

    drifts: list[Drift] = []
    compared = 0
    for sweep, gdocs, fdocs, limit in zip(sweeps, golden, fresh, limits):
        task = smoke_task(sweep)
        if update and task:
            lacking = [m for m, d in fdocs.items() if d and not any(is_task_key(k, task) for k in d["results"])]
            if lacking:
                raise CheckError(f"cannot update: the results of {', '.join(lacking)} have no {task} numbers")
        moved, count, notes = compare(gdocs, fdocs, limit, skip_tasks=skipped, dataset=str(sweep["dataset"]))
        drifts += moved
        compared += count
        for note in notes:
            print(f"note: {note}", file=out)
    if update:
        added = [f"{s['dataset']}/{m}" for s, g in zip(sweeps, golden) for m in s["methods"] if m not in g]
        write_golden(baseline, list(zip(sweeps, fresh)), reason or "", drifts, added)
        new = f"; added {', '.join(added)}" if added else ""
        print(f"golden record {baseline} updated ({len(drifts)} value(s) changed{new}): {reason}", file=out)
        return 0
    if drifts:
        print(f"DRIFT: {len(drifts)} of {compared} value(s) differ from the golden record {baseline}", file=out)
        print(drift_table(drifts), file=out)
        all_golden = {f"{s['dataset']}/{m}": d for s, g in zip(sweeps, golden) for m, d in g.items()}
        all_fresh = {f"{s['dataset']}/{m}": d for s, f in zip(sweeps, fresh) for m, d in f.items()}
        changed = version_changes(all_golden, all_fresh)
        if changed:
            print("versions differ from the golden record: " + "; ".join(changed), file=out)
        print("If the change is intended: python -m bench check --baseline ... --update --reason '...'", file=out)
        return 1
    summary = "; ".join(_summary(s, skipped) for s in sweeps)
    print(f"no drift: {compared} value(s) within tolerance; {summary}", file=out)
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench check",
        description="drift gate: re-run the pinned smoke sweeps of a golden record and compare the numbers",
    )
    parser.add_argument("--baseline", required=True, help="golden record folder, e.g. results/golden/smoke")
    parser.add_argument("--results", default=None, help="compare these results instead of re-running the sweep")
    parser.add_argument(
        "--tolerance",
        action="append",
        default=[],
        metavar="METRIC=[abs:|rel:]VALUE",
        help="per-metric tolerance (repeatable), e.g. psnr-rgb=1e-4 or bpp=rel:1e-6",
    )
    parser.add_argument("--update", action="store_true", help="rewrite the golden record with the new numbers")
    parser.add_argument("--reason", default=None, help="why the golden numbers change (required with --update)")
    parser.add_argument("--keep-results", default=None, help="run the sweep into this folder and keep it")
    parser.add_argument(
        "--require-tasks",
        action="store_true",
        help="fail (exit 2) when smoke.yaml's task network cannot run here instead of skipping its numbers",
    )
    args = parser.parse_args(argv)
    try:
        return check(
            Path(args.baseline),
            results=Path(args.results) if args.results else None,
            tolerances=args.tolerance,
            update=args.update,
            reason=args.reason,
            keep_results=Path(args.keep_results) if args.keep_results else None,
            require_tasks=args.require_tasks,
        )
    except CheckError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
