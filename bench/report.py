"""``python -m bench report``: RD plots, relative-difference plots and BD tables from results folders.

What it reads. Every ``<results>/<dataset>/<method>.json`` (our superset of CompressAI's results format) and, with
``--reference``, CompressAI's published results JSONs, drawn as reference curves and included in the BD tables.

Conventions of a results JSON (the runner writes them; see ``bench.running.store.compressai_json``):

* **Quality axes** are the keys of ``results`` holding one number per rate point that :func:`bench.bdrate.quality_axis`
  knows: ``psnr*``, ``*ms-ssim*``, and task metrics ``<task>/<metric>`` (``detection/mAP``, ``segmentation/mIoU``,
  ``classification/top-1``...) given as fractions. ``bpp*``, ``rate``, ``*_time``, ``<task>/n`` and the clip columns
  ``kbps`` and ``frames`` (video: bpp is over frames x pixels) are not quality axes; other keys are listed as ignored
  in the notes. ``ms-ssim-db-*`` (published files) is turned back into ``ms-ssim-*`` so both meet on one axis; BD and
  plots show MS-SSIM in dB, task metrics in percentage points.
* **Rate of a task metric**: a machine target may cost other bits than the human one (MBID, MBHD). The rate axis of
  ``<task>/<metric>`` is ``results["bpp@<task>"]``; ``meta.rate_keys = {metric: results key}`` overrides; else ``bpp``.
* **Per-class results** (a simple convention for task adapters): ``results["<task>/<metric>/<class>"]`` (one value per
  rate point, e.g. ``segmentation/IoU/road``), or nested ``results.per_class = {"<task>/<metric>": {class: [...]}}``;
  on the rate axis of ``<task>``. The report adds a per-class BD-rate table against the anchor's curve of that class.
  The joint views of the leaderboard use each task's headline metric (``meta.tasks[task].headline``) when given.
* ``null`` values (NaN in the store) are kept as NaN: they are left out of plots and make BD say which points.
* **Task counters** (``meta.tasks[task].counters``, e.g. ``<task>/dropped_nonfinite``: detections dropped for a
  NaN/inf box or score) are counts per rate point, not quality axes: non-zero ones are listed under "Task counts".

What stands behind a figure (the runner records it in ``meta`` and per rate point):

* **Complete runs only, by default.** An entry is compared iff ``meta.complete`` and no failed rows (a file written
  before ``complete`` existed: no failures and no shard). The others (a shard, missing rows, failures) are listed with
  the reason (``partial: shard 0/12, 2 of 24 samples``, ``3 failed rows``) and get no BD figure; ``--include-partial``
  compares them too, marked ``(partial)`` in tables, legends and the CSV.
* **Same samples.** Two entries complete on the same ``meta.sample_set.digest`` are compared on their own curves.
  Otherwise (another sample set, a partial run) the means over samples of both (bpp, bpp_total, PSNR, MS-SSIM...)
  are recomputed from their rows logs (``meta.rows``) over the samples both measured at every rate point, with
  :func:`bench.running.store.aggregate`, and the cell says ``over the N samples both measured``; a task metric
  computed over a dataset (mAP, mIoU) cannot be, and its cell says ``not comparable``. Files without a digest
  count as the same samples when their sample counts agree (said in the notes).
* **Per-rate n** (``results.n``, ``n_failed``, ``n_undefined``, ``n_lossless``, ``<task>/n``) in ``rd-table.csv`` and
  the "Samples per rate point" table; lossless rows with the runner's PSNR rule in a footnote.
* **Total bits.** Where a method's ``bpp_total`` (every stream written) differs from its human ``bpp`` (MBID), a
  second BD table and ``rd-total-<metric>.png`` put every metric on ``bpp_total``; ``bd.csv`` says each figure's
  ``rate_axis``.

What it writes to ``--out``: ``report.md`` (BD tables, samples per point, plots, provenance with weight files),
``bd.csv`` (one row per dataset, metric, quantity, rate axis and method, with the reason when a BD figure could not
be computed), ``per-class-bd.csv`` when there are per-class results, and per dataset ``rd-table.csv``,
``rd-<metric>.png`` (methods as lines, line style by family, anchor dashed, references thin with crosses) and
``reldiff-<metric>.png`` (quality minus the anchor's over their common bpp range).

A BD figure that cannot be computed (non-monotone curve, too little overlap, one point, NaN) is a table cell with the
reason, never a crash; a results file that is not a results JSON is one error naming the file (exit 2).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.bdrate import DEFAULT_MIN_OVERLAP, BDError, bd_metric, bd_rate, quality_axis
from bench.metrics import registry
from bench.rdcurves import RDCurve
from bench.running.store import COUNTS, aggregate, atomic_write_text, results_rows
from bench.training.weights import budget_label

DEFAULT_ANCHOR = "jpeg"
#: anchors tried in order when none is asked for: JPEG for images, H.264 for video
DEFAULT_ANCHORS = (DEFAULT_ANCHOR, "h264")
FAMILIES = ("SBAR", "SBMD", "MBID", "MBHD")
#: line style by family (the anchor is always dashed)
FAMILY_STYLES: dict[str, Any] = {
    "SBAR": "-",
    "SBMD": "-.",
    "MBID": (0, (3, 1, 1, 1, 1, 1)),
    "MBHD": (0, (1, 1)),
}
ANCHOR_STYLE = "--"
#: rate and size columns of clips (``kbps``, mean ``frames`` per clip): not quality axes, not worth a note either
_NOT_QUALITY = {"rate", "per_class", "kbps", "frames"}
#: sub-folders of a results root that are not datasets (the drift gate's golden records live in results/golden)
SKIP_DIRS = {"golden"}
LABELS = {"psnr-rgb": "PSNR RGB", "ms-ssim-rgb": "MS-SSIM RGB"}


#: how BD figures are paired, said once on every report and leaderboard
SAME_SAMPLES_RULE = (
    "Each BD figure compares the samples both methods measured: the files' own curves when both are complete "
    "on the same sample set, else bpp and the quality means recomputed from both rows logs over the samples "
    "both measured (said in the cell); task metrics computed over a dataset (mAP, mIoU) cannot be recomputed "
    "that way and are marked not comparable."
)
TOTAL_BITS_NOTE = (
    "An MBID method sends the human and each task their own streams, so bpp and bpp@<task> each count one of "
    "them; on total bits the rate is every stream written, what a deployment serving both pays."
)


class ResultsError(ValueError):
    """A results file or folder that cannot be read; the message names it."""


# ---------------------------------------------------------------------------------------------------------------
# reading


#: per-rate sample counts the runner writes: shown, never quality axes
POINT_COUNTS = COUNTS
#: how the runner averages PSNR over a point with lossless rows (``bench.running.store.aggregate``), said where they
#: appear
LOSSLESS_RULE = (
    "a lossless row (identical images) keeps PSNR = inf; the point's PSNR averages the other samples "
    "and n_lossless counts the rows left out of that mean (bpp and MS-SSIM include them)"
)


@dataclass
class Entry:
    """One method's (or a reference's) curves on one dataset, with where they came from and what stands behind them."""

    name: str
    dataset: str
    path: Path
    reference: bool = False
    family: str | None = None
    bpp_source: str | None = None
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    curves: dict[str, RDCurve] = field(default_factory=dict)
    curve_errors: dict[str, str] = field(default_factory=dict)
    per_class: dict[str, dict[str, RDCurve]] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    #: task counters per rate point (``<task>/<counter>`` -> values), e.g. detections dropped as non-finite
    counts: dict[str, list[Any]] = field(default_factory=dict)
    #: ``results["rate"]``: the method's own rate-point labels (quality 10, QP 37, ...)
    rate_labels: list[Any] = field(default_factory=list)
    #: "video" when the results are over clips (``results["frames"]``: bpp over frames x pixels), else "image"
    media: str = "image"
    #: ``meta.complete``: every (sample, rate[, task]) row measured without error; None when the file predates it
    complete: bool | None = None
    #: failed rows: ``meta.failures`` (human rows) plus each task's ``failures``
    failures: int = 0
    #: ``meta.missing_rows``: (sample, rate) rows not measured without error, tasks included; None when not recorded
    missing_rows: int | None = None
    #: ``meta.shard`` (``"i/n"``) when the file was written by one shard of a sweep
    shard: str | None = None
    #: ``meta.samples``: the size of the sample set the run was asked for
    samples: int | None = None
    #: ``meta.sample_set.digest`` and ``contents`` (sample id -> content digest): which samples, by content
    sample_digest: str | None = None
    sample_contents: dict[str, str] = field(default_factory=dict)
    #: tasks whose rows are not all measured (``meta.tasks[t].complete`` false)
    incomplete_tasks: list[str] = field(default_factory=list)
    #: samples behind each rate point: ``n``, ``n_failed``, ``n_undefined``, ``n_lossless`` and ``<task>/n``
    point_counts: dict[str, list[int | None]] = field(default_factory=dict)
    #: ``meta.weights``: every weight file of every rate point (SHA-256, origin, training record)
    weights: list[dict[str, Any]] = field(default_factory=list)
    #: the same curves with ``results.bpp_total`` (every stream written) as the rate: the total-bits view
    total_curves: dict[str, RDCurve] = field(default_factory=dict)
    #: why there are no total-bits curves (an MBID file without ``bpp_total``), else None
    total_error: str | None = None
    #: the results key each curve's rate comes from (``bpp``, ``bpp@<task>``, or ``meta.rate_keys``)
    rate_keys: dict[str, str] = field(default_factory=dict)

    def has(self, metric: str) -> bool:
        return metric in self.curves or metric in self.curve_errors

    @property
    def results_root(self) -> Path:
        """The results folder of the file (``<root>/<dataset>/<method>.json``): ``meta.rows`` is relative to it."""
        return self.path.parent.parent

    def not_ranked_reason(self) -> str | None:
        """Why the entry is not ranked by default (``partial: shard 0/12, 2 of 24 samples``, ``3 failed rows``).

        Ranked: complete (``meta.complete``) and without failures. A file that predates ``meta.complete`` is ranked
        when it records no failures and no shard.
        """
        if self.reference:
            return None
        reasons = []
        unmeasured = None if self.missing_rows is None else max(0, self.missing_rows - self.failures)
        if self.shard or (self.complete is False and (unmeasured is None or unmeasured > 0 or not self.failures)):
            detail = [f"shard {self.shard}"] if self.shard else []
            measured = self.measured_samples()
            if measured is not None and self.samples is not None and measured < self.samples:
                detail.append(f"{measured} of {self.samples} samples")
            elif unmeasured:
                detail.append(f"{unmeasured} rows missing")
            if self.incomplete_tasks:
                detail.append(f"task {', '.join(self.incomplete_tasks)} incomplete")
            reasons.append("partial" + (f": {', '.join(detail)}" if detail else ""))
        if self.failures:
            reasons.append(f"{self.failures} failed row{'s' if self.failures != 1 else ''}")
        return "; ".join(reasons) or None

    @property
    def rankable(self) -> bool:
        return self.not_ranked_reason() is None

    def measured_samples(self) -> int | None:
        """Samples measured at some rate point (``n`` + ``n_undefined``, the largest over points); None when unknown."""
        n = self.point_counts.get("n")
        if not n or any(v is None for v in n):
            return None
        undefined = self.point_counts.get("n_undefined") or [0] * len(n)
        return max(int(a) + int(b or 0) for a, b in zip(n, undefined))

    def provenance(self) -> dict[str, Any]:
        """Commit, config hash, versions and time, as far as the file records them."""
        prov = self.meta.get("provenance") if isinstance(self.meta.get("provenance"), dict) else {}
        git = prov.get("git") if isinstance(prov.get("git"), dict) else {}
        versions = prov.get("versions") if isinstance(prov.get("versions"), dict) else {}
        codec = self.meta.get("codec_versions") if isinstance(self.meta.get("codec_versions"), dict) else {}
        return {
            "commit": git.get("commit"),
            "dirty": git.get("dirty"),
            "config_hash": self.meta.get("config_hash"),
            "versions": {str(k): str(v) for k, v in versions.items()},
            "codec_versions": {str(k): str(v) for k, v in codec.items()},
            "time": prov.get("time"),
        }


def _is_number_list(value: Any) -> bool:
    return isinstance(value, list) and all(v is None or isinstance(v, (int, float)) for v in value)


def _rate_key(metric: str, results: dict[str, Any], meta: dict[str, Any]) -> str:
    keys = meta.get("rate_keys") if isinstance(meta.get("rate_keys"), dict) else {}
    if metric in keys:
        return str(keys[metric])
    task = metric.split("/", 1)[0] if "/" in metric else None
    return f"bpp@{task}" if task and f"bpp@{task}" in results else "bpp"


def _curve(name: str, path: Path, results: dict[str, Any], rate_key: str, values: Any, metric: str, **kw) -> RDCurve:
    if rate_key not in results:
        raise ValueError(f"{path}: curve {name!r} ({metric}): rate key {rate_key!r} is not in results")
    if not _is_number_list(results[rate_key]) or not _is_number_list(values):
        raise ValueError(f"{path}: curve {name!r} ({metric}): {rate_key} and {metric} must be lists of numbers")
    try:
        return RDCurve(name, np.array(results[rate_key], dtype=float), np.array(values, dtype=float), metric, **kw)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def counter_keys(results: dict[str, Any], meta: dict[str, Any]) -> set[str]:
    """The ``results`` keys that are task counters (``meta.tasks[task].counters``; ``*/dropped_nonfinite`` always)."""
    tasks = meta.get("tasks") if isinstance(meta.get("tasks"), dict) else {}
    keys = {
        f"{task}/{counter}"
        for task, info in tasks.items()
        if isinstance(info, dict) and isinstance(info.get("counters"), list)
        for counter in info["counters"]
    }
    return (keys | {k for k in results if k.endswith("/dropped_nonfinite")}) & set(results)


def parse_document(doc: Any, path: Path, dataset: str, *, reference: bool = False, name: str | None = None) -> Entry:
    """Curves of one results JSON; a file-level problem raises :class:`ResultsError`, a curve's one is recorded."""
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), dict):
        raise ResultsError(f"{path}: no 'results' object; not a CompressAI-format results JSON")
    results: dict[str, Any] = doc["results"]
    if "bpp" not in results:
        have = ", ".join(sorted(results)) or "none"
        raise ResultsError(f"{path}: results have no 'bpp' (keys: {have})")
    meta = doc.get("meta") if isinstance(doc.get("meta"), dict) else {}
    label = name or str(doc.get("name") or path.stem)
    entry = Entry(
        name=label,
        dataset=dataset,
        path=path,
        reference=reference,
        family=meta.get("family"),
        bpp_source=meta.get("bpp_source"),
        description=str(doc.get("description") or ""),
        meta=meta,
    )
    src = str(path)
    per_class: dict[str, dict[str, Any]] = {}
    nested = results.get("per_class")
    if nested is not None and not (isinstance(nested, dict) and all(isinstance(v, dict) for v in nested.values())):
        entry.curve_errors["per_class"] = f"{path}: results.per_class must map metric -> {{class: [values]}}"
    elif nested:
        per_class.update({str(m): dict(v) for m, v in nested.items()})
    counters = counter_keys(results, meta)
    entry.rate_labels = list(results["rate"]) if isinstance(results.get("rate"), list) else []
    entry.media = "video" if "frames" in results else "image"
    _read_record(entry, results, meta)
    for key in list(results):
        if key in POINT_COUNTS or key.endswith("/n"):
            if _is_number_list(results[key]):
                entry.point_counts[key] = [None if v is None or v != v else int(v) for v in results[key]]
            continue
        if key in _NOT_QUALITY or key.startswith("bpp") or key.endswith("_time"):
            continue
        if key in counters:
            entry.counts[key] = list(results[key]) if isinstance(results[key], list) else [results[key]]
            continue
        values = results[key]
        if key.count("/") >= 2:  # <task>/<metric>/<class>
            task, name_, cls = key.split("/", 2)
            per_class.setdefault(f"{task}/{name_}", {})[cls] = values
            continue
        metric = key
        if "ms-ssim-db" in key:  # published dB values: back to [0, 1) so they meet our ms-ssim-* curves
            metric = key.replace("ms-ssim-db", "ms-ssim")
            if metric in results:
                continue
            if _is_number_list(values):
                values = [None if v is None else 1 - 10 ** (-v / 10) for v in values]
        try:
            quality_axis(metric)
        except BDError:
            entry.ignored.append(key)
            continue
        entry.rate_keys[metric] = _rate_key(metric, results, meta)
        try:
            entry.curves[metric] = _curve(
                label, path, results, entry.rate_keys[metric], values, metric, family=entry.family, source=src
            )
        except ValueError as exc:
            entry.curve_errors[metric] = str(exc)
    for metric, classes in per_class.items():
        try:
            quality_axis(metric)
        except BDError:
            entry.ignored.append(f"per-class {metric}")
            continue
        rate_key = _rate_key(metric, results, meta)
        for cls, values in classes.items():
            try:
                curve = _curve(f"{label} [{cls}]", path, results, rate_key, values, metric, source=src)
            except ValueError as exc:
                entry.curve_errors[f"per_class/{metric}/{cls}"] = str(exc)
                continue
            entry.per_class.setdefault(metric, {})[str(cls)] = curve
    _total_curves(entry, results)
    return entry


