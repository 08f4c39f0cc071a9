"""``python -m bench report``: RD plots, relative-difference plots and BD tables from results folders.

What it reads. Every ``<results>/<dataset>/<method>.json`` (our superset of CompressAI's results format) and, with
``--reference``, CompressAI's published results JSONs, drawn as reference curves and included in the BD tables.

Conventions of a results JSON (the runner writes them; see ``bench.running.store.compressai_json``):

* **Quality axes** are the keys of ``results`` holding one number per rate point whose metric is declared
  (``bench.metrics.registry``: human metrics such as ``psnr-rgb`` and ``ms-ssim-rgb``, task metrics
  ``<task>/<metric>`` such as ``detection/mAP`` and ``segmentation/mIoU``, shares given as fractions). ``bpp*``,
  ``rate``, ``*_time``, ``<task>/n`` and the clip columns ``kbps`` and ``frames`` (video: bpp is over frames x
  pixels) are not quality axes; other keys are listed as ignored in the notes. ``ms-ssim-db-*`` (published files)
  is turned back into ``ms-ssim-*`` so both meet on one axis; BD and plots show MS-SSIM in dB, task metrics in
  percentage points.
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
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from bench.analysis.bdrate import DEFAULT_MIN_OVERLAP
from bench.analysis.comparison import SAME_SAMPLES_RULE, TOTAL_BITS_NOTE, BDCell, DatasetAnalysis, analyse, pick_anchor
from bench.analysis.plots import write_plots
from bench.analysis.results import (
    DEFAULT_ANCHORS,
    LOSSLESS_RULE,
    Entry,
    ResultsError,
    axis_unit,
    load_all,
    metric_label,
    metric_order,
    total_differs,
)
from bench.running.store import atomic_write_text
from bench.training.weights import budget_label, total_steps

# ---------------------------------------------------------------------------------------------------------------
# reading


# ---------------------------------------------------------------------------------------------------------------
# analysis


# ---------------------------------------------------------------------------------------------------------------
# same samples


# ---------------------------------------------------------------------------------------------------------------
# BD figures


# ---------------------------------------------------------------------------------------------------------------
# plots


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


def training_summary(e: Entry) -> str:
    """One label per weight role and origin, over all rate points: ``backbone bmshj2018-hyperprior (local,
    8465–13665 steps); modules yolox-nano (local, 1200–1800 steps, cpu, on bmshj2018-hyperprior-mse)``, the last
    part naming the weights a trained file was built on; ``—`` without weights.

    The leaderboard's short view of how trained an entry is and on what; ``weights_text`` lists every file."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for w in weight_files(e):
        groups.setdefault((str(w.get("role", "weights")), str(w.get("origin", "unknown"))), []).append(w)
    parts = []
    for (role, origin), files in groups.items():
        arch = next((str(w["arch"]) for w in files if w.get("arch")), "")
        label = [origin]
        steps = sorted(s for s in (total_steps(w) for w in files) if s is not None)
        if steps:
            label.append(f"{steps[0]}" + (f"–{steps[-1]}" if steps[-1] != steps[0] else "") + " steps")
        devices = sorted({str(w["device"]) for w in files if w.get("device")})
        if devices:
            label.append("/".join(devices))
        bases = sorted({b for w in files for b in w.get("built_on") or ()})
        if bases and role != "backbone":
            label.append("on " + ", ".join(bases))
        parts.append(f"{role}{' ' + arch if arch else ''} ({', '.join(label)})")
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


#: what the JPEG AI headline here is, and how it differs from JPEG AI's own figures
JPEG_AI_NOTE = (
    "JPEG AI reports the mean of the BD-rates of MS-SSIM, VIF, FSIM, NLPD, IW-SSIM, VMAF and PSNR-HVS "
    "(bench.metrics.jpeg_ai: its colour conventions); the mean exists only when all seven do. Here each BD-rate is "
    "on the dataset's mean curve, as every other BD figure of this report; JPEG AI's script averages per-image "
    "BD-rates instead."
)


def complexity_rows(a: DatasetAnalysis) -> tuple[list[str], list[tuple[str, ...]], str] | None:
    """Header, rows and note of the complexity table: kMAC per pixel of each method's encoder and human decoder
    over its rate points, and its peak memory; None when no entry records any."""

    def span(values: Any, digits: int = 1) -> str:
        vals = [v for v in (values or []) if isinstance(v, (int, float)) and v == v]
        if not vals:
            return "—"
        lo, hi = min(vals), max(vals)
        return f"{lo:.{digits}f}" if abs(hi - lo) < 10**-digits else f"{lo:.{digits}f}–{hi:.{digits}f}"

    rows = []
    for e in a.entries:
        f = e.figures
        if not any(f.get(k) for k in ("kmac_enc", "kmac_dec", "encode_peak_mib", "decode_peak_mib")):
            continue
        row = (span(f.get("kmac_enc")), span(f.get("kmac_dec")), span(f.get("encode_peak_mib"), 0))
        rows.append((display_name(e), *row, span(f.get("decode_peak_mib"), 0)))
    if not rows:
        return None
    header = ["method", "encoder kMAC/px", "decoder kMAC/px", "encode peak MiB", "decode peak MiB"]
    note = (
        "kMAC per pixel counted with torch's FLOP formulas on one sample per rate point (— where the codec does not "
        "run in torch: its operations are not counted); peak memory is the process's resident set during a call "
        "(CPU) or torch's peak allocation (CUDA), over the rate points."
    )
    return header, rows, note


def complexity_markdown(a: DatasetAnalysis) -> str:
    """The complexity table in markdown, with its note ('' when no entry records complexity)."""
    table = complexity_rows(a)
    if table is None:
        return ""
    header, rows, note = table
    return note + "\n\n" + md_table(header, rows)


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
        headline = a.jpeg_ai_headline()
        if headline:
            lines += ["", "### JPEG AI's headline: mean BD-rate over its seven metrics", "", JPEG_AI_NOTE, ""]
            rows = [(display_name(e), str(headline[e.name])) for e in a.entries if e.name in headline]
            lines.append(md_table(["method", "mean BD-rate [%]"], rows))
        complexity = complexity_markdown(a)
        if complexity:
            lines += ["", "### Complexity", "", complexity]
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
