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

What it writes to ``--out``: ``report.md`` (BD tables, plots, provenance), ``bd.csv`` (one row per dataset, metric,
quantity and method, with the reason when a BD figure could not be computed), ``per-class-bd.csv`` when there are
per-class results, and per dataset ``rd-table.csv``, ``rd-<metric>.png`` (methods as lines, line style by family,
anchor dashed, references thin with crosses) and ``reldiff-<metric>.png`` (quality minus the anchor's over their
common bpp range).

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
from bench.rdcurves import RDCurve
from bench.running.store import atomic_write_text

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


class ResultsError(ValueError):
    """A results file or folder that cannot be read; the message names it."""


# ---------------------------------------------------------------------------------------------------------------
# reading


@dataclass
class Entry:
    """One method's (or one reference's) curves on one dataset, with where they came from."""

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

    def has(self, metric: str) -> bool:
        return metric in self.curves or metric in self.curve_errors

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
    for key in list(results):
        if key in _NOT_QUALITY or key.startswith("bpp") or key.endswith("_time") or key.endswith("/n"):
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
        try:
            entry.curves[metric] = _curve(
                label, path, results, _rate_key(metric, results, meta), values, metric, family=entry.family, source=src
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
    return entry


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
    """Machine-task accuracy (mAP, mIoU, top-k...) rather than human quality."""
    try:
        return quality_axis(metric).kind == "fraction"
    except BDError:
        return False


def file_part(metric: str) -> str:
    """A metric key as part of a file name (``detection/mAP`` -> ``detection_mAP``)."""
    return re.sub(r"[^A-Za-z0-9._+-]", "-", metric.replace("/", "_"))


def metric_label(metric: str) -> str:
    return LABELS.get(metric, metric)


def axis_unit(metric: str) -> str:
    """Unit of the metric on plots and in BD-metric: dB, or percentage points for task fractions."""
    return quality_axis(metric).unit


def pick_anchor(entries: Sequence[Entry], wanted: str | None) -> tuple[Entry | None, str | None]:
    """The anchor entry and, when it is not what was asked for, why."""
    if not entries:
        return None, "no methods"
    if wanted:
        for match in (lambda e: e.name == wanted, lambda e: e.name.lower() == wanted.lower()):
            found = [e for e in entries if match(e)]
            if found:
                return sorted(found, key=lambda e: e.reference)[0], None
        return None, f"anchor {wanted!r} is not among {', '.join(e.name for e in entries)}"
    own = [e for e in entries if not e.reference] or list(entries)
    for default in DEFAULT_ANCHORS:
        for e in own:
            if e.name.lower() == default:
                return e, None
    first = sorted(own, key=lambda e: e.name)[0]
    others = ", ".join(map(repr, DEFAULT_ANCHORS[1:]))
    return first, f"no {DEFAULT_ANCHOR!r} here (nor {others}); anchor is {first.name!r} (first by name)"


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

    def text(self, digits: int = 2) -> str:
        if self.error:
            return f"n/a: {short_reason(self.error)}"
        if self.value is None:
            return "—"
        return f"{self.value:+.{digits}f}"


def short_reason(message: str) -> str:
    """A few words for a table cell; the full message goes to the CSV and the footnotes."""
    rules = [
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
    ]
    for pattern, short in rules:
        m = re.search(pattern, message)
        if m:
            return m.expand(short)
    return message if len(message) <= 60 else message[:57] + "..."


def bd_cells(
    entries: Sequence[Entry],
    anchor: Entry,
    metric: str,
    *,
    quantity: str = "bd-rate",
    monotone: str = "refuse",
    min_overlap: float = DEFAULT_MIN_OVERLAP,
    method: str = "pchip",
) -> list[BDCell]:
    """Pairwise BD of every entry holding ``metric`` against the anchor (as :func:`bench.bdrate.bd_rate` gives it)."""
    fn = bd_rate if quantity == "bd-rate" else bd_metric
    unit = "%" if quantity == "bd-rate" else axis_unit(metric)
    cells = []
    for e in entries:
        if e is anchor or not e.has(metric):
            continue
        cell = BDCell(e.dataset, metric, quantity, anchor.name, e.name, e.reference, e.family, None, unit)
        if metric in e.curve_errors:
            cell.error = e.curve_errors[metric]
        elif metric in anchor.curve_errors:
            cell.error = f"anchor {anchor.name!r}: {anchor.curve_errors[metric]}"
        elif metric not in anchor.curves:
            cell.error = f"anchor {anchor.name!r} has no {metric!r} curve"
        else:
            try:
                res = fn(
                    anchor.curves[metric], e.curves[metric], method=method, monotone=monotone, min_overlap=min_overlap
                )
            except ValueError as exc:  # BDError, and anything the interpolation refuses
                cell.error = str(exc)
            else:
                cell.value, cell.overlap, cell.interval = res.value, res.overlap, res.interval
                cell.monotone_fit = bool(res.fitted)
        cells.append(cell)
    return cells


def per_class_cells(
    entries: Sequence[Entry], anchor: Entry, *, monotone: str = "refuse", min_overlap: float = DEFAULT_MIN_OVERLAP
) -> list[BDCell]:
    """BD-rate per (metric, class) of every entry against the anchor's curve of the same class."""
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
                cell.cls = cls
                if a is None:
                    cell.error = f"anchor {anchor.name!r} has no {metric!r} curve for class {cls!r}"
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
        pts.append((np.log10(r), axis.to_bd(v)))
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

    def cell(self, method: str, metric: str, quantity: str = "bd-rate") -> BDCell | None:
        return next(
            (c for c in self.cells if c.method == method and c.metric == metric and c.quantity == quantity), None
        )


def analyse(
    by_dataset: dict[str, list[Entry]],
    *,
    anchor: str | None = None,
    monotone: str = "refuse",
    min_overlap: float = DEFAULT_MIN_OVERLAP,
) -> list[DatasetAnalysis]:
    """BD-rate and BD-metric against the anchor on every quality axis present, per dataset."""
    out = []
    for dataset, entries in by_dataset.items():
        metrics = metric_order(
            m for e in entries for m in (*e.curves, *e.curve_errors) if not m.startswith("per_class")
        )
        chosen, note = pick_anchor(entries, anchor)
        cells: list[BDCell] = []
        class_cells: list[BDCell] = []
        if chosen is not None:
            for metric in metrics:
                for quantity in ("bd-rate", "bd-metric"):
                    cells += bd_cells(
                        entries, chosen, metric, quantity=quantity, monotone=monotone, min_overlap=min_overlap
                    )
            class_cells = per_class_cells(entries, chosen, monotone=monotone, min_overlap=min_overlap)
        analysis = DatasetAnalysis(dataset, list(entries), chosen, note, metrics, cells, class_cells)
        for e in entries:
            if e.ignored:
                analysis.notes.append(f"{e.name}: keys not used as quality axes: {', '.join(e.ignored)}")
            for key, err in e.curve_errors.items():
                if key.startswith("per_class"):
                    analysis.notes.append(err)
            analysis.counts += count_lines(e)
        out.append(analysis)
    return out


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


def plot_rd(entries: Sequence[Entry], metric: str, anchor: Entry | None, title: str, path: Path) -> Path:
    """Quality against bpp, one line per method; line style by family, anchor dashed, references dotted."""
    plt = _pyplot()
    colors = _colors(entries)
    axis = quality_axis(metric)
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for e in entries:
        curve = e.curves.get(metric)
        if curve is None:
            continue
        ok = np.isfinite(curve.rates) & np.isfinite(curve.values) & ~axis.out_of_range(curve.values)
        if not ok.any():
            continue
        order = np.argsort(curve.rates[ok], kind="stable")
        x, y = curve.rates[ok][order], axis.to_bd(curve.values[ok][order])
        ax.plot(x, y, label=_legend_label(e, anchor), **_style(e, anchor, colors[e.name]))
    ax.set_xlabel("bpp")
    ax.set_ylabel(f"{metric_label(metric)} [{'%' if axis.kind == 'fraction' else axis.unit}]")
    ax.set_title(title)
    return _finish(fig, ax, path)


def plot_relative(
    entries: Sequence[Entry], metric: str, anchor: Entry, title: str, path: Path
) -> tuple[Path, list[str]]:
    """Quality difference to the anchor over each common bpp range; returns the plot and the curves left out."""
    plt = _pyplot()
    colors = _colors(entries)
    fig, ax = plt.subplots(figsize=(8, 4.8))
    ax.axhline(0.0, color=colors[anchor.name], linestyle=ANCHOR_STYLE, linewidth=1.5, label=f"{anchor.name} (anchor)")
    skipped = []
    for e in entries:
        if e is anchor or metric not in e.curves or metric not in anchor.curves:
            continue
        try:
            x, d = relative_difference(anchor.curves[metric], e.curves[metric])
        except ValueError as exc:
            skipped.append(f"{e.name}: {exc}")
            continue
        style = {k: v for k, v in _style(e, anchor, colors[e.name]).items() if k not in ("marker", "markersize")}
        ax.plot(x, d, label=_legend_label(e, anchor), **style)
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
            )
            plots["relative"] = path
            analysis.notes += [f"relative plot {metric}: left out {s}" for s in skipped]
        analysis.plots[metric] = plots
    return analysis.plots