def _read_record(entry: Entry, results: dict[str, Any], meta: dict[str, Any]) -> None:
    """What stands behind the curves: completeness, failures, shard, sample set, weights (as far as recorded)."""
    complete = meta.get("complete")
    entry.complete = complete if isinstance(complete, bool) else None
    failures = meta.get("failures")
    entry.failures = len(failures) if isinstance(failures, list) else int(failures or 0)
    tasks = meta.get("tasks") if isinstance(meta.get("tasks"), dict) else {}
    for name, info in tasks.items():
        if isinstance(info, dict):
            if isinstance(info.get("failures"), int):
                entry.failures += info["failures"]
            if info.get("complete") is False:
                entry.incomplete_tasks.append(str(name))
    missing = meta.get("missing_rows")
    entry.missing_rows = int(missing) if isinstance(missing, (int, float)) else None
    entry.shard = str(meta["shard"]) if meta.get("shard") not in (None, "") else None
    entry.samples = int(meta["samples"]) if isinstance(meta.get("samples"), int) else None
    sample_set = meta.get("sample_set") if isinstance(meta.get("sample_set"), dict) else {}
    entry.sample_digest = str(sample_set["digest"]) if sample_set.get("digest") else None
    contents = sample_set.get("contents")
    entry.sample_contents = {str(k): str(v) for k, v in contents.items()} if isinstance(contents, dict) else {}
    weights = meta.get("weights")
    entry.weights = [w for w in weights if isinstance(w, dict)] if isinstance(weights, list) else []


