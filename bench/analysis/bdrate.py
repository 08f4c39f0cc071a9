"""BD-rate and BD-metric between rate-quality curves, on any quality axis.

The figures come from the ``bjontegaard`` package (FAU-LMS), whose PCHIP reproduces the JCT-VC/JVET Excel template.
This module adds what a benchmark needs around it:

* Quality axes. PSNR (dB) as is. MS-SSIM (and SSIM), given in [0, 1), enters BD in dB, ``-10 log10(1 - x)``, as
  CompressAI plots it; keys with ``db`` (``"ms-ssim-db-rgb"``) are already in dB. Task metrics (mAP, mIoU, top-1,
  top-5, accuracy) are given as **fractions** in [0, 1] (what pycocotools and our evaluators return) and enter BD in
  **percentage points**, so a BD-mAP of +1.2 means 1.2 mAP points; BD-rate does not depend on that scale. Rates are
  bpp and, as usual, log10 in BD.
* Checks that name the curve: too few points for the interpolation, NaN/inf, rates <= 0, duplicate rates, values
  outside the metric's range, anchor and test on different metrics.
* Non-monotone curves (task accuracy saturates and wobbles): ``monotone="refuse"`` raises, naming the offending
  points; ``monotone="fit"`` replaces the curve by its isotonic (PAVA) fit, as MPEG VCM practice does, and the result
  records the fitted curve. BD-rate needs rate as a function of quality, so there quality must rise strictly: a flat
  run (tied quality, also one the fit creates) keeps only its lowest-rate point, the one a user would pick.
* Overlap, measured as the package does (length of the integration interval over the length of the union of the two
  curves' ranges, on the integration axis: quality for BD-rate, log-rate for BD-metric). The package only warns;
  here no overlap, or overlap below ``min_overlap``, is an error.
* A common integration range for N curves against one anchor (``*_many(..., common_range=True)``): the intersection
  of all their ranges. The package has no argument for another interval, so we take its own interpolants
  (``interpolators=True``) and integrate them over the common interval. We do not clip curves by inserting
  interpolated end points: with PCHIP or Akima that changes the interpolant near the new ends (end slopes come from
  neighbouring points), whereas this keeps the very curve the pairwise figure uses; where the common interval equals
  a pair's own overlap, the figure is the package's.
* Bootstrap confidence intervals over images (``bootstrap_bd``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import bjontegaard
import numpy as np
import pandas as pd

from bench.analysis.rdcurves import RDCurve
from bench.metrics import registry
from bench.metrics.registry import Metric

Method = Literal["pchip", "akima", "cubic"]
Monotone = Literal["refuse", "fit"]
Quantity = Literal["bd-rate", "bd-metric"]

#: Fewest points each interpolation of the bjontegaard package can use: PCHIP needs 2, Akima needs 2 (it falls back
#: to a linear spline below 3), "cubic" fits one cubic polynomial to all points (VCEG-M33) and needs 4.
MIN_POINTS: dict[str, int] = {"pchip": 2, "akima": 2, "cubic": 4}
DEFAULT_MIN_OVERLAP = 0.5  # below half the union of ranges, a BD figure extrapolates more than it measures: an error


class BDError(ValueError):
    """Input on which a BD figure would be meaningless; the message names the curve(s)."""


# ---------------------------------------------------------------------------------------------------------------
# quality axes


def quality_axis(metric: str) -> Metric:
    """How a results key enters BD: its metric's declaration (``bench.metrics.registry``), never a guess from its name.

    A task's key ``<task>/<metric>`` reads as ``<metric>``; an undeclared metric is a :class:`BDError`.
    """
    try:
        return registry.for_key(metric)
    except registry.UnknownMetric as exc:
        raise BDError(f"unknown quality metric {metric!r}: {exc}") from None


# ---------------------------------------------------------------------------------------------------------------
# monotone fit


def isotonic_fit(
    values: Sequence[float] | np.ndarray, weights: Sequence[float] | np.ndarray | None = None
) -> np.ndarray:
    """Least-squares non-decreasing fit by pool-adjacent-violators; points must already be in rate order.

    Blocks are pooled only when they strictly violate the order, so a curve that is already non-decreasing comes
    back unchanged, ties included.
    """
    y = np.asarray(values, dtype=float)
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=float)
    sums: list[float] = []
    wsum: list[float] = []
    count: list[int] = []
    for yi, wi in zip(y, w, strict=True):
        sums.append(yi * wi)
        wsum.append(wi)
        count.append(1)
        while len(sums) > 1 and sums[-2] / wsum[-2] > sums[-1] / wsum[-1]:
            s, ws, c = sums.pop(), wsum.pop(), count.pop()
            sums[-1] += s
            wsum[-1] += ws
            count[-1] += c
    return np.repeat(np.array(sums) / np.array(wsum), count)


# ---------------------------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class BDResult:
    """One BD figure and how it was obtained, for the analysis tables and the leaderboard.

    ``value`` is in percent for BD-rate (negative: the test needs fewer bits for the same quality) and in ``unit``
    (dB or percentage points) for BD-metric (positive: the test is better at the same rate). ``interval`` is the
    integration range, in ``interval_unit``: the quality axis for BD-rate, bpp for BD-metric. ``fitted`` holds the
    monotone fits that replaced input curves, by curve name, as used.
    """

    value: float
    quantity: Quantity
    unit: str
    anchor: str
    test: str
    metric: str
    method: str
    interval: tuple[float, float]
    interval_unit: str
    overlap: float
    common_range: bool
    fitted: dict[str, RDCurve] = field(default_factory=dict)

    def __float__(self) -> float:
        return self.value

    def to_dict(self) -> dict[str, object]:
        """JSON-ready record, fitted curves included."""
        return {
            "value": self.value,
            "quantity": self.quantity,
            "unit": self.unit,
            "anchor": self.anchor,
            "test": self.test,
            "metric": self.metric,
            "method": self.method,
            "interval": list(self.interval),
            "interval_unit": self.interval_unit,
            "overlap": self.overlap,
            "common_range": self.common_range,
            "monotone_fit": {name: curve.to_dict() for name, curve in self.fitted.items()},
        }


class BootstrapCI(NamedTuple):
    """Point estimate on all images and the percentile interval over image resamples."""

    estimate: float
    low: float
    high: float


# ---------------------------------------------------------------------------------------------------------------
# preparing curves


@dataclass(frozen=True)
class _Prepared:
    curve: RDCurve  # as used: sorted by rate, the monotone fit if one was applied
    fitted: bool
    axis: Metric
    rates: np.ndarray
    q: np.ndarray  # BD axis
    x: np.ndarray  # integration axis: q for BD-rate, log10(rate) for BD-metric
    natural: np.ndarray  # the integration axis as reported: q for BD-rate, bpp for BD-metric


def _points_text(rates: np.ndarray, values: np.ndarray) -> str:
    return ", ".join(f"({r:.6g} bpp, {v:.6g})" for r, v in zip(rates, values, strict=True))


def _prepare(curve: RDCurve, quantity: Quantity, method: str, monotone: str) -> _Prepared:
    name, metric = curve.name, curve.metric
    axis = quality_axis(metric)
    need = MIN_POINTS[method]
    if len(curve) < need:
        raise BDError(f"curve {name!r} has {len(curve)} point(s); BD with method={method!r} needs at least {need}")
    rates, values = curve.rates, curve.values
    bad = ~(np.isfinite(rates) & np.isfinite(values))
    if bad.any():
        raise BDError(f"curve {name!r}: non-finite point(s) {_points_text(rates[bad], values[bad])}")
    if (rates <= 0).any():
        raise BDError(f"curve {name!r}: rates must be > 0 bpp for log-rate BD, got {rates[rates <= 0].tolist()}")
    order = np.argsort(rates, kind="stable")
    rates, values = rates[order], values[order]
    dup = np.diff(rates) == 0
    if dup.any():
        raise BDError(
            f"curve {name!r}: duplicate rate(s) {sorted(set(rates[1:][dup].tolist()))} bpp; "
            "merge repeated points into one first"
        )
    outside = axis.out_of_range(values)
    if outside.any():
        hint = " (task metrics are fractions, not percent)" if axis.bd == "fraction" else ""
        raise BDError(
            f"curve {name!r}: {metric} outside {axis.range_text()}{hint}: "
            f"{_points_text(rates[outside], values[outside])}"
        )

    strict = quantity == "bd-rate"
    q = axis.to_bd_axis(values)  # higher is better here, whatever the metric's own direction
    steps = np.diff(q)
    bad_steps = np.flatnonzero(steps <= 0 if strict else steps < 0)
    fitted = False
    if bad_steps.size:
        if monotone == "refuse":
            pairs = "; ".join(
                f"{values[i]:.6g} at {rates[i]:.6g} bpp -> {values[i + 1]:.6g} at {rates[i + 1]:.6g} bpp"
                for i in bad_steps
            )
            better, worse = ("rise", "fall") if axis.higher_is_better else ("fall", "rise")
            rule = f"{better} strictly with rate for BD-rate" if strict else f"not {worse} as rate rises"
            raise BDError(
                f"curve {name!r} is not monotone ({metric} must {rule}): {pairs}. "
                "Pass monotone='fit' to use its isotonic (PAVA) fit instead."
            )
        q = isotonic_fit(q)
        if strict:  # a flat run keeps its lowest-rate point
            keep = np.concatenate(([True], np.diff(q) > 0))
            rates, q = rates[keep], q[keep]
        values = axis.from_bd_axis(q)
        fitted = True
        if len(rates) < need:
            raise BDError(
                f"curve {name!r}: its monotone fit leaves {len(rates)} distinct quality level(s); "
                f"BD with method={method!r} needs at least {need}"
            )
    used = curve.with_points(rates, values)
    x = q if strict else np.log10(used.rates)
    natural = q if strict else used.rates
    return _Prepared(curve=used, fitted=fitted, axis=axis, rates=used.rates, q=q, x=x, natural=natural)


def _intersect(ps: Sequence[_Prepared], attr: str) -> tuple[float, float]:
    """Intersection of the curves' ranges along ``attr`` (empty when the first bound is not below the second)."""
    return max(getattr(p, attr).min() for p in ps), min(getattr(p, attr).max() for p in ps)


