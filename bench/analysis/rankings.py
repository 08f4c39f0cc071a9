"""The leaderboard's data: each dataset's tracks, rankings by BD-rate against the anchor, the joint
human + machine views and their Pareto sets (``python -m bench leaderboard`` renders them: bench.analysis.leaderboard).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.analysis.comparison import (
    BDCell,
    DatasetAnalysis,
    short_reason,
)
from bench.analysis.report import (
    counts_text,
    lossless_text,
)
from bench.analysis.results import (
    LOSSLESS_RULE,
    Entry,
    is_task_metric,
    metric_label,
)


def shown_path(path: object) -> str:
    """A results folder as the page shows it: relative to the working directory when inside it."""
    p = Path(str(path))
    try:
        return p.resolve().relative_to(Path.cwd().resolve()).as_posix() or "."
    except ValueError:
        return p.name or str(p)


def committed_results() -> Path:
    """The checkout's ``results/`` folder (editable install), else ``./results``."""
    from bench.resolvers import project_root

    here = project_root() / "results"
    return here if here.is_dir() else Path("results")


# ---------------------------------------------------------------------------------------------------------------
# tracks and their labels

#: size of each dataset's full evaluation set (Kodak: all 24; COCO val2017; Cityscapes val; UCF101 split-1 test list):
#: results over fewer samples carry a small-sample caveat
FULL_SET_SIZES = {"kodak": 24, "coco": 5000, "cityscapes": 500, "ucf101": 3783}
#: datasets not listed above: fewer samples than this is a small sample
SMALL_SAMPLE = 100
PROTOCOL_LABELS = {"ground_truth": "ground-truth protocol", "fidelity": "fidelity protocol"}
#: what a protocol's reference is, when the task's results say nothing more about it
PROTOCOL_NOTES = {"fidelity": "agreement with the network's output on the uncompressed input, not accuracy"}


def headline_metrics(a: DatasetAnalysis) -> set[str]:
    """Each task's headline metric as its results record it (``meta.tasks[t].headline``)."""
    return {
        t["headline"]
        for e in a.entries
        for t in (e.meta.get("tasks") or {}).values()
        if isinstance(t, dict) and t.get("headline")
    }


def track_metrics(a: DatasetAnalysis) -> list[str]:
    """The ranked axes: every human metric, then the task headlines (every task metric where none is recorded)."""
    human = [m for m in a.metrics if not is_task_metric(m)]
    machine = [m for m in a.metrics if is_task_metric(m)]
    headlines = headline_metrics(a)
    return human + ([m for m in machine if m in headlines] or machine)


def _task_records(a: DatasetAnalysis) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for e in (*a.entries, *a.excluded):
        for name, t in (e.meta.get("tasks") or {}).items():
            if isinstance(t, dict) and t.get("protocol"):
                found.setdefault(str(name), []).append(t)
    return dict(sorted(found.items()))


def protocol_note(task: dict[str, Any], name: str = "") -> str | None:
    """What the task's reference is, in its own words: ``meta.tasks[t].protocol_note``, else (for any protocol but
    ground truth, which says it all) its ``description`` (less a leading ``<name>:``), else the generic sentence of
    its protocol. One sentence per protocol would be wrong for some tasks: ``matching`` is recorded as fidelity but
    retrieves each query's uncompressed image among distractors."""
    if task.get("protocol_note"):
        return str(task["protocol_note"])
    protocol = str(task.get("protocol"))
    description = str(task.get("description") or "")
    if description.startswith(f"{name}: "):
        description = description[len(name) + 2 :]
    if protocol != "ground_truth" and description:
        return description
    return PROTOCOL_NOTES.get(protocol)


def task_protocols(a: DatasetAnalysis, *, notes: bool = True) -> dict[str, str]:
    """Task name -> the protocol(s) its results were measured under (``meta.tasks[t].protocol``), with what the
    reference is (:func:`protocol_note`) unless ``notes`` is false."""
    out = {}
    for name, records in _task_records(a).items():
        texts = []
        for t in records:
            label = PROTOCOL_LABELS.get(str(t["protocol"]), str(t["protocol"]))
            note = protocol_note(t, name) if notes else None
            text = f"{label} — {note}" if note else label
            if text not in texts:
                texts.append(text)
        out[name] = " / ".join(texts)
    return out


