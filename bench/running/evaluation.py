"""From a task's stored predictions to metrics per rate point.

The reference is the dataset's ground truth when it has labels of the task's
kind (``ground_truth`` protocol), else the task network's own prediction on
the uncompressed image (``fidelity`` protocol). Every result says which.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from bench.datasets.base import ImageDataset, Sample
from bench.running.keys import RowStamp
from bench.running.runner import TaskLogs
from bench.running.store import exact_mean
from bench.tasks.base import FIDELITY, GROUND_TRUTH


def _ok(table: pd.DataFrame) -> pd.DataFrame:
    if table.empty:
        return table
    return table[table["error"].isna()] if "error" in table else table


def count_totals(rows: pd.DataFrame, counters: tuple[str, ...]) -> dict[str, int]:
    """Each of the task's ``counters`` summed over the rows' ``counts`` (0 where a row has none)."""
    totals = dict.fromkeys(counters, 0)
    if rows.empty or "counts" not in rows:
        return totals
    for counts in rows["counts"]:
        if isinstance(counts, dict):
            for name in counters:
                totals[name] += int(counts.get(name, 0))
    return totals


def evaluate_task(
    logs: TaskLogs, dataset: ImageDataset, samples: list[Sample], rates: list[Any], stamp: RowStamp | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per-rate table (``bpp@<task>``, ``<task>/<metric>``, ``<task>/<headline>/<class>``, counts) and meta.

    Metrics at a rate point are computed over the samples with a prediction
    there (measured on today's content and weights: ``stamp``); ``<task>/n``
    says how many, so a partial evaluation is visible, and
    ``<task>/<counter>`` sums the task's per-image counters (e.g. detections
    dropped for a NaN box: ``<task>/dropped_nonfinite``).
    """
    task = logs.task
    wanted = {s.id for s in samples}
    reference_rows = _ok(logs.reference.table(RowStamp(stamp.contents) if stamp is not None else None))
    uncompressed = (
        {r["sample"]: r["prediction"] for _, r in reference_rows.iterrows() if r["sample"] in wanted}
        if not reference_rows.empty
        else {}
    )
    same_labels = getattr(task, "label_space", None) in (None, getattr(dataset, "label_space", None))
    if task.kind in dataset.label_kinds and same_labels:
        protocol = GROUND_TRUTH
        references = dataset.targets(task.kind, [s for s in samples])
    else:
        protocol = FIDELITY
        references = {sid: task.reference_from_prediction(p) for sid, p in uncompressed.items()}
    rows = logs.predictions.table(stamp)
    rows = rows[rows["sample"].isin(wanted)] if not rows.empty else rows
    ok = _ok(rows)
    out = []
    for rate in rates:
        at_rate = ok[ok["rate"].astype(str) == str(rate)] if not ok.empty else ok
        # sorted: evaluators see the same order however the rows were written
        preds = dict(sorted((r["sample"], r["prediction"]) for _, r in at_rate.iterrows() if r["sample"] in references))
        entry: dict[str, Any] = {"rate": rate, f"{task.name}/n": len(preds)}
        entry[f"bpp@{task.name}"] = exact_mean(at_rate["bpp"]) if len(at_rate) else math.nan
        entry.update({f"{task.name}/{k}": v for k, v in count_totals(at_rate, task.counters).items()})
        if preds:
            # a task whose references form a database (retrieval) gets all of them, queries or not
            refs = references if getattr(task, "reference_database", False) else {sid: references[sid] for sid in preds}
            scores = task.evaluate(preds, refs)
            headline = task.metrics[0]
            per_class = task.per_class_scores(preds, refs)
            scores.update({f"{headline}/{name}": value for name, value in per_class.items()})
        else:
            scores = {m: math.nan for m in task.metrics}
        entry.update({f"{task.name}/{k}": v for k, v in scores.items()})
        out.append(entry)
    meta: dict[str, Any] = {
        "name": task.name,
        "kind": task.kind,
        "protocol": protocol,
        "description": task.describe(),
        "metrics": list(task.metrics),
        "headline": f"{task.name}/{task.metrics[0]}",
        "versions": task.versions(),
        "failures": 0 if rows.empty else int(len(rows) - len(ok)),
        "counters": list(task.counters),
    }
    if task.counters:
        on_wanted = (
            reference_rows[reference_rows["sample"].isin(wanted)] if not reference_rows.empty else reference_rows
        )
        meta["uncompressed_counts"] = count_totals(on_wanted, task.counters)
    if protocol == GROUND_TRUTH and uncompressed:
        refs = {sid: references[sid] for sid in uncompressed if sid in references}
        meta["uncompressed"] = task.evaluate({sid: uncompressed[sid] for sid in refs}, refs)
    return pd.DataFrame(out), meta