def _range_text(p: _Prepared, quantity: Quantity) -> str:
    if quantity == "bd-rate":
        return f"{p.curve.metric} {p.curve.values.min():.6g}..{p.curve.values.max():.6g}"
    return f"{p.rates.min():.6g}..{p.rates.max():.6g} bpp"


def _check_options(method: str, monotone: str, min_overlap: float) -> None:
    if method not in MIN_POINTS:
        raise BDError(f"unknown interpolation method {method!r}; use one of {sorted(MIN_POINTS)}")
    if monotone not in ("refuse", "fit"):
        raise BDError(f"unknown monotone policy {monotone!r}; use 'refuse' or 'fit'")
    if not 0 <= min_overlap <= 1:
        raise BDError(f"min_overlap must be a fraction in [0, 1], got {min_overlap!r}")


# ---------------------------------------------------------------------------------------------------------------
# computing


def _package_call(quantity: Quantity, a: _Prepared, t: _Prepared, method: str, interpolators: bool):
    fn = bjontegaard.bd_rate if quantity == "bd-rate" else bjontegaard.bd_psnr
    # Overlap was checked here already; min_overlap=0 keeps the package from warning about it again.
    return fn(
        a.rates,
        a.q,
        t.rates,
        t.q,
        method=method,
        require_matching_points=False,
        interpolators=interpolators,
        min_overlap=0,
    )