def sample_label(a: DatasetAnalysis) -> str:
    """How many images or clips stand behind the figures, with a caveat when that is a small sample."""
    own = [e for e in a.entries if not e.reference]
    counts = sorted({e.samples for e in own if e.samples is not None})
    if not counts:
        return "sample count not recorded"
    unit = "clips" if any(e.media == "video" for e in own) else "images"
    text = f"{counts[0]} {unit}" if len(counts) == 1 else f"{counts[0]}–{counts[-1]} {unit} (methods differ)"
    partial = [f"{e.name} {e.measured_samples()} of them" for e in own if not e.rankable and e.measured_samples()]
    if partial:
        text += f" (partial: {', '.join(partial)})"
    full = FULL_SET_SIZES.get(a.dataset)
    if full is not None and counts[-1] < full:
        return f"{text} (full evaluation set: {full}): a small sample, figures are indicative"
    if full is None and counts[-1] < SMALL_SAMPLE:
        return f"{text}: a small sample, figures are indicative"
    return text


def points_label(a: DatasetAnalysis) -> str:
    """The samples behind each rate point: ``n = 24 at every point``, or per method when they differ."""
    own = [e for e in a.entries if not e.reference]
    keys = ["n"] + sorted({k for e in own for k in e.point_counts if k.endswith("/n")})
    parts = []
    for key in keys:
        texts = {e.name: counts_text(e.point_counts.get(key), e.rate_labels) for e in own}
        if key != "n":
            texts = {n: t for n, t in texts.items() if t != "not recorded"}
        if not texts:
            continue
        if len(set(texts.values())) == 1:
            only = next(iter(texts.values()))
            parts.append(f"{key} not recorded (older results)" if only == "not recorded" else f"{key} = {only}")
        else:
            parts.append(f"{key}: " + ", ".join(f"{name} {text}" for name, text in texts.items()))
    return "; ".join(parts)


def lossless_label(a: DatasetAnalysis) -> str | None:
    """Lossless rows per method, with the rule that keeps them out of the PSNR mean; None when there are none."""
    hits = [f"{e.name} {lossless_text(e)}" for e in a.entries if lossless_text(e)]
    return f"lossless rows: {'; '.join(hits)} ({LOSSLESS_RULE})" if hits else None


def track_label(a: DatasetAnalysis, metric: str) -> str:
    """A track's heading: the metric and, for a task metric, the protocol it was measured under."""
    label = metric_label(metric)
    if not is_task_metric(metric):
        return label
    protocol = task_protocols(a, notes=False).get(metric.split("/", 1)[0])
    return f"{label}, {protocol}" if protocol else label


def dataset_caption(a: DatasetAnalysis) -> str:
    """One line under a dataset's heading: samples, samples per point, each task with its protocol, lossless rows."""
    parts = [sample_label(a), points_label(a)]
    parts += [f"task {name}: {protocol}" for name, protocol in task_protocols(a).items()]
    parts += [lossless_label(a) or ""]
    return "; ".join(p for p in parts if p)


def not_ranked(a: DatasetAnalysis) -> list[str]:
    """``webp (partial: shard 0/12, 2 of 24 samples)`` for each entry left out of the ranking."""
    return [f"{e.name} ({e.not_ranked_reason()})" for e in a.excluded]


def other_task_metrics(a: DatasetAnalysis) -> list[str]:
    """Task metrics that are not tracks (their BD figures are in the CSV and the report)."""
    tracks = set(track_metrics(a))
    return [m for m in a.metrics if m not in tracks]


# ---------------------------------------------------------------------------------------------------------------
# rankings


@dataclass
class Row:
    """One method in one ranking table."""

    rank: int | None
    entry: Entry
    bd_rate: float | None
    bd_metric: float | None
    error: str | None
    anchor: bool = False
    #: left out of the comparison (partial, failures): ``error`` is the reason
    excluded: bool = False
    #: the BD cell behind the row (its sample basis), None for the anchor and excluded entries
    cell: BDCell | None = None

    def bd_text(self) -> str:
        """The BD-rate as a cell shows it, with its sample basis or the reason there is none."""
        if self.excluded:
            return f"not ranked: {self.error}"
        if self.error:
            return f"n/a: {short_reason(self.error)}"
        if self.anchor:
            return "0 (anchor)"
        basis = self.cell.basis() if self.cell is not None else None
        return f"{self.bd_rate:+.2f}" + (f" ({basis})" if basis else "")


def ranking(a: DatasetAnalysis, metric: str) -> list[Row]:
    """Methods on ``metric`` by BD-rate against the anchor (the anchor at 0); figures that failed come last, then
    the entries left out of the comparison (partial, failures) with the reason."""
    rows = []
    for e in a.entries:
        if metric not in e.curves and metric not in e.curve_errors:
            continue
        if e is a.anchor:
            broken = e.curve_errors.get(metric)
            rows.append(Row(None, e, None if broken else 0.0, None if broken else 0.0, broken, anchor=True))
            continue
        rate, met = a.cell(e.name, metric, "bd-rate"), a.cell(e.name, metric, "bd-metric")
        if rate is None:
            continue
        rows.append(Row(None, e, rate.value, met.value if met else None, rate.error, cell=rate))
    ok = sorted((r for r in rows if r.bd_rate is not None), key=lambda r: (r.bd_rate, r.entry.name))
    for i, r in enumerate(ok, 1):
        r.rank = i
    left_out = [Row(None, e, None, None, e.not_ranked_reason(), excluded=True) for e in a.excluded if e.has(metric)]
    return ok + sorted((r for r in rows if r.bd_rate is None), key=lambda r: r.entry.name) + left_out