# ---------------------------------------------------------------------------------------------------------------
# tables


def cells_frame(cells: Iterable[BDCell]) -> pd.DataFrame:
    """Long table of BD cells (the CSV)."""
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
                "error": c.error,
            }
        )
    return pd.DataFrame(rows)


def rd_table(entries: Sequence[Entry]) -> pd.DataFrame:
    """Long RD table: one row per (method, point) with every quality axis of the method."""
    frames = []
    for e in entries:
        if not e.curves:
            continue
        first = next(iter(e.curves.values()))
        frame = pd.DataFrame({"method": e.name, "reference": e.reference, "bpp": first.rates})
        for metric, c in e.curves.items():
            if len(c) == len(frame):
                frame[metric] = c.values
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


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
            return c.text() + (" (fit)" if c.monotone_fit else "")
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
                src,
            ]
        )
    text = md_table(["method", "source", "commit", "config hash", "time", "codec versions", "file"], rows)
    all_versions = [e.provenance()["versions"] for e in own]
    if all_versions and all(v == all_versions[0] for v in all_versions):
        text += f"\n\nPackage versions (all methods): {versions_text(all_versions[0])}"
    else:
        for e in own:
            text += f"\n\n{e.name}: {versions_text(e.provenance()['versions'])}"
    return text