def _value(quantity: Quantity, a: _Prepared, t: _Prepared, method: str, interval: tuple[float, float]) -> float:
    own = (max(a.x.min(), t.x.min()), min(a.x.max(), t.x.max()))
    if interval == own:
        return float(_package_call(quantity, a, t, method, interpolators=False))
    _, f_anchor, f_test = _package_call(quantity, a, t, method, interpolators=True)
    lo, hi = interval
    avg = (f_test.integrate(lo, hi) - f_anchor.integrate(lo, hi)) / (hi - lo)
    return float(((10**avg) - 1) * 100) if quantity == "bd-rate" else float(avg)


def _run(
    quantity: Quantity,
    anchor: RDCurve,
    tests: Sequence[RDCurve],
    *,
    common_range: bool,
    method: str,
    monotone: str,
    min_overlap: float,
) -> list[BDResult]:
    _check_options(method, monotone, min_overlap)
    names = [t.name for t in tests]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise BDError(f"test curves must have distinct names; repeated: {dups}")
    for t in tests:
        if t.metric != anchor.metric:
            raise BDError(
                f"curve {t.name!r} is on {t.metric!r} but anchor {anchor.name!r} is on {anchor.metric!r}; "
                "BD compares curves on one metric"
            )
    pa = _prepare(anchor, quantity, method, monotone)
    pts = [_prepare(t, quantity, method, monotone) for t in tests]

    everyone = [pa, *pts]
    if common_range and pts:
        lo, hi = _intersect(everyone, "x")
        if hi <= lo:
            starts_last = max(everyone, key=lambda p: p.x.min())
            ends_first = min(everyone, key=lambda p: p.x.max())
            raise BDError(
                f"no common range: curve {starts_last.curve.name!r} ({_range_text(starts_last, quantity)}) "
                f"and curve {ends_first.curve.name!r} ({_range_text(ends_first, quantity)}) do not overlap"
            )

    results = []
    for pt in pts:
        group = everyone if common_range else [pa, pt]
        interval = _intersect(group, "x")
        union = max(pa.x.max(), pt.x.max()) - min(pa.x.min(), pt.x.min())
        overlap = max(interval[1] - interval[0], 0.0) / union
        where = (
            f"anchor {anchor.name!r} ({_range_text(pa, quantity)}), "
            f"test {pt.curve.name!r} ({_range_text(pt, quantity)})"
        )
        if overlap <= 0:
            raise BDError(f"curves do not overlap: {where}")
        if overlap < min_overlap:
            scope = "common range" if common_range else "overlap"
            raise BDError(
                f"{scope} covers {overlap:.1%} of the union of the curves' ranges, below min_overlap="
                f"{min_overlap:.0%}: {where}"
            )
        value = _value(quantity, pa, pt, method, interval)
        fitted = {p.curve.name: p.curve for p in (pa, pt) if p.fitted}
        unit = "%" if quantity == "bd-rate" else pa.axis.bd_unit
        shown = _intersect(group, "natural")
        results.append(
            BDResult(
                value=value,
                quantity=quantity,
                unit=unit,
                anchor=anchor.name,
                test=pt.curve.name,
                metric=anchor.metric,
                method=method,
                interval=(float(shown[0]), float(shown[1])),
                interval_unit=pa.axis.bd_unit if quantity == "bd-rate" else "bpp",
                overlap=float(overlap),
                common_range=common_range,
                fitted=fitted,
            )
        )
    return results