def _total_curves(entry: Entry, results: dict[str, Any]) -> None:
    """Every curve again on ``bpp_total``, the bits of every stream written (for one stream it is ``bpp``).

    A file without ``bpp_total`` (written before it was recorded) gets ``bpp`` as its total unless the method is
    MBID, whose human ``bpp`` counts its own stream only: then there is no total-bits curve, and ``total_error`` says
    why.
    """
    total = results.get("bpp_total")
    if total is None:
        if entry.family == "MBID":
            entry.total_error = f"{entry.path}: an MBID method's results without 'bpp_total' (bits of every stream)"
            return
        total = results["bpp"]
    if not _is_number_list(total):
        entry.total_error = f"{entry.path}: results.bpp_total must be a list of numbers"
        return
    for metric, curve in entry.curves.items():
        if len(total) != len(curve):
            entry.curve_errors.setdefault(f"total/{metric}", f"{entry.path}: bpp_total and {metric} lengths differ")
            continue
        entry.total_curves[metric] = curve.with_points(np.array(total, dtype=float), curve.values)


def total_differs(entry: Entry) -> bool:
    """Whether the entry's total bits differ from its human ``bpp`` (an MBID method: the streams are separate)."""
    if entry.total_error:
        return entry.family == "MBID"
    for metric, curve in entry.total_curves.items():
        human = entry.curves[metric]
        if not is_task_metric(metric) and not np.allclose(curve.rates, human.rates, rtol=1e-12, equal_nan=True):
            return True
    return False


def read_json(path: Path) -> Any:
    """A JSON document, or :class:`ResultsError` naming the file."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: not valid JSON ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: cannot read ({exc})") from None


def dataset_dirs(root: Path) -> list[Path]:
    """Dataset folders of a results root (hidden folders and ``golden`` skipped)."""
    if not root.is_dir():
        raise ResultsError(f"{root}: no such results folder")
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in SKIP_DIRS)


def load_roots(roots: Sequence[str | Path], datasets: Sequence[str] | None = None) -> dict[str, list[Entry]]:
    """Entries by dataset from results roots; the same method on a dataset in two roots is an error."""
    out: dict[str, list[Entry]] = {}
    for root in map(Path, roots):
        for folder in dataset_dirs(root):
            if datasets and folder.name not in datasets:
                continue
            for path in sorted(folder.glob("*.json")):
                entry = parse_document(read_json(path), path, folder.name)
                clash = next((e for e in out.get(folder.name, []) if e.name == entry.name), None)
                if clash is not None:
                    raise ResultsError(f"method {entry.name!r} on {folder.name!r} is in both {clash.path} and {path}")
                out.setdefault(folder.name, []).append(entry)
    return {k: out[k] for k in sorted(out)}


def parse_reference_spec(spec: str) -> tuple[str | None, Path]:
    """``[DATASET=]PATH``: a file or folder of results JSONs, for one dataset or (no prefix) every dataset."""
    m = re.match(r"^([A-Za-z0-9_.-]+)=(.+)$", spec)
    if m and not Path(spec).exists():
        return m.group(1), Path(m.group(2))
    return None, Path(spec)


def load_references(specs: Sequence[str]) -> list[tuple[str | None, list[Entry]]]:
    """Reference curves per spec; labels are the files' names, or their stems where names repeat."""
    out = []
    for spec in specs:
        dataset, path = parse_reference_spec(spec)
        if path.is_dir():
            files = sorted(path.glob("*.json"))
            if not files:
                raise ResultsError(f"{path}: reference folder holds no *.json")
        elif path.is_file():
            files = [path]
        else:
            raise ResultsError(f"{path}: no such reference file or folder")
        docs = [(f, read_json(f)) for f in files]
        names = [str(d.get("name") or f.stem) if isinstance(d, dict) else f.stem for f, d in docs]
        entries = []
        for (f, doc), name in zip(docs, names):
            label = name if names.count(name) == 1 else f.stem
            entries.append(parse_document(doc, f, dataset or "*", reference=True, name=label))
        out.append((dataset, entries))
    return out


def attach_references(
    by_dataset: dict[str, list[Entry]], references: Sequence[tuple[str | None, list[Entry]]]
) -> dict[str, list[Entry]]:
    """Add reference entries to their datasets (to all when the spec named none); labels get ``[ref]`` on a clash."""
    out = {ds: list(entries) for ds, entries in by_dataset.items()}
    for dataset, entries in references:
        targets = [dataset] if dataset else list(out)
        for ds in targets:
            if ds not in out:
                out[ds] = []
            for ref in entries:
                names = {e.name for e in out[ds]}
                label = ref.name if ref.name not in names else f"{ref.name} [ref]"
                copy = Entry(**{**ref.__dict__, "name": label, "dataset": ds})
                copy.curves = {m: _renamed(c, label) for m, c in ref.curves.items()}
                copy.total_curves = {m: _renamed(c, label) for m, c in ref.total_curves.items()}
                out[ds].append(copy)
    return out


def _renamed(curve: RDCurve, name: str) -> RDCurve:
    return RDCurve(name, curve.rates, curve.values, curve.metric, family=curve.family, source=curve.source)


# ---------------------------------------------------------------------------------------------------------------
# analysis


def metric_order(metrics: Iterable[str]) -> list[str]:
    """PSNR, MS-SSIM, other human metrics, then task metrics, each group alphabetical."""

    def key(m: str) -> tuple[int, str]:
        low = m.lower()
        if low.startswith("psnr"):
            return (0, m)
        if "ssim" in low:
            return (1, m)
        return (3, m) if is_task_metric(m) else (2, m)

    return sorted(set(metrics), key=key)


def is_task_metric(metric: str) -> bool:
    """A machine task's metric (``<task>/<metric>``) rather than a human one: the registry's reading of the key."""
    return registry.is_task_key(metric)


def file_part(metric: str) -> str:
    """A metric key as part of a file name (``detection/mAP`` -> ``detection_mAP``)."""
    return re.sub(r"[^A-Za-z0-9._+-]", "-", metric.replace("/", "_"))


def metric_label(metric: str) -> str:
    return LABELS.get(metric, metric)


def axis_unit(metric: str) -> str:
    """Unit of the metric on plots and in BD-metric, as its declaration says (dB; percentage points for shares)."""
    return quality_axis(metric).bd_unit


def pick_anchor(
    entries: Sequence[Entry], wanted: str | None, excluded: Sequence[Entry] = ()
) -> tuple[Entry | None, str | None]:
    """The anchor entry and, when it is not what was asked for, why (``excluded``: entries not compared, and why)."""

    def left_out(name: str) -> str:
        hit = next((e for e in excluded if e.name.lower() == name.lower()), None)
        return f"{hit.name!r} is not ranked ({hit.not_ranked_reason()}; --include-partial compares it)" if hit else ""

    if wanted:
        for match in (lambda e: e.name == wanted, lambda e: e.name.lower() == wanted.lower()):
            found = [e for e in entries if match(e)]
            if found:
                return sorted(found, key=lambda e: e.reference)[0], None
        if left_out(wanted):
            return None, f"anchor {left_out(wanted)}"
        return None, f"anchor {wanted!r} is not among {', '.join(e.name for e in entries) or 'the methods'}"
    if not entries:
        return None, "no methods" + "".join(f"; {left_out(e.name)}" for e in excluded)
    own = [e for e in entries if not e.reference] or list(entries)
    for default in DEFAULT_ANCHORS:
        for e in own:
            if e.name.lower() == default:
                return e, None
    first = sorted(own, key=lambda e: e.name)[0]
    others = ", ".join(map(repr, DEFAULT_ANCHORS[1:]))
    why = "".join(f"; {left_out(d)}" for d in DEFAULT_ANCHORS if left_out(d))
    return first, f"no {DEFAULT_ANCHOR!r} here (nor {others}){why}; anchor is {first.name!r} (first by name)"


