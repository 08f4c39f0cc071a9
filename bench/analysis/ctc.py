"""``python -m bench export-ctc``: a run's numbers in the layouts MPEG FCM and JPEG AI contributions are made of.

Two layouts, each a CSV written from one results JSON (one method on one dataset):

**MPEG FCM common test conditions** (``<method>.fcm.csv``): the CSV that CompressAI-Vision's
``gen_mpeg_cttc_csv.py`` writes and the FCM BD-rate templates take. Columns

    Dataset, qp, avg_bpp | bitrate (kbps), end_accuracy, y_psnr

one row per rate point and per sequence or group: the rate point's parameter in ``qp`` (a QP, a JPEG quality, a
learned codec's quality, a target bpp under ``rate_target``); the rate the machine task was charged (its streams
only, ``bpp@<task>``): mean bpp over images for an image dataset, for clips ``bitrate (kbps)`` = all bits over
all seconds; ``end_accuracy`` the task's headline metric in percent (mAP, mIoU, top-1 x 100); ``y_psnr`` the
human target's luma PSNR where the run measured ``psnr-y``, else empty, as FCM leaves it. Rows come in the
template's order: for clips one row per sequence (the clip's stem), then one per class group (the clip's folder,
e.g. the UCF101 action), then the whole dataset; for images one row per folder group when the sample ids have
folders (Cityscapes cities), then the whole dataset. A group's task metric is evaluated again over its own samples
from the run's stored predictions (the ground truth needs the dataset; nothing is re-encoded or re-predicted); the
whole dataset's is the results JSON's.

**JPEG AI reporting** (``<method>.jpeg-ai.csv``): one row per image and rate point, as JPEG AI's reporting sheets
take them: ``Image, Rate point, Target bpp, bpp, MS-SSIM, VIF, FSIM, NLPD, IW-SSIM, VMAF, PSNR-HVS, PSNR-Y,
Enc time [s], Dec time [s]``; the seven metrics in JPEG AI's table order, computed as
:mod:`bench.metrics.jpeg_ai` documents; ``bpp`` is every byte the human decoder reads; a metric the run did not
measure is an empty column and is named on stderr (``metrics=jpeg-ai`` measures all seven).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from bench.datasets.base import DatasetUnavailable
from bench.metrics.jpeg_ai import JPEG_AI_METRICS
from bench.running.evaluation import evaluate_task
from bench.running.recorded import RecordedRun, RunFileError
from bench.running.runner import TaskLogs
from bench.running.store import exact_mean

log = logging.getLogger(__name__)

FCM_IMAGE_RATE = "avg_bpp"
FCM_CLIP_RATE = "bitrate (kbps)"
#: JPEG AI's reporting columns after the seven metrics: luma PSNR and the coding times
JPEG_AI_TAIL = (("psnr-y", "PSNR-Y"), ("encoding_time", "Enc time [s]"), ("decoding_time", "Dec time [s]"))
FORMATS = ("fcm", "jpeg-ai")


@dataclass(frozen=True)
class Group:
    """Rows of the FCM layout that share one rate and one task metric: a sequence, a class group, the dataset."""

    name: str
    samples: tuple[str, ...]


def sequence_groups(sample_ids: Sequence[str], dataset_name: str, clips: bool) -> list[Group]:
    """The FCM row groups of a run's samples, in the template's order (sequences, class groups, the dataset)."""
    ids = sorted(sample_ids)
    groups: list[Group] = []
    if clips:
        groups += [Group(PurePosixPath(s).stem, (s,)) for s in ids]
    folders: dict[str, list[str]] = {}
    for s in ids:
        if "/" in s:
            folders.setdefault(s.split("/", 1)[0], []).append(s)
    if len(folders) > 1 or (folders and len(next(iter(folders.values()))) < len(ids)):
        groups += [Group(name, tuple(members)) for name, members in sorted(folders.items())]
    groups.append(Group(dataset_name, tuple(ids)))
    return groups


def _clip_kbps(rows: pd.DataFrame) -> float:
    """All bits over all seconds (each clip's duration from its own bytes and kbps)."""
    seconds = [b * 8.0 / (k * 1000.0) for b, k in zip(rows["bytes"], rows["kbps"]) if k and not math.isnan(k)]
    if not seconds or len(seconds) != len(rows):
        return math.nan
    return float(rows["bytes"].sum()) * 8.0 / (math.fsum(seconds) * 1000.0)


def _pick_task(run: RecordedRun, task: str | None) -> tuple[Any, Any, Any]:
    tasks = run.tasks()
    if not tasks:
        raise RunFileError(f"{run.json_path}: the run has no machine task; the FCM layout reports a task metric")
    names = [t.name for t, _, _ in tasks]
    if task is None:
        if len(tasks) > 1:
            raise RunFileError(f"{run.json_path}: the run has tasks {names}; name one with --task")
        return tasks[0]
    for entry in tasks:
        if entry[0].name == task:
            return entry
    raise RunFileError(f"{run.json_path}: no task {task!r} in this run (it has {names})")


def fcm_table(run: RecordedRun, task: str | None = None, groups: bool = True) -> pd.DataFrame:
    """The run in the FCM CTC layout (module docstring); ``groups=False`` gives only the whole-dataset rows."""
    network, predictions, reference = _pick_task(run, task)
    stamp = run.stamp()
    results = run.document["results"]
    rates = run.rates
    headline = (run.meta.get("tasks") or {}).get(network.name, {}).get(
        "headline"
    ) or f"{network.name}/{network.metrics[0]}"
    rows = predictions.table(stamp)
    if rows.empty:
        raise RunFileError(f"{run.json_path}: no prediction rows of task {network.name!r} belong to this run")
    rows = rows[rows["error"].isna()] if "error" in rows else rows
    clips = "kbps" in rows.columns and rows["kbps"].notna().any()
    human = run.rows.table(stamp)
    dataset_name = str(run.meta.get("dataset") or run.meta["config"]["dataset"].get("name"))
    plan = sequence_groups(list(stamp.contents), dataset_name, clips)
    if not groups:
        plan = plan[-1:]
    per_group_scores: dict[str, pd.DataFrame] = {}
    if len(plan) > 1:
        try:
            dataset = run.dataset()
            all_samples = {s.id: s for s in dataset.samples() if s.id in stamp.contents}
        except DatasetUnavailable as exc:
            raise RunFileError(
                f"{run.json_path}: the per-sequence and per-group rows evaluate the task again over each group and "
                f"need the run's dataset, which is not here ({exc}); --no-groups writes the whole-dataset rows only"
            ) from exc
        logs = TaskLogs(network, predictions, reference)
        for g in plan[:-1]:
            table, _ = evaluate_task(
                logs, dataset, [all_samples[s] for s in g.samples if s in all_samples], rates, stamp
            )
            per_group_scores[g.name] = table
    out = []
    for g in plan:
        mine = rows[rows["sample"].isin(g.samples)]
        theirs = human[human["sample"].isin(g.samples)] if not human.empty else human
        for i, rate in enumerate(rates):
            at = mine[mine["rate"].astype(str) == str(rate)]
            if g.name in per_group_scores:
                accuracy = per_group_scores[g.name][headline].iloc[i]
            else:
                accuracy = results[headline][i]
            entry: dict[str, Any] = {"Dataset": g.name, "qp": rate}
            if clips:
                entry[FCM_CLIP_RATE] = _clip_kbps(at) if len(at) else math.nan
            else:
                entry[FCM_IMAGE_RATE] = exact_mean(at["bpp"]) if len(at) else math.nan
            entry["end_accuracy"] = 100.0 * float(accuracy) if accuracy is not None else math.nan
            y = theirs[theirs["rate"].astype(str) == str(rate)] if not theirs.empty else theirs
            entry["y_psnr"] = exact_mean(y["psnr-y"], finite_only=True) if "psnr-y" in y and len(y) else ""
            out.append(entry)
    return pd.DataFrame(out)


def jpeg_ai_table(run: RecordedRun) -> tuple[pd.DataFrame, list[str]]:
    """The run in JPEG AI's reporting layout (module docstring) and the metrics it lacks."""
    stamp = run.stamp()
    rows = run.rows.table(stamp)
    if rows.empty:
        raise RunFileError(f"{run.json_path}: no rows belong to this run")
    rows = rows[rows["error"].isna()] if "error" in rows else rows
    columns = [(m.key, m.name) for m in JPEG_AI_METRICS] + list(JPEG_AI_TAIL)
    missing = [name for key, name in columns if key not in rows.columns]
    order = {str(r): i for i, r in enumerate(run.rates)}
    rows = rows.assign(_order=rows["rate"].astype(str).map(order)).sort_values(["sample", "_order"])
    table = pd.DataFrame(
        {
            "Image": rows["sample"].to_numpy(),
            "Rate point": rows["rate"].to_numpy(),
            "Target bpp": rows["target_bpp"].to_numpy() if "target_bpp" in rows else "",
            "bpp": rows["bpp_total"].to_numpy() if "bpp_total" in rows else rows["bpp"].to_numpy(),
        }
    )
    for key, name in columns:
        table[name] = rows[key].to_numpy() if key in rows else ""
    return table, missing


def export(
    results: Sequence[str | Path],
    out_dir: str | Path,
    formats: Sequence[str] = FORMATS,
    task: str | None = None,
    groups: bool = True,
) -> list[Path]:
    """Write each results JSON in each layout to ``<out_dir>/<dataset>/<method>.<layout>.csv``; the paths written."""
    written = []
    for path in results:
        run = RecordedRun.load(path)
        folder = Path(out_dir) / str(run.meta.get("dataset") or run.json_path.parent.name)
        folder.mkdir(parents=True, exist_ok=True)
        method = run.meta.get("method") or run.json_path.stem
        for layout in formats:
            target = folder / f"{method}.{layout}.csv"
            if layout == "fcm":
                if not run.meta["config"].get("tasks") and len(formats) > 1:
                    print(
                        f"{run.json_path}: no machine task, so no FCM layout (it reports a task metric)",
                        file=sys.stderr,
                    )
                    continue
                table = fcm_table(run, task, groups)
            elif layout == "jpeg-ai":
                table, missing = jpeg_ai_table(run)
                if missing:
                    print(
                        f"{run.json_path}: not measured, left empty in {target.name}: {', '.join(missing)} "
                        "(run with metrics=jpeg-ai for JPEG AI's seven)",
                        file=sys.stderr,
                    )
            else:
                raise ValueError(f"unknown layout {layout!r}; known: {', '.join(FORMATS)}")
            table.to_csv(target, index=False, float_format="%.6f")
            written.append(target)
    return written


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench export-ctc",
        description="write results JSONs as MPEG FCM CTC and JPEG AI reporting CSVs",
    )
    parser.add_argument("results", nargs="+", help="results JSONs (<results_dir>/<dataset>/<method>.json)")
    parser.add_argument("--out", default="reports/ctc", help="folder for <dataset>/<method>.<layout>.csv")
    parser.add_argument("--format", choices=[*FORMATS, "all"], default="all", help="which layout (default: both)")
    parser.add_argument("--task", default=None, help="the task of the FCM layout when a run has several")
    parser.add_argument(
        "--no-groups", action="store_true", help="FCM: whole-dataset rows only (no dataset needed on this machine)"
    )
    args = parser.parse_args(list(argv))
    formats = FORMATS if args.format == "all" else (args.format,)
    try:
        paths = export(args.results, args.out, formats, args.task, not args.no_groups)
    except RunFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for p in paths:
        print(p)
    return 0