# ---------------------------------------------------------------------------------------------------------------
# public API


def bd_rate(
    anchor: RDCurve,
    test: RDCurve,
    *,
    method: Method = "pchip",
    monotone: Monotone = "refuse",
    min_overlap: float = DEFAULT_MIN_OVERLAP,
) -> BDResult:
    """Average rate difference (%) of ``test`` against ``anchor`` at equal quality, over their quality overlap."""
    return _run(
        "bd-rate", anchor, [test], common_range=False, method=method, monotone=monotone, min_overlap=min_overlap
    )[0]


def bd_metric(
    anchor: RDCurve,
    test: RDCurve,
    *,
    method: Method = "pchip",
    monotone: Monotone = "refuse",
    min_overlap: float = DEFAULT_MIN_OVERLAP,
) -> BDResult:
    """Average quality difference (dB or percentage points) at equal rate, over the log-rate overlap (BD-PSNR...)."""
    return _run(
        "bd-metric", anchor, [test], common_range=False, method=method, monotone=monotone, min_overlap=min_overlap
    )[0]


def bd_rate_many(
    anchor: RDCurve,
    tests: Sequence[RDCurve],
    *,
    common_range: bool = True,
    method: Method = "pchip",
    monotone: Monotone = "refuse",
    min_overlap: float = DEFAULT_MIN_OVERLAP,
) -> dict[str, BDResult]:
    """BD-rate of each test curve, by name; with ``common_range`` all over one quality range, so they rank fairly."""
    results = _run(
        "bd-rate", anchor, tests, common_range=common_range, method=method, monotone=monotone, min_overlap=min_overlap
    )
    return {r.test: r for r in results}


def bd_metric_many(
    anchor: RDCurve,
    tests: Sequence[RDCurve],
    *,
    common_range: bool = True,
    method: Method = "pchip",
    monotone: Monotone = "refuse",
    min_overlap: float = DEFAULT_MIN_OVERLAP,
) -> dict[str, BDResult]:
    """BD-metric of each test curve, by name; with ``common_range`` all over one rate range."""
    results = _run(
        "bd-metric", anchor, tests, common_range=common_range, method=method, monotone=monotone, min_overlap=min_overlap
    )
    return {r.test: r for r in results}