@dataclass
class JointPoint:
    entry: Entry
    x: float | None
    y: float | None
    error: str | None
    pareto: bool = False
    #: the samples both BD figures stand on, when recomputed over shared samples
    basis: str | None = None


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """Which points no other point dominates (lower is better on both axes)."""
    flags = []
    for i, (x, y) in enumerate(points):
        dominated = any((qx <= x and qy <= y) and (qx < x or qy < y) for j, (qx, qy) in enumerate(points) if j != i)
        flags.append(not dominated)
    return flags


def joint_axes(a: DatasetAnalysis) -> list[tuple[str, str]]:
    """(x, y) metric pairs of the joint view: human vs each task metric, else PSNR vs MS-SSIM."""
    human = [m for m in a.metrics if not is_task_metric(m)]
    machine = [m for m in a.metrics if is_task_metric(m)]
    headlines = headline_metrics(a)
    machine = [m for m in machine if m in headlines] or machine
    if human and machine:
        return [(human[0], m) for m in machine]
    if len(human) >= 2:
        return [(human[0], human[1])]
    return []


def total_joint_axes(a: DatasetAnalysis) -> list[tuple[str, str]]:
    """The joint view's axes again on total bits (``bpp_total``), when some method's streams are separate (MBID)."""
    return joint_axes(a) if a.has_total_view and a.anchor is not None else []


def joint_view(a: DatasetAnalysis, x_metric: str, y_metric: str, *, total: bool = False) -> list[JointPoint]:
    """BD-rates of every method on both axes and whether it is on the Pareto front.

    ``total``: both BD-rates on ``bpp_total``, every stream a deployment sends, rather than each target's own bits.
    """
    pts = []
    for e in a.entries:
        if not (e.has(x_metric) and e.has(y_metric)):
            continue
        if e is a.anchor:
            broken = total and (e.total_error or not {x_metric, y_metric} <= set(e.total_curves))
            pts.append(JointPoint(e, None, None, "no total-bits curve") if broken else JointPoint(e, 0.0, 0.0, None))
            continue
        cx, cy = a.cell(e.name, x_metric, total=total), a.cell(e.name, y_metric, total=total)
        errors = [f"{m}: {c.error}" for m, c in ((x_metric, cx), (y_metric, cy)) if c is not None and c.error]
        if cx is None or cy is None:
            errors.append("no BD figure")
        if errors:
            pts.append(JointPoint(e, None, None, "; ".join(errors)))
        else:
            bases = list(dict.fromkeys(b for b in (cx.basis(), cy.basis()) if b))
            pts.append(JointPoint(e, cx.value, cy.value, None, basis="; ".join(bases) or None))
    ok = [p for p in pts if p.error is None]
    for p, flag in zip(ok, pareto_front([(p.x, p.y) for p in ok])):
        p.pareto = flag
    left_out = [
        JointPoint(e, None, None, f"not ranked: {e.not_ranked_reason()}")
        for e in a.excluded
        if e.has(x_metric) and e.has(y_metric)
    ]
    return sorted(ok, key=lambda p: (not p.pareto, p.x + p.y)) + [p for p in pts if p.error is not None] + left_out


def plot_joint(
    points: Sequence[JointPoint], x_metric: str, y_metric: str, title: str, path: Path, *, total: bool = False
) -> Path:
    """Scatter of the two BD-rates with the Pareto front as a staircase (``total``: both on ``bpp_total``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 5))
    ok = [p for p in points if p.error is None]
    for p in ok:
        ax.scatter(p.x, p.y, s=40 if p.pareto else 20, marker="o" if p.pareto else "x", zorder=3)
        label = p.entry.name + ("" if p.entry.rankable else " (partial)")
        ax.annotate(label, (p.x, p.y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    front = sorted((p.x, p.y) for p in ok if p.pareto)
    if len(front) > 1:
        xs, ys = zip(*front)
        ax.step(xs, ys, where="post", linestyle="--", linewidth=1, color="gray", label="Pareto front")
        ax.legend(fontsize=7)
    ax.axhline(0, color="lightgray", linewidth=0.8)
    ax.axvline(0, color="lightgray", linewidth=0.8)
    on = " on total bits" if total else ""
    ax.set_xlabel(f"BD-rate {metric_label(x_metric)}{on} [%]")
    ax.set_ylabel(f"BD-rate {metric_label(y_metric)}{on} [%]")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------------------------
# pages