@dataclass
class BDCell:
    """One BD figure of the table, or why there is none (``error``)."""

    dataset: str
    metric: str
    quantity: str
    anchor: str
    method: str
    reference: bool
    family: str | None
    value: float | None
    unit: str
    overlap: float | None = None
    interval: tuple[float, float] | None = None
    monotone_fit: bool = False
    error: str | None = None
    cls: str | None = None
    #: the results key of the test curve's rate (``bpp``, ``bpp@<task>``; ``bpp_total`` in the total-bits view)
    rate_axis: str = "bpp"
    #: samples behind the figure when both curves were recomputed over the samples both measured, else None
    shared_samples: int | None = None
    #: the test entry is partial (shown only with ``--include-partial``)
    partial: bool = False

    def text(self, digits: int = 2) -> str:
        if self.error:
            return f"n/a: {short_reason(self.error)}"
        if self.value is None:
            return "—"
        return f"{self.value:+.{digits}f}"

    def basis(self) -> str | None:
        """``over the 30 samples both measured`` when the figure is not on the two files' own curves."""
        if self.shared_samples is None:
            return None
        return f"over the {self.shared_samples} sample{'s' if self.shared_samples != 1 else ''} both measured"


def short_reason(message: str) -> str:
    """A few words for a table cell; the full message goes to the CSV and the footnotes."""
    rules = [
        (r"^not comparable", "not comparable: measured on other samples"),
        (r"^no shared samples", "no shared samples"),
        (r"rows log .* is not there|records no rows log", "rows log missing"),
        (r"is not monotone", "not monotone"),
        (r"covers ([\d.]+%) of the union", r"overlap \1 < min"),
        (r"do not overlap|no common range", "no overlap"),
        (r"has (\d+) point\(s\)", r"\1 point(s), too few"),
        (r"non-finite point", "NaN/inf points"),
        (r"duplicate rate", "duplicate rates"),
        (r"outside \[", "values out of range"),
        (r"rates must be > 0", "rate <= 0"),
        (r"lengths must match|must be lists of numbers|not all numbers", "malformed curve"),
        (r"anchor .* has no", "anchor lacks metric"),
        (r"rate key .* is not in results", "rate key missing"),
        (r"without 'bpp_total'", "bpp_total not recorded"),
    ]
    for pattern, short in rules:
        m = re.search(pattern, message)
        if m:
            return m.expand(short)
    return message if len(message) <= 60 else message[:57] + "..."


# ---------------------------------------------------------------------------------------------------------------
# same samples


@dataclass
class Pairing:
    """What the BD figures of one entry against the anchor stand on.

    ``same``: both measured the same samples (equal ``sample_set.digest``, both complete; files that predate the
    digest: the same sample count, ``assumed``), so their own curves are compared. Otherwise the means over samples
    (bpp, PSNR, MS-SSIM, bpp_total...) of both are recomputed from their rows logs over the ``n`` samples both
    measured at every rate point, with the runner's aggregation (``bench.running.store.aggregate``), in ``curves``;
    a task metric (mAP, mIoU: computed over a dataset, not a mean of rows) is then not comparable. ``error`` says why
    nothing could be recomputed.
    """

    same: bool
    assumed: bool = False
    n: int | None = None
    #: (entry name, metric, total bits?) -> the curve recomputed over the shared samples
    curves: dict[tuple[str, str, bool], RDCurve] = field(default_factory=dict)
    error: str | None = None
    why: str = ""

    def pair(self, anchor: Entry, test: Entry, metric: str, total: bool) -> tuple[RDCurve, RDCurve]:
        """The two curves a BD figure on ``metric`` compares; ``ValueError`` with the reason when there are none."""
        own_a = anchor.total_curves if total else anchor.curves
        own_t = test.total_curves if total else test.curves
        if self.same:
            return own_a[metric], own_t[metric]
        if is_task_metric(metric):
            raise ValueError(
                f"not comparable: {test.name!r} and {anchor.name!r} were measured on other samples ({self.why}), and "
                f"{metric} is computed over a dataset, not a mean of rows: it cannot be recomputed without the dataset"
            )
        if self.error:
            raise ValueError(self.error)
        key_a, key_t = (anchor.name, metric, total), (test.name, metric, total)
        missing = [name for key, name in ((key_a, anchor.name), (key_t, test.name)) if key not in self.curves]
        if missing:
            raise ValueError(
                f"not comparable: measured on other samples ({self.why}), and the rows of {', '.join(missing)} "
                f"do not hold {metric} on {'bpp_total' if total else 'its rate'}"
            )
        return self.curves[key_a], self.curves[key_t]


class RowsCache:
    """Each entry's rows log, read once (``bench.running.store.results_rows``), or why it cannot be read."""

    def __init__(self) -> None:
        self._rows: dict[Path, pd.DataFrame | str] = {}

    def get(self, entry: Entry) -> pd.DataFrame | str:
        if entry.path not in self._rows:
            try:
                self._rows[entry.path] = results_rows(entry.results_root, entry.meta)
            except FileNotFoundError as exc:
                self._rows[entry.path] = f"{entry.name}: {exc}"
            except (OSError, ValueError, KeyError) as exc:
                self._rows[entry.path] = f"{entry.name}: rows log unreadable ({exc})"
        return self._rows[entry.path]


def samples_in_rows(entry: Entry, rows: pd.DataFrame) -> dict[str, str | None]:
    """Samples measured without error at every rate point of the entry, with their content digest where known."""
    if rows.empty or not entry.rate_labels:
        return {}
    ok = rows[rows["error"].isna()] if "error" in rows else rows
    need = {str(r) for r in entry.rate_labels}
    have: dict[str, set[str]] = {}
    for sample, rate in zip(ok["sample"], ok["rate"]):
        have.setdefault(str(sample), set()).add(str(rate))
    content = dict(zip(ok["sample"].astype(str), ok["content"])) if "content" in ok else {}
    out = {}
    for sample, rates in have.items():
        if need <= rates:
            digest = entry.sample_contents.get(sample) or content.get(sample)
            out[sample] = digest if isinstance(digest, str) and digest else None
    return out


def _why_other_samples(anchor: Entry, test: Entry) -> str:
    parts = []
    for e in (test, anchor):
        if not e.rankable:
            parts.append(f"{e.name} is {e.not_ranked_reason()}")
    if not parts:
        if anchor.sample_digest and test.sample_digest:
            parts.append("their sample sets differ")
        else:
            parts.append(f"{test.samples} and {anchor.samples} samples")
    return "; ".join(parts)


def pairing(anchor: Entry, test: Entry, rows: RowsCache) -> Pairing:
    """How ``test`` is compared with ``anchor``: on their own curves when they measured the same samples, else on
    both recomputed over the samples both measured (see :class:`Pairing`)."""
    if anchor.reference or test.reference:
        return Pairing(True)  # a published curve: its own samples, as the user asked for it
    if anchor.rankable and test.rankable:
        if anchor.sample_digest and test.sample_digest:
            if anchor.sample_digest == test.sample_digest:
                return Pairing(True)
        elif anchor.samples is None or test.samples is None or anchor.samples == test.samples:
            return Pairing(True, assumed=True)
    why = _why_other_samples(anchor, test)
    tables = [rows.get(e) for e in (anchor, test)]
    errors = [t for t in tables if isinstance(t, str)]
    if errors:
        return Pairing(False, error=f"measured on other samples ({why}), and {'; '.join(errors)}", why=why)
    ma, mt = (samples_in_rows(e, t) for e, t in zip((anchor, test), tables))
    shared = sorted(s for s in ma.keys() & mt.keys() if ma[s] is None or mt[s] is None or ma[s] == mt[s])
    if not shared:
        return Pairing(
            False,
            error=f"no shared samples: {anchor.name!r} and {test.name!r} measured no sample in common at every rate "
            f"point ({len(ma)} and {len(mt)} samples measured; {why})",
            why=why,
        )
    out = Pairing(False, n=len(shared), why=why)
    for e, table in zip((anchor, test), tables):
        agg = aggregate(table[table["sample"].astype(str).isin(shared)], list(e.rate_labels))
        for metric, curve in e.curves.items():
            if is_task_metric(metric) or metric not in agg:
                continue
            rate = e.rate_keys.get(metric, "bpp")
            if rate in agg:
                out.curves[(e.name, metric, False)] = curve.with_points(agg[rate].to_numpy(float), agg[metric])
            total = "bpp_total" if "bpp_total" in agg else ("bpp" if e.family != "MBID" else None)
            if total is not None and metric in e.total_curves:
                out.curves[(e.name, metric, True)] = curve.with_points(agg[total].to_numpy(float), agg[metric])
    return out


