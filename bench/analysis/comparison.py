"""Comparing entries: the anchor, which curves each BD figure pairs (same samples, or recomputed over the shared
ones), BD cells, per-class cells, relative differences, and one dataset's whole analysis."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.analysis.bdrate import DEFAULT_MIN_OVERLAP, bd_metric, bd_rate, quality_axis
from bench.analysis.rdcurves import RDCurve
from bench.analysis.results import (
    DEFAULT_ANCHOR,
    DEFAULT_ANCHORS,
    Entry,
    axis_unit,
    is_task_metric,
    metric_order,
    total_differs,
)
from bench.running.store import aggregate, results_rows

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
    """Pairwise BD of every entry holding ``metric`` against the anchor (as :func:`bench.analysis.bdrate.bd_rate`
    gives it).

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

    def jpeg_ai_headline(self) -> dict[str, Any]:
        """JPEG AI's headline per method: the mean of its seven metrics' BD-rates against the anchor
        (:func:`bench.metrics.jpeg_ai.jpeg_ai_mean_bd_rate`: not computed unless all seven are), for the
        methods that hold any of the seven; {} when none does."""
        from bench.metrics.jpeg_ai import JPEG_AI_METRICS, jpeg_ai_mean_bd_rate

        keys = [m.key for m in JPEG_AI_METRICS]
        if not any(k in self.metrics for k in keys):
            return {}
        out = {}
        for e in self.entries:
            if self.anchor is not None and e.name == self.anchor.name:
                continue
            rates = {}
            for k in keys:
                cell = self.cell(e.name, k)
                rates[k] = cell.value if cell is not None and not cell.error else None
            out[e.name] = jpeg_ai_mean_bd_rate(rates)
        return out

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
