"""RD plots and relative-difference plots of one dataset's analysis (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.analysis.bdrate import quality_axis
from bench.analysis.comparison import DatasetAnalysis, Pairing, relative_difference
from bench.analysis.results import Entry, axis_unit, file_part, metric_label

#: line style by family (the anchor is always dashed)
FAMILY_STYLES: dict[str, Any] = {
    "SBAR": "-",
    "SBMD": "-.",
    "MBID": (0, (3, 1, 1, 1, 1, 1)),
    "MBHD": (0, (1, 1)),
}


ANCHOR_STYLE = "--"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(entries: Sequence[Entry]) -> dict[str, Any]:
    plt = _pyplot()
    cmap = plt.get_cmap("tab10" if len(entries) <= 10 else "tab20")
    return {e.name: cmap(i % cmap.N) for i, e in enumerate(entries)}


def line_style(e: Entry, anchor: Entry | None, color: Any) -> dict[str, Any]:
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
        ax.plot(x, y, label=_legend_label(e, anchor), **line_style(e, anchor, colors[e.name]))
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
        style = {k: v for k, v in line_style(e, anchor, colors[e.name]).items() if k not in ("marker", "markersize")}
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