def pairings(entries: Sequence[Entry], anchor: Entry, rows: RowsCache | None = None) -> dict[str, Pairing]:
    """:func:`pairing` of every entry but the anchor, by name."""
    rows = rows or RowsCache()
    return {e.name: pairing(anchor, e, rows) for e in entries if e is not anchor}


# ---------------------------------------------------------------------------------------------------------------
# BD figures


def bd_cells(
    entries: Sequence[Entry],
    anchor: Entry,
    metric: str,
    *,
    quantity: str = "bd-rate",
    monotone: str = "refuse",
    min_overlap: float = DEFAULT_MIN_OVERLAP,
    method: str = "pchip",
    pairs: dict[str, Pairing] | None = None,
    total: bool = False,
) -> list[BDCell]:
    """Pairwise BD of every entry holding ``metric`` against the anchor (as :func:`bench.bdrate.bd_rate` gives it).

    ``pairs`` (:func:`pairings`) says which curves each figure compares: without it, the files' own curves.
    ``total``: on ``bpp_total``, the bits of every stream written, instead of each metric's own rate.
    """
    fn = bd_rate if quantity == "bd-rate" else bd_metric
    unit = "%" if quantity == "bd-rate" else axis_unit(metric)
    cells = []
    for e in entries:
        if e is anchor or not e.has(metric):
            continue
        axis = "bpp_total" if total else e.rate_keys.get(metric, "bpp")
        cell = BDCell(
            e.dataset, metric, quantity, anchor.name, e.name, e.reference, e.family, None, unit, rate_axis=axis
        )
        cell.partial = not e.rankable
        own_a, own_t = (anchor.total_curves, e.total_curves) if total else (anchor.curves, e.curves)
        p = (pairs or {}).get(e.name) or Pairing(True)
        if metric in e.curve_errors:
            cell.error = e.curve_errors[metric]
        elif total and e.total_error:
            cell.error = e.total_error
        elif metric in anchor.curve_errors:
            cell.error = f"anchor {anchor.name!r}: {anchor.curve_errors[metric]}"
        elif total and anchor.total_error:
            cell.error = f"anchor {anchor.name!r}: {anchor.total_error}"
        elif metric not in anchor.curves or metric not in own_a:
            cell.error = f"anchor {anchor.name!r} has no {metric!r} curve"
        elif metric not in own_t:
            cell.error = e.curve_errors.get(f"total/{metric}", f"{e.name!r} has no {metric!r} curve on bpp_total")
        else:
            try:
                a_curve, t_curve = p.pair(anchor, e, metric, total)
                res = fn(a_curve, t_curve, method=method, monotone=monotone, min_overlap=min_overlap)
            except ValueError as exc:  # BDError, not comparable, and anything the interpolation refuses
                cell.error = str(exc)
            else:
                cell.value, cell.overlap, cell.interval = res.value, res.overlap, res.interval
                cell.monotone_fit = bool(res.fitted)
                cell.shared_samples = None if p.same else p.n
        cells.append(cell)
    return cells


def per_class_cells(
    entries: Sequence[Entry],
    anchor: Entry,
    *,
    monotone: str = "refuse",
    min_overlap: float = DEFAULT_MIN_OVERLAP,
    pairs: dict[str, Pairing] | None = None,
) -> list[BDCell]:
    """BD-rate per (metric, class) of every entry against the anchor's curve of the same class.

    Per-class task figures are not means of rows: an entry measured on other samples than the anchor gets none.
    """
    cells = []
    for metric in metric_order({m for e in entries for m in e.per_class}):
        classes = sorted({c for e in entries for c in e.per_class.get(metric, {})})
        for cls in classes:
            a = anchor.per_class.get(metric, {}).get(cls)
            for e in entries:
                curve = e.per_class.get(metric, {}).get(cls)
                if e is anchor or curve is None:
                    continue
                cell = BDCell(e.dataset, metric, "bd-rate", anchor.name, e.name, e.reference, e.family, None, "%")
                cell.cls, cell.partial = cls, not e.rankable
                cell.rate_axis = e.rate_keys.get(metric, "bpp")
                p = (pairs or {}).get(e.name) or Pairing(True)
                if a is None:
                    cell.error = f"anchor {anchor.name!r} has no {metric!r} curve for class {cls!r}"
                elif not p.same:
                    cell.error = (
                        f"not comparable: measured on other samples ({p.why}); per-class {metric} is not a mean of rows"
                    )
                else:
                    try:
                        res = bd_rate(a, curve, monotone=monotone, min_overlap=min_overlap)
                    except ValueError as exc:
                        cell.error = str(exc)
                    else:
                        cell.value, cell.overlap, cell.interval = res.value, res.overlap, res.interval
                cells.append(cell)
    return cells