def bd_markdown(a: DatasetAnalysis, notes: Footnotes) -> str:
    """One table per dataset: rows = methods, columns = BD-rate and BD-metric on every quality axis."""
    if a.anchor is None:
        return f"No BD table: {a.anchor_note}."
    header = ["method", "family", "bpp source"]
    header += [f"BD-rate {metric_label(m)} [%]" for m in a.metrics]
    header += [f"BD-{metric_label(m)} [{axis_unit(m)}]" for m in a.metrics]
    rows = []
    for e in a.entries:
        if e is a.anchor:
            continue
        row = [e.name + (" (ref)" if e.reference else ""), e.family or "—", e.bpp_source or "—"]
        row += [notes.cell(a.cell(e.name, m, "bd-rate")) for m in a.metrics]
        row += [notes.cell(a.cell(e.name, m, "bd-metric")) for m in a.metrics]
        rows.append(row)
    return md_table(header, rows) if rows else "Only the anchor is here: nothing to compare."


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
    ]
    notes = Footnotes()
    for a in analyses:
        lines += ["", f"## {a.dataset}", ""]
        if a.anchor is not None:
            lines.append(f"Anchor: **{a.anchor.name}** ({a.anchor.family or 'reference'}).")
        if a.anchor_note:
            lines.append(f"Note: {a.anchor_note}.")
        lines += ["", "### BD against the anchor", "", bd_markdown(a, notes)]
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
    analyses = analyse(by_dataset, anchor=args.anchor, monotone=args.monotone, min_overlap=args.min_overlap)
    for a in analyses:
        folder = out / a.dataset
        table = rd_table(a.entries)
        if not table.empty:
            atomic_write_text(folder / "rd-table.csv", table.to_csv(index=False))
            cols = [c for c in ("method", "bpp", *a.metrics) if c in table]
            own = table[~table["reference"]][cols]
            print(f"== {a.dataset} ==\n" + own.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
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
        for c in a.cells:
            if c.quantity == "bd-rate":
                shown = c.text() if not c.error else f"n/a ({c.error})"
                print(f"BD-rate {c.metric} {c.method} vs {c.anchor}: {shown}")
    frame = cells_frame(c for a in analyses for c in a.cells)
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
