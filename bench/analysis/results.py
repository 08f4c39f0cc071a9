"""Results files read back: entries (a method's curves and provenance), reference files, metric keys and labels."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.analysis.bdrate import BDError, quality_axis
from bench.analysis.rdcurves import RDCurve
from bench.metrics import registry
from bench.running.store import COUNTS

DEFAULT_ANCHOR = "jpeg"


#: anchors tried in order when none is asked for: JPEG for images, H.264 for video
DEFAULT_ANCHORS = (DEFAULT_ANCHOR, "h264")


FAMILIES = ("SBAR", "SBMD", "MBID", "MBHD")


#: rate and size columns of clips (``kbps``, mean ``frames`` per clip): not quality axes, not worth a note either
_NOT_QUALITY = {"rate", "per_class", "kbps", "frames", "kmac_enc", "kmac_dec", "encode_peak_mib", "decode_peak_mib"}


#: sub-folders of a results root that are not datasets (the drift gate's golden records live in results/golden)
SKIP_DIRS = {"golden"}


LABELS = {"psnr-rgb": "PSNR RGB", "ms-ssim-rgb": "MS-SSIM RGB"}


#: per-rate figures that are neither rates nor quality axes, kept for the complexity views
FIGURES = ("kmac_enc", "kmac_dec", "encode_peak_mib", "decode_peak_mib")


class ResultsError(ValueError):
    """A results file or folder that cannot be read; the message names it."""


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
    #: per-rate figures beside the curves: complexity (``kmac_enc``, ``kmac_dec``) and peak memory
    figures: dict[str, list[Any]] = field(default_factory=dict)

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
    entry.figures = {k: list(results[k]) for k in FIGURES if isinstance(results.get(k), list)}
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


def load_all(roots: Sequence[str], datasets: Sequence[str] | None, references: Sequence[str]) -> dict[str, list[Entry]]:
    """Results roots plus references, by dataset (references alone make no dataset)."""
    by_dataset = load_roots(roots, datasets)
    return attach_references(by_dataset, load_references(references))