def relative_difference(anchor: RDCurve, test: RDCurve, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Quality of ``test`` minus the anchor's, on the BD axis (dB or points), over their common bpp range.

    Both curves are PCHIP interpolants in log-rate, as BD-metric integrates them; unlike BD, the curves need not be
    monotone. Raises ``ValueError`` naming the curve when there is nothing to draw.
    """
    pts = []
    for c in (anchor, test):
        ok = np.isfinite(c.rates) & np.isfinite(c.values) & (c.rates > 0)
        r, v = c.rates[ok], c.values[ok]
        order = np.argsort(r, kind="stable")
        r, v = r[order], v[order]
        if len(np.unique(r)) != len(r):
            raise ValueError(f"curve {c.name!r}: duplicate rates")
        if len(r) < 2:
            raise ValueError(f"curve {c.name!r}: fewer than 2 finite points")
        axis = quality_axis(c.metric)
        if axis.out_of_range(v).any():
            raise ValueError(f"curve {c.name!r}: {c.metric} outside {axis.range_text()}")
        pts.append((np.log10(r), axis.shown(v)))
    lo = max(p[0].min() for p in pts)
    hi = min(p[0].max() for p in pts)
    if hi <= lo:
        raise ValueError(f"curves {anchor.name!r} and {test.name!r} have no common bpp range")
    from scipy.interpolate import PchipInterpolator

    grid = np.linspace(lo, hi, n)
    fa, ft = (PchipInterpolator(x, q)(grid) for x, q in pts)
    return 10**grid, ft - fa


@dataclass
class DatasetAnalysis:
    """Everything the report and the leaderboard show for one dataset."""

    dataset: str
    entries: list[Entry]
    anchor: Entry | None
    anchor_note: str | None
    metrics: list[str]
    cells: list[BDCell]
    class_cells: list[BDCell]
    plots: dict[str, dict[str, Path]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: one line per non-zero task counter (e.g. detections dropped for a NaN box), per method
    counts: list[str] = field(default_factory=list)
    #: entries not compared (partial or with failures; ``--include-partial`` compares them): listed with the reason
    excluded: list[Entry] = field(default_factory=list)
    #: BD figures on ``bpp_total`` (every stream written), when some entry's total bits differ from its human bpp
    total_cells: list[BDCell] = field(default_factory=list)
    #: how each entry is compared with the anchor (own curves, or recomputed over shared samples)
    pairs: dict[str, Pairing] = field(default_factory=dict)
    include_partial: bool = False

    def cell(self, method: str, metric: str, quantity: str = "bd-rate", total: bool = False) -> BDCell | None:
        return next(
            (
                c
                for c in (self.total_cells if total else self.cells)
                if c.method == method and c.metric == metric and c.quantity == quantity
            ),
            None,
        )

    @property
    def has_total_view(self) -> bool:
        """Whether a total-bits view says something the per-target rates do not (an MBID entry is here)."""
        return any(total_differs(e) for e in self.entries)


def analyse(
    by_dataset: dict[str, list[Entry]],
    *,
    anchor: str | None = None,
    monotone: str = "refuse",
    min_overlap: float = DEFAULT_MIN_OVERLAP,
    include_partial: bool = False,
) -> list[DatasetAnalysis]:
    """BD-rate and BD-metric against the anchor on every quality axis present, per dataset.

    Only complete entries without failures are compared unless ``include_partial``; the others are
    ``excluded`` (listed with the reason). Each figure compares the samples both entries measured
    (:func:`pairing`).
    """
    out = []
    rows = RowsCache()
    for dataset, all_entries in by_dataset.items():
        entries = [e for e in all_entries if include_partial or e.rankable]
        excluded = [e for e in all_entries if not (include_partial or e.rankable)]
        metrics = metric_order(
            m for e in entries for m in (*e.curves, *e.curve_errors) if not m.startswith(("per_class", "total/"))
        )
        chosen, note = pick_anchor(entries, anchor, excluded)
        cells: list[BDCell] = []
        class_cells: list[BDCell] = []
        total_cells: list[BDCell] = []
        pairs: dict[str, Pairing] = {}
        analysis = DatasetAnalysis(dataset, list(entries), chosen, note, metrics, cells, class_cells)
        analysis.excluded, analysis.include_partial = excluded, include_partial
        if chosen is not None:
            pairs = pairings(entries, chosen, rows)
            kw = {"monotone": monotone, "min_overlap": min_overlap, "pairs": pairs}
            for metric in metrics:
                for quantity in ("bd-rate", "bd-metric"):
                    cells += bd_cells(entries, chosen, metric, quantity=quantity, **kw)
                    if analysis.has_total_view:
                        total_cells += bd_cells(entries, chosen, metric, quantity=quantity, total=True, **kw)
            class_cells += per_class_cells(entries, chosen, **kw)
        analysis.total_cells, analysis.pairs = total_cells, pairs
        analysis.notes += older_file_notes(analysis)
        for e in entries:
            if e.ignored:
                analysis.notes.append(f"{e.name}: keys not used as quality axes: {', '.join(e.ignored)}")
            for key, err in e.curve_errors.items():
                if key.startswith("per_class"):
                    analysis.notes.append(err)
            analysis.counts += count_lines(e)
        out.append(analysis)
    return out


def older_file_notes(a: DatasetAnalysis) -> list[str]:
    """What files written before completeness, sample sets and per-rate n were recorded are taken to be."""
    own = [e for e in (*a.entries, *a.excluded) if not e.reference]
    notes = []
    old = [e.name for e in own if e.complete is None and e.rankable]
    if old:
        notes.append(
            f"completeness not recorded (older results files): {', '.join(old)}; ranked as complete, since they "
            "record no failures and no shard"
        )
    no_n = [e.name for e in own if not e.point_counts.get("n")]
    if no_n:
        notes.append(f"samples per rate point (n) not recorded: {', '.join(no_n)}; shown as unknown")
    assumed = sorted(name for name, p in a.pairs.items() if p.assumed)
    if assumed and a.anchor is not None:
        notes.append(
            f"sample sets not recorded (no sample_set.digest) for {a.anchor.name} or {', '.join(assumed)}: "
            "compared as the same samples, since their sample counts agree"
        )
    return notes


def count_lines(entry: Entry) -> list[str]:
    """``<method>: <task>/<counter> = total (per rate point: ...)`` for each counter that is not all zero."""
    out = []
    for key, values in entry.counts.items():
        numbers = [0 if v is None or v != v else v for v in values]  # NaN: nothing counted there
        if not any(numbers):
            continue
        labels = entry.rate_labels if len(entry.rate_labels) == len(numbers) else range(1, len(numbers) + 1)
        points = ", ".join(f"{r}: {v:g}" for r, v in zip(labels, numbers))
        out.append(f"{entry.name}: {key} = {sum(numbers):g} (per rate point: {points})")
    return out


# ---------------------------------------------------------------------------------------------------------------
# plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(entries: Sequence[Entry]) -> dict[str, Any]:
    plt = _pyplot()
    cmap = plt.get_cmap("tab10" if len(entries) <= 10 else "tab20")
    return {e.name: cmap(i % cmap.N) for i, e in enumerate(entries)}


def _style(e: Entry, anchor: Entry | None, color: Any) -> dict[str, Any]:
    if e.reference and e is not anchor:
        return {"color": color, "linestyle": ":", "linewidth": 1.0, "marker": "x", "markersize": 3, "alpha": 0.75}
    style = {"color": color, "linestyle": FAMILY_STYLES.get(e.family or "", "-"), "linewidth": 1.5, "marker": "o"}
    style["markersize"] = 3
    if e is anchor:
        style.update(linestyle=ANCHOR_STYLE, linewidth=2.0)
    return style


def _legend_label(e: Entry, anchor: Entry | None) -> str:
    tags = [e.family or ("ref" if e.reference else "?")]
    if e.reference and e.family:
        tags.append("ref")
    if e is anchor:
        tags.append("anchor")
    if not e.rankable:
        tags.append("partial")
    return f"{e.name} ({', '.join(tags)})"


def _finish(fig, ax, path: Path) -> Path:
    ax.grid(True, alpha=0.3)
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def plot_rd(
    entries: Sequence[Entry], metric: str, anchor: Entry | None, title: str, path: Path, *, total: bool = False
) -> Path:
    """Quality against bpp, one line per method; line style by family, anchor dashed, references dotted.

    ``total``: against ``bpp_total``, the bits of every stream written (what a deployment sending all streams pays).
    """
    plt = _pyplot()
    colors = _colors(entries)
    axis = quality_axis(metric)
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for e in entries:
        curve = (e.total_curves if total else e.curves).get(metric)
        if curve is None:
            continue
        ok = np.isfinite(curve.rates) & np.isfinite(curve.values) & ~axis.out_of_range(curve.values)
        if not ok.any():
            continue
        order = np.argsort(curve.rates[ok], kind="stable")
        x, y = curve.rates[ok][order], axis.shown(curve.values[ok][order])
        ax.plot(x, y, label=_legend_label(e, anchor), **_style(e, anchor, colors[e.name]))
    ax.set_xlabel("bpp of every stream written (bpp_total)" if total else "bpp")
    ax.set_ylabel(f"{metric_label(metric)} [{'%' if axis.bd == 'fraction' else axis.bd_unit}]")
    ax.set_title(title)
    return _finish(fig, ax, path)


def plot_relative(
    entries: Sequence[Entry],
    metric: str,
    anchor: Entry,
    title: str,
    path: Path,
    pairs: dict[str, Pairing] | None = None,
) -> tuple[Path, list[str]]:
    """Quality difference to the anchor over each common bpp range; returns the plot and the curves left out.

    Each difference is between the curves its BD figure compares (``pairs``: over the samples both measured).
    """
    plt = _pyplot()
    colors = _colors(entries)
    fig, ax = plt.subplots(figsize=(8, 4.8))
    ax.axhline(0.0, color=colors[anchor.name], linestyle=ANCHOR_STYLE, linewidth=1.5, label=f"{anchor.name} (anchor)")
    skipped = []
    for e in entries:
        if e is anchor or metric not in e.curves or metric not in anchor.curves:
            continue
        p = (pairs or {}).get(e.name) or Pairing(True)
        try:
            x, d = relative_difference(*p.pair(anchor, e, metric, False))
        except ValueError as exc:
            skipped.append(f"{e.name}: {exc}")
            continue
        style = {k: v for k, v in _style(e, anchor, colors[e.name]).items() if k not in ("marker", "markersize")}
        label = _legend_label(e, anchor) + (f", over the {p.n} shared samples" if not p.same else "")
        ax.plot(x, d, label=label, **style)
    ax.set_xscale("log")
    from matplotlib.ticker import FormatStrFormatter

    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("bpp (common range with the anchor)")
    ax.set_ylabel(f"Δ {metric_label(metric)} vs {anchor.name} [{axis_unit(metric)}]")
    ax.set_title(title)
    return _finish(fig, ax, path), skipped


def write_plots(analysis: DatasetAnalysis, folder: Path) -> dict[str, dict[str, Path]]:
    """RD and relative-difference PNGs of every metric into ``folder``; fills ``analysis.plots``."""
    for metric in analysis.metrics:
        if not any(metric in e.curves for e in analysis.entries):
            continue
        title = f"{analysis.dataset}: {metric_label(metric)}"
        plots = {
            "rd": plot_rd(analysis.entries, metric, analysis.anchor, title, folder / f"rd-{file_part(metric)}.png")
        }
        anchor = analysis.anchor
        if anchor is not None and metric in anchor.curves and len(analysis.entries) > 1:
            path, skipped = plot_relative(
                analysis.entries,
                metric,
                anchor,
                f"{title}, difference to {anchor.name}",
                folder / f"reldiff-{file_part(metric)}.png",
                analysis.pairs,
            )
            plots["relative"] = path
            analysis.notes += [f"relative plot {metric}: left out {s}" for s in skipped]
        if analysis.has_total_view and any(metric in e.total_curves for e in analysis.entries):
            plots["total"] = plot_rd(
                analysis.entries,
                metric,
                anchor,
                f"{title}, on total bits (all streams)",
                folder / f"rd-total-{file_part(metric)}.png",
                total=True,
            )
        analysis.plots[metric] = plots
    return analysis.plots


# ---------------------------------------------------------------------------------------------------------------
# tables


CELL_COLUMNS = (
    "dataset", "metric", "quantity", "anchor", "method", "reference", "family", "value", "unit", "overlap",
    "interval_low", "interval_high", "monotone_fit", "rate_axis", "shared_samples", "partial", "error",
)  # fmt: skip


def cells_frame(cells: Iterable[BDCell]) -> pd.DataFrame:
    """Long table of BD cells (the CSV); its columns are there even without a cell."""
    rows = []
    for c in cells:
        rows.append(
            {
                "dataset": c.dataset,
                "metric": c.metric,
                **({"class": c.cls} if c.cls is not None else {}),
                "quantity": c.quantity,
                "anchor": c.anchor,
                "method": c.method,
                "reference": c.reference,
                "family": c.family,
                "value": c.value,
                "unit": c.unit,
                "overlap": c.overlap,
                "interval_low": c.interval[0] if c.interval else None,
                "interval_high": c.interval[1] if c.interval else None,
                "monotone_fit": c.monotone_fit,
                "rate_axis": c.rate_axis,
                "shared_samples": c.shared_samples,
                "partial": c.partial,
                "error": c.error,
            }
        )
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=list(CELL_COLUMNS))


def rd_table(entries: Sequence[Entry]) -> pd.DataFrame:
    """Long RD table: one row per (method, point) with every quality axis, ``bpp_total`` where it differs from
    ``bpp``, and the samples behind the point (``n``, ``n_failed``, ``n_undefined``, ``n_lossless``, ``<task>/n``)."""
    frames = []
    for e in entries:
        if not e.curves:
            continue
        human = next((c for m, c in e.curves.items() if e.rate_keys.get(m) == "bpp"), next(iter(e.curves.values())))
        frame = pd.DataFrame({"method": e.name, "reference": e.reference, "bpp": human.rates})
        frame.insert(2, "partial", not e.rankable)
        if len(e.rate_labels) == len(human):
            frame.insert(3, "rate", list(e.rate_labels))
        total = e.total_curves.get(next(m for m, c in e.curves.items() if c is human))
        if total is not None and total_differs(e):
            frame["bpp_total"] = total.rates
        for metric, c in e.curves.items():
            if len(c) == len(frame):
                frame[metric] = c.values
        for key, values in e.point_counts.items():
            if len(values) == len(frame):
                frame[key] = pd.array(values, dtype="Int64")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def display_name(e: Entry) -> str:
    """The name as tables show it: ``(ref)`` for references, ``(partial)`` for entries not ranked by default."""
    return e.name + (" (ref)" if e.reference else "") + ("" if e.rankable else " (partial)")


def counts_text(values: Sequence[int | None] | None, labels: Sequence[Any] = ()) -> str:
    """``24 at every point``, or each point's count (``24, 24, 22``) when they differ; ``not recorded``."""
    if not values:
        return "not recorded"
    shown = ["?" if v is None else str(v) for v in values]
    if len(set(shown)) == 1:
        return f"{shown[0]} at every point"
    if len(labels) == len(shown):
        return ", ".join(f"{v} (rate {r})" for v, r in zip(shown, labels))
    return ", ".join(shown)


def lossless_text(e: Entry) -> str | None:
    """``2 at rate 95`` when some rows were lossless (PSNR = inf), else None."""
    values = e.point_counts.get("n_lossless") or []
    labels = e.rate_labels if len(e.rate_labels) == len(values) else list(range(1, len(values) + 1))
    hits = [f"{v} at rate {r}" for v, r in zip(values, labels) if v]
    return ", ".join(hits) if hits else None


def samples_markdown(a: DatasetAnalysis) -> str:
    """Per method: the samples behind each rate point (human and per task), lossless, undefined and failed rows."""
    rows, lossless_seen = [], False
    for e in a.entries:
        if e.reference:
            continue
        tasks = [k for k in e.point_counts if k.endswith("/n")]
        lossless = lossless_text(e)
        lossless_seen |= lossless is not None
        rows.append(
            [
                display_name(e),
                e.samples if e.samples is not None else "—",
                counts_text(e.point_counts.get("n"), e.rate_labels),
                "; ".join(f"{k[:-2]}: {counts_text(e.point_counts[k], e.rate_labels)}" for k in tasks) or "—",
                (lossless + " [^lossless]") if lossless else _total_count(e, "n_lossless"),
                _total_count(e, "n_undefined"),
                _total_count(e, "n_failed"),
            ]
        )
    if not rows:
        return ""
    header = ["method", "samples", "n (human metrics)", "n (tasks)", "lossless rows", "undefined", "failed"]
    text = md_table(header, rows)
    if lossless_seen:
        text += f"\n\n[^lossless]: Lossless rows: {LOSSLESS_RULE}."
    return text


def _total_count(e: Entry, key: str) -> str:
    """A per-rate count summed over the points; ``—`` when the file does not record it."""
    values = e.point_counts.get(key)
    return "—" if not values else str(sum(v or 0 for v in values))


def weight_files(e: Entry) -> list[dict[str, Any]]:
    """The distinct weight files of an entry (by SHA-256), each with the rate points that read it."""
    out: dict[str, dict[str, Any]] = {}
    for w in e.weights:
        key = str(w.get("sha256") or w.get("file") or len(out))
        item = out.setdefault(key, {**w, "rates": []})
        if w.get("rate") is not None and w["rate"] not in item["rates"]:
            item["rates"].append(w["rate"])
    return list(out.values())


def weights_text(e: Entry) -> str:
    """``codec 3f2a9c1d0b7e (local, 8465 steps, cpu; rates 1, 2)``, one per distinct file; ``—`` without weights."""
    parts = []
    for w in weight_files(e):
        sha = str(w.get("sha256") or "?")[:12]
        text = f"{w.get('role', 'weights')} {sha} ({budget_label(w)}"
        if w["rates"] and {str(r) for r in w["rates"]} != {str(r) for r in e.rate_labels}:
            text += f"; rate{'s' if len(w['rates']) > 1 else ''} {', '.join(map(str, w['rates']))}"
        text += ")"
        trained_on = w.get("trained_on") if isinstance(w.get("trained_on"), dict) else {}
        text += "".join(f", trained on {role} {str(sha_)[:12]}" for role, sha_ in trained_on.items() if sha_)
        parts.append(text)
    return "; ".join(parts) or "—"


def _md_escape(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(map(_md_escape, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(_md_escape, r)) + " |" for r in rows]
    return "\n".join(lines)


class Footnotes:
    """Full error messages behind the short reasons in table cells."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def cell(self, c: BDCell | None) -> str:
        if c is None:
            return "—"
        if not c.error:
            basis = c.basis()
            return c.text() + (" (fit)" if c.monotone_fit else "") + (f" ({basis})" if basis else "")
        if c.error not in self.items:
            self.items.append(c.error)
        return f"{c.text()} [^{self.items.index(c.error) + 1}]"

    def render(self) -> str:
        return "\n".join(f"[^{i}]: {_md_escape(t)}" for i, t in enumerate(self.items, 1))


def short_commit(prov: dict[str, Any]) -> str:
    commit = prov.get("commit")
    if not commit:
        return "—"
    return str(commit)[:10] + ("+dirty" if prov.get("dirty") else "")


def versions_text(versions: dict[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in versions.items()) or "—"


def provenance_markdown(entries: Sequence[Entry], rel: Path | None = None) -> str:
    """Commit, config hash, codec versions per method; package versions once when all methods share them."""
    own = [e for e in entries if not e.reference]
    rows = []
    for e in entries:
        p = e.provenance()
        src = e.path.name if e.reference else (os.path.relpath(e.path, rel) if rel else str(e.path))
        rows.append(
            [
                e.name,
                "reference" if e.reference else "ours",
                short_commit(p),
                p["config_hash"] or "—",
                p["time"] or "—",
                versions_text(p["codec_versions"]),
                weights_text(e),
                src,
            ]
        )
    header = ["method", "source", "commit", "config hash", "time", "codec versions", "weights", "file"]
    text = md_table(header, rows)
    all_versions = [e.provenance()["versions"] for e in own]
    if all_versions and all(v == all_versions[0] for v in all_versions):
        text += f"\n\nPackage versions (all methods): {versions_text(all_versions[0])}"
    else:
        for e in own:
            text += f"\n\n{e.name}: {versions_text(e.provenance()['versions'])}"
    return text


def bd_markdown(a: DatasetAnalysis, notes: Footnotes, *, total: bool = False) -> str:
    """One table per dataset: rows = methods, columns = BD-rate and BD-metric on every quality axis.

    ``total``: the figures on ``bpp_total`` (every stream written) instead of each metric's own rate.
    """
    if a.anchor is None:
        return f"No BD table: {a.anchor_note}."
    header = ["method", "family", "bpp source"]
    header += [f"BD-rate {metric_label(m)} [%]" for m in a.metrics]
    header += [f"BD-{metric_label(m)} [{axis_unit(m)}]" for m in a.metrics]
    rows = []
    for e in a.entries:
        if e is a.anchor:
            continue
        row = [display_name(e), e.family or "—", e.bpp_source or "—"]
        row += [notes.cell(a.cell(e.name, m, "bd-rate", total)) for m in a.metrics]
        row += [notes.cell(a.cell(e.name, m, "bd-metric", total)) for m in a.metrics]
        rows.append(row)
    return md_table(header, rows) if rows else "Only the anchor is here: nothing to compare."


def not_compared_lines(a: DatasetAnalysis) -> list[str]:
    """``webp: partial: shard 0/12, 2 of 24 samples`` for each entry left out of the comparison."""
    return [f"{e.name}: {e.not_ranked_reason()}" for e in a.excluded]


def per_class_markdown(a: DatasetAnalysis, notes: Footnotes) -> str:
    parts = []
    for metric in metric_order({c.metric for c in a.class_cells}):
        cells = [c for c in a.class_cells if c.metric == metric]
        methods = list(dict.fromkeys(c.method for c in cells))
        classes = list(dict.fromkeys(c.cls for c in cells))
        rows = []
        for cls in classes:
            row = [cls]
            for m in methods:
                row.append(notes.cell(next((c for c in cells if c.method == m and c.cls == cls), None)))
            rows.append(row)
        parts.append(f"#### {metric}, BD-rate per class vs {a.anchor.name if a.anchor else '?'} [%]\n\n")
        parts[-1] += md_table(["class", *methods], rows)
    return "\n\n".join(parts)


def report_markdown(
    analyses: Sequence[DatasetAnalysis],
    out: Path,
    *,
    sources: Sequence[str],
    references: Sequence[str],
    monotone: str,
    min_overlap: float,
) -> str:
    """The whole report as markdown; plot links relative to ``out``."""
    lines = [
        "# Rate-distortion report",
        "",
        f"Results: {', '.join(map(str, sources))}"
        + (f"; references: {', '.join(map(str, references))}" if references else "")
        + ".",
        "",
        "BD figures are pairwise against the anchor (bjontegaard package, PCHIP, log-rate), "
        f"monotone={monotone}, min overlap {min_overlap:.0%}. BD-rate < 0: fewer bits than the anchor for the same "
        "quality. BD-metric > 0: better quality at the same rate. MS-SSIM in dB, task metrics in percentage points.",
        "",
        SAME_SAMPLES_RULE,
    ]
    if any(a.include_partial for a in analyses):
        lines[-1] += " Partial runs and runs with failures are compared too (--include-partial), marked (partial)."
    else:
        lines[-1] += " Only complete runs without failures are compared; the others are listed with the reason."
    notes = Footnotes()
    for a in analyses:
        lines += ["", f"## {a.dataset}", ""]
        if a.anchor is not None:
            lines.append(f"Anchor: **{a.anchor.name}** ({a.anchor.family or 'reference'}).")
        if a.anchor_note:
            lines.append(f"Note: {a.anchor_note}.")
        excluded = not_compared_lines(a)
        if excluded:
            lines += ["", "### Not compared (pass --include-partial to compare them, marked partial)", ""]
            lines += [f"- {_md_escape(n)}" for n in excluded]
        lines += ["", "### BD against the anchor", "", bd_markdown(a, notes)]
        if a.has_total_view and a.anchor is not None:
            lines += ["", "### BD on total bits (every stream written: bpp_total)", "", TOTAL_BITS_NOTE, ""]
            lines.append(bd_markdown(a, notes, total=True))
        samples = samples_markdown(a)
        if samples:
            lines += ["", "### Samples per rate point", "", samples]
        if a.class_cells:
            lines += ["", "### Per class", "", per_class_markdown(a, notes)]
        if a.plots:
            lines += ["", "### Plots", ""]
            for metric, plots in a.plots.items():
                links = [f"![{a.dataset} {kind} {metric}]({os.path.relpath(p, out)})" for kind, p in plots.items()]
                lines.append(" ".join(links))
        lines += ["", "### Provenance", "", provenance_markdown(a.entries, out)]
        if a.counts:
            lines += ["", "### Task counts", ""] + [f"- {_md_escape(n)}" for n in a.counts]
        if a.notes:
            lines += ["", "### Notes", ""] + [f"- {_md_escape(n)}" for n in a.notes]
    if notes.items:
        lines += ["", notes.render()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# command line


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``report`` and ``leaderboard``."""
    parser.add_argument("--dataset", action="append", default=None, help="only this dataset (repeatable)")
    parser.add_argument(
        "--anchor",
        default=None,
        help=f"method the BD figures compare against (default: the first of {'/'.join(DEFAULT_ANCHORS)} present)",
    )
    parser.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="[DATASET=]PATH",
        help="CompressAI-format results JSON or folder of them, drawn as reference curves and put in the BD tables; "
        "DATASET= restricts them to one dataset (repeatable)",
    )
    parser.add_argument("--monotone", choices=("refuse", "fit"), default="refuse", help="non-monotone curves (BD)")
    parser.add_argument("--min-overlap", type=float, default=DEFAULT_MIN_OVERLAP, help="least BD overlap, 0..1")
    parser.add_argument(
        "--include-partial",
        action="store_true",
        help="also compare and rank partial runs (meta.complete false: a shard, missing rows) and runs with failed "
        "rows, marked partial; by default they are listed with the reason and get no BD figure",
    )


def load_all(roots: Sequence[str], datasets: Sequence[str] | None, references: Sequence[str]) -> dict[str, list[Entry]]:
    """Results roots plus references, by dataset (references alone make no dataset)."""
    by_dataset = load_roots(roots, datasets)
    return attach_references(by_dataset, load_references(references))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench report", description="RD plots and BD tables")
    parser.add_argument(
        "--results",
        action="append",
        default=None,
        help="results folder <dataset>/<method>.json (repeatable; default: $HMC_BENCH_RESULTS or bench-results)",
    )
    parser.add_argument("--out", default="reports", help="folder for plots and tables")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    roots = args.results or [os.environ.get("HMC_BENCH_RESULTS", "bench-results")]
    try:
        by_dataset = load_all(roots, args.dataset, args.reference)
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not by_dataset or not any(any(not e.reference for e in v) for v in by_dataset.values()):
        print(f"error: no results under {', '.join(roots)}; run `python -m bench run` first", file=sys.stderr)
        return 2
    if args.anchor and not any(pick_anchor(v, args.anchor)[0] for v in by_dataset.values()):
        names = sorted({e.name for v in by_dataset.values() for e in v})
        print(f"error: anchor {args.anchor!r} is in no dataset; methods: {', '.join(names)}", file=sys.stderr)
        return 2
    out = Path(args.out)
    analyses = analyse(
        by_dataset,
        anchor=args.anchor,
        monotone=args.monotone,
        min_overlap=args.min_overlap,
        include_partial=args.include_partial,
    )
    for a in analyses:
        folder = out / a.dataset
        table = rd_table(a.entries)
        if not table.empty:
            atomic_write_text(folder / "rd-table.csv", table.to_csv(index=False))
            counts = [c for c in table if c == "n" or c.endswith("/n") or c == "n_lossless"]
            cols = [c for c in ("method", "partial", "bpp", "bpp_total", *a.metrics, *counts) if c in table]
            own = table[~table["reference"]][cols]
            print(f"== {a.dataset} ==\n" + own.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        for line in not_compared_lines(a):
            print(f"not compared: {a.dataset}: {line} (--include-partial compares it)")
        for e in a.entries:
            if lossless_text(e):
                print(f"lossless: {a.dataset}: {e.name}: {lossless_text(e)} ({LOSSLESS_RULE})")
        for line in a.counts:
            print(f"count: {a.dataset}: {line}")
        write_plots(a, folder)
        for _metric, plots in a.plots.items():
            for p in plots.values():
                print(f"plot: {p}")
        if a.anchor is None:
            print(f"{a.dataset}: no BD table ({a.anchor_note})")
            continue
        if a.anchor_note:
            print(f"note: {a.dataset}: {a.anchor_note}")
        for c in (*a.cells, *a.total_cells):
            if c.quantity == "bd-rate":
                shown = c.text() if not c.error else f"n/a ({c.error})"
                shown += f" ({c.basis()})" if c.basis() else ""
                on = " on bpp_total" if c.rate_axis == "bpp_total" else ""
                print(f"BD-rate {c.metric}{on} {c.method}{' [partial]' if c.partial else ''} vs {c.anchor}: {shown}")
    frame = cells_frame(c for a in analyses for c in (*a.cells, *a.total_cells))
    atomic_write_text(out / "bd.csv", frame.to_csv(index=False))
    class_frame = cells_frame(c for a in analyses for c in a.class_cells)
    if not class_frame.empty:
        atomic_write_text(out / "per-class-bd.csv", class_frame.to_csv(index=False))
    md = report_markdown(
        analyses, out, sources=roots, references=args.reference, monotone=args.monotone, min_overlap=args.min_overlap
    )
    atomic_write_text(out / "report.md", md)
    print(f"report: {out / 'report.md'}")
    return 0