def _per_image(
    rows: pd.DataFrame, name: str, metric: str, sample_col: str, rate_col: str, bpp_col: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    missing = [c for c in (sample_col, rate_col, bpp_col, metric) if c not in rows.columns]
    if missing:
        raise BDError(f"rows of {name!r} lack column(s) {', '.join(map(repr, missing))}")
    dup = rows.duplicated([sample_col, rate_col], keep=False)
    if dup.any():
        first = rows.loc[dup, [sample_col, rate_col]].iloc[0].tolist()
        raise BDError(f"rows of {name!r}: (sample, rate point) {first} appears more than once")
    bpp = rows.pivot(index=sample_col, columns=rate_col, values=bpp_col).sort_index()
    val = rows.pivot(index=sample_col, columns=rate_col, values=metric).reindex_like(bpp)
    holes = bpp.isna() | val.isna()
    if holes.to_numpy().any():
        i, j = np.argwhere(holes.to_numpy())[0]
        s, r = (x.item() if isinstance(x, np.generic) else x for x in (holes.index[i], holes.columns[j]))
        raise BDError(f"rows of {name!r}: sample {s!r} has no bpp or {metric} at rate point {r!r}")
    return bpp, val


def bootstrap_bd(
    anchor_rows: pd.DataFrame,
    test_rows: pd.DataFrame,
    metric: str,
    *,
    quantity: Quantity = "bd-rate",
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    method: Method = "pchip",
    monotone: Monotone = "refuse",
    min_overlap: float = DEFAULT_MIN_OVERLAP,
    anchor_name: str = "anchor",
    test_name: str = "test",
    sample_col: str = "sample",
    rate_col: str = "rate_point",
    bpp_col: str = "bpp",
) -> BootstrapCI:
    """BD figure with a percentile confidence interval from resampling images with replacement.

    Rows are per image and rate point (columns ``sample``, ``rate_point``, ``bpp``, ``metric``). Both methods must
    cover the same images, every image at every rate point; the same draw of images is used for anchor and test (a
    paired bootstrap), each curve point is the mean over the drawn images. So this fits metrics that are means of
    per-image values (PSNR as CompressAI averages it, MS-SSIM, top-1 as 0/1), not COCO mAP or dataset mIoU.
    """
    if n_boot < 1:
        raise BDError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < ci < 1:
        raise BDError(f"ci must be in (0, 1), got {ci}")
    if quantity not in ("bd-rate", "bd-metric"):
        raise BDError(f"quantity must be 'bd-rate' or 'bd-metric', got {quantity!r}")
    bpp_a, val_a = _per_image(anchor_rows, anchor_name, metric, sample_col, rate_col, bpp_col)
    bpp_t, val_t = _per_image(test_rows, test_name, metric, sample_col, rate_col, bpp_col)
    only_a = bpp_a.index.difference(bpp_t.index)
    only_t = bpp_t.index.difference(bpp_a.index)
    if len(only_a) or len(only_t):
        raise BDError(
            f"{anchor_name!r} and {test_name!r} must cover the same images for a paired bootstrap; "
            f"only in {anchor_name!r}: {only_a.tolist()[:5]}, only in {test_name!r}: {only_t.tolist()[:5]}"
        )
    bpp_t, val_t = bpp_t.loc[bpp_a.index], val_t.loc[bpp_a.index]
    mats = [m.to_numpy(dtype=float) for m in (bpp_a, val_a, bpp_t, val_t)]
    n = len(bpp_a.index)
    fn = bd_rate if quantity == "bd-rate" else bd_metric

    def one(means: list[np.ndarray]) -> float:
        anchor = RDCurve(anchor_name, means[0], means[1], metric)
        test = RDCurve(test_name, means[2], means[3], metric)
        return fn(anchor, test, method=method, monotone=monotone, min_overlap=min_overlap).value

    estimate = one([m.mean(axis=0) for m in mats])
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=n_boot)  # resampled images
    boot_means = [counts @ m / n for m in mats]
    stats = np.empty(n_boot)
    for b in range(n_boot):
        try:
            stats[b] = one([bm[b] for bm in boot_means])
        except BDError as exc:
            raise BDError(f"bootstrap resample {b} (seed {seed}): {exc}") from exc
    low, high = np.quantile(stats, [(1 - ci) / 2, (1 + ci) / 2])
    return BootstrapCI(float(estimate), float(low), float(high))
