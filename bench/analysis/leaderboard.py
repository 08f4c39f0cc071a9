"""``python -m bench leaderboard``: a static HTML page and a markdown page ranking methods by BD-rate.

Built from results folders (``<dataset>/<method>.json``): the repository's committed ``results/`` (unless
``--no-committed``) and every ``--results DIR``; a later folder's method replaces an earlier one's on the same dataset.
Per dataset and quality axis, methods are ranked by BD-rate against the anchor (pairwise, as
:func:`bench.analysis.report.bd_cells` computes it; a figure that cannot be computed is listed last with its
reason), with family, ``bpp_source``, provenance (commit, config hash, versions) and links to the RD and
relative-difference plots.

Tracks. A dataset's tracks are its human metrics and each task's headline metric (``meta.tasks[t].headline``, e.g.
``yolox-nano/mAP``, ``segmentation/mIoU``, ``frame-fidelity/top1``; every task metric when no headline is recorded);
the other task metrics keep their BD figures in ``leaderboard.csv`` and in ``python -m bench report``. The anchor is
the first of ``jpeg`` (images) and ``h264`` (video) present unless ``--anchor`` names one. Each dataset says how many
images or clips stand behind its figures and behind each rate point (``n``, ``<task>/n``), flags a small sample (fewer
than the dataset's full evaluation set), counts lossless rows with the PSNR rule, and each task track names its
protocol, said in the task's own words (``meta.tasks[t].protocol_note``, else its ``description``, else a generic
sentence): ground truth, or fidelity (a reference made by the task itself from the uncompressed input).

Only complete runs without failed rows are ranked; the others are listed with the reason and, with
``--include-partial``, ranked and marked ``(partial)``. Figures between runs on other samples are over the samples
both measured (:func:`bench.analysis.report.pairing`). The weights column names each learned method's distinct
weight files (short SHA-256, published or locally trained with steps and device, the backbone a module was trained on).

The joint human + machine view is the Pareto set over (human BD-rate, machine BD-rate), both lower-is-better, the
anchor at (0, 0): PSNR (or the first human axis) against each task's headline metric (``meta.tasks[t].headline``;
every task metric when no headline is recorded). With human metrics only it is the Pareto set
over PSNR and MS-SSIM BD-rates. When an MBID method is here (its human and task streams are separate, so ``bpp`` and
``bpp@<task>`` each count one), the same view is repeated with both BD-rates on ``bpp_total``, every stream written.

The HTML page is self-contained (inline CSS and JS, no network; the plots are PNG files beside it). Clicking a column
header sorts its table; ``index.html?sort=KEY`` or ``?sort=KEY:desc`` applies the same click on load to every table
with that column (``rank``, ``method``, ``bd-rate``...). On load, each image gets ``data-natural-width`` and the body
``data-images-loaded="ok/total"``, so a headless browser can tell from the dumped DOM that the figures load.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import html
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.analysis.bdrate import DEFAULT_MIN_OVERLAP
from bench.analysis.comparison import (
    SAME_SAMPLES_RULE,
    TOTAL_BITS_NOTE,
    DatasetAnalysis,
    analyse,
    pick_anchor,
    short_reason,
)
from bench.analysis.plots import write_plots
from bench.analysis.rankings import (
    Row,
    committed_results,
    dataset_caption,
    joint_axes,
    joint_view,
    not_ranked,
    other_task_metrics,
    plot_joint,
    ranking,
    shown_path,
    total_joint_axes,
    track_label,
    track_metrics,
)
from bench.analysis.report import (
    JPEG_AI_NOTE,
    add_common_arguments,
    cells_frame,
    complexity_markdown,
    complexity_rows,
    counts_text,
    display_name,
    md_table,
    short_commit,
    training_summary,
    versions_text,
    weights_text,
)
from bench.analysis.results import (
    Entry,
    ResultsError,
    attach_references,
    axis_unit,
    file_part,
    is_task_metric,
    load_references,
    load_roots,
    metric_label,
)
from bench.running.store import atomic_write_text

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem auto;max-width:1300px;
padding:0 1rem;color:#1b1f24;line-height:1.4}
h1{font-size:1.6rem}h2{border-bottom:2px solid #d0d7de;padding-bottom:.2rem;margin-top:2.2rem}
h3{margin-top:1.6rem}.meta{color:#57606a;font-size:.9rem}
table{border-collapse:collapse;font-size:.85rem;margin:.6rem 0;width:100%}
th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa;white-space:nowrap}th[data-key]{cursor:pointer;user-select:none}
th[data-key]:hover{background:#eaeef2}th[aria-sort=ascending]::after{content:" \\25B2"}
th[aria-sort=descending]::after{content:" \\25BC"}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.anchor td{background:#fff8c5}tr.ref td{color:#57606a;font-style:italic}td.fail{color:#9a6700}
tr.pareto td{background:#dafbe1}tr.partial td{font-style:italic}tr.excluded td{color:#57606a}
td.weights{font-size:.75rem;max-width:22rem}figure{display:flex;flex-wrap:wrap;gap:.8rem;margin:.6rem 0}
figure a{flex:1 1 560px;max-width:640px}figure img{width:100%;height:auto;border:1px solid #d0d7de}
nav a{margin-right:1rem}
code{background:#f6f8fa;padding:0 .2rem}
"""

JS = """
(function () {
  function value(td, type) {
    var v = td.getAttribute('data-value');
    if (type === 'num') {
      if (v === null || v === '') return null;
      var x = parseFloat(v);
      return isNaN(x) ? null : x;
    }
    return (v !== null ? v : td.textContent).trim().toLowerCase();
  }
  function sortBy(th) {
    var table = th.closest('table');
    var idx = Array.prototype.indexOf.call(th.parentNode.children, th);
    var type = th.getAttribute('data-type') || 'text';
    var dir = th.getAttribute('aria-sort') === 'ascending' ? 'descending' : 'ascending';
    table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', dir);
    var sign = dir === 'ascending' ? 1 : -1;
    var body = table.tBodies[0];
    Array.prototype.slice.call(body.rows).map(function (r, i) {
      return {r: r, i: i, v: value(r.cells[idx], type)};
    }).sort(function (a, b) {
      if (a.v === null && b.v === null) return a.i - b.i;
      if (a.v === null) return 1;
      if (b.v === null) return -1;
      if (a.v < b.v) return -sign;
      if (a.v > b.v) return sign;
      return a.i - b.i;
    }).forEach(function (o) { body.appendChild(o.r); });
    table.setAttribute('data-sorted-by', th.getAttribute('data-key') + ':' + (sign > 0 ? 'asc' : 'desc'));
  }
  document.querySelectorAll('table.sortable th[data-key]').forEach(function (th) {
    th.tabIndex = 0;
    th.addEventListener('click', function () { sortBy(th); });
    th.addEventListener('keydown', function (e) {
      if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); sortBy(th); }
    });
  });
  new URLSearchParams(window.location.search).getAll('sort').forEach(function (spec) {
    var parts = spec.split(':'), want = parts[1] === 'desc' ? 'descending' : 'ascending';
    document.querySelectorAll('table.sortable th[data-key]').forEach(function (th) {
      if (th.getAttribute('data-key') !== parts[0]) return;
      for (var n = 0; n < 2 && th.getAttribute('aria-sort') !== want; n++) th.click();
    });
  });
  function markImages() {
    var ok = 0, imgs = document.images;
    for (var i = 0; i < imgs.length; i++) {
      var w = imgs[i].complete ? imgs[i].naturalWidth : 0;
      imgs[i].setAttribute('data-natural-width', String(w));
      if (w > 0) ok++;
    }
    document.body.setAttribute('data-images-loaded', ok + '/' + imgs.length);
  }
  if (document.readyState === 'complete') markImages(); else window.addEventListener('load', markImages);
})();
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _num(value: float | None, digits: int = 2) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _td(text: str, value: Any = None, cls: str = "", title: str = "") -> str:
    attrs = "" if value is None else f' data-value="{_e(value)}"'
    attrs += f' class="{cls}"' if cls else ""
    attrs += f' title="{_e(title)}"' if title else ""
    return f"<td{attrs}>{text}</td>"


def _th(label: str, key: str, numeric: bool = False) -> str:
    return f'<th data-key="{key}" data-type="{"num" if numeric else "text"}" scope="col">{_e(label)}</th>'


def _slug(*parts: str) -> str:
    return "-".join("".join(ch if ch.isalnum() else "-" for ch in p) for p in parts)


def _bpp_range(e: Entry, metric: str) -> str:
    c = e.curves.get(metric)
    if c is None or not len(c):
        return ""
    finite = [r for r in c.rates.tolist() if math.isfinite(r)]
    return f"{min(finite):.3f}–{max(finite):.3f}" if finite else ""


def _versions(e: Entry) -> tuple[str, str]:
    p = e.provenance()
    short = dict(p["codec_versions"])
    if "hmc-bench" in p["versions"]:
        short["hmc-bench"] = p["versions"]["hmc-bench"]
    return versions_text(short), versions_text(p["versions"])


def _plot_links(a: DatasetAnalysis, metric: str, out: Path) -> list[tuple[str, str]]:
    plots = a.plots.get(metric, {})
    names = {
        "rd": "RD curves",
        "relative": f"difference to {a.anchor.name if a.anchor else 'anchor'}",
        "total": "RD curves on total bits",
    }
    return [(names.get(k, k), Path(os.path.relpath(p, out)).as_posix()) for k, p in plots.items()]


def n_text(e: Entry, metric: str) -> tuple[str, str]:
    """The samples behind each point of ``metric`` (``<task>/n`` for a task metric): short text and the full list."""
    key = f"{metric.split('/', 1)[0]}/n" if is_task_metric(metric) else "n"
    values = e.point_counts.get(key)
    if not values:
        return "—", "not recorded"
    known = [v for v in values if v is not None]
    if not known:
        return "?", counts_text(values, e.rate_labels)
    low, high = min(known), max(known)
    return (str(low) if low == high else f"{low}–{high}"), counts_text(values, e.rate_labels)


def _row_class(r: Row, a: DatasetAnalysis) -> str:
    classes = ["anchor" if r.anchor else ("ref" if r.entry.reference else "")]
    classes.append("excluded" if r.excluded else ("partial" if not r.entry.rankable else ""))
    return " ".join(c for c in classes if c)


def html_ranking(a: DatasetAnalysis, metric: str, out: Path) -> str:
    unit = axis_unit(metric)
    head = "".join(
        [
            _th("#", "rank", True),
            _th("method", "method"),
            _th("family", "family"),
            _th("source", "source"),
            _th("BD-rate [%]", "bd-rate", True),
            _th(f"BD-{metric_label(metric)} [{unit}]", "bd-metric", True),
            _th("points", "points", True),
            _th("n", "n", True),
            _th("bpp range", "bpp-range"),
            _th("bpp source", "bpp-source"),
            _th("training", "weights"),
            _th("commit", "commit"),
            _th("config hash", "config-hash"),
            _th("versions", "versions"),
        ]
    )
    body = []
    for r in ranking(a, metric):
        e = r.entry
        p = e.provenance()
        short, full = _versions(e)
        curve = e.curves.get(metric)
        if r.excluded:
            rate_td = _td(_e(r.bd_text()), "", "num fail", r.error or "")
        elif r.error:
            rate_td = _td(f"n/a: {_e(short_reason(r.error))}", "", "num fail", r.error)
        elif r.anchor:
            rate_td = _td("0 (anchor)", 0.0, "num")
        else:
            basis = r.cell.basis() if r.cell is not None else None
            rate_td = _td(_e(r.bd_text()), r.bd_rate, "num", basis or "")
        n_short, n_full = n_text(e, metric)
        weights = training_summary(e)
        cells = [
            _td(str(r.rank) if r.rank else "—", r.rank if r.rank else "", "num"),
            _td(_e(display_name(e)), e.name, "", e.description),
            _td(_e(e.family or "—")),
            _td("reference" if e.reference else "ours"),
            rate_td,
            _td(_e(_num(r.bd_metric)), _num(r.bd_metric, 6), "num"),
            _td(str(len(curve)) if curve is not None else "", len(curve) if curve is not None else "", "num"),
            _td(_e(n_short), n_short if n_short[:1].isdigit() else "", "num", n_full),
            _td(_e(_bpp_range(e, metric))),
            _td(_e(e.bpp_source or "—")),
            _td(_e(weights), weights, "weights", weights_text(e)),
            _td(f"<code>{_e(short_commit(p))}</code>", short_commit(p), "", p["commit"] or ""),
            _td(f"<code>{_e(p['config_hash'] or '—')}</code>", p["config_hash"] or ""),
            _td(_e(short), short, "", full),
        ]
        body.append(f'<tr class="{_row_class(r, a)}" data-method="{_e(e.name)}">{"".join(cells)}</tr>')
    table_id = _slug("t", a.dataset, metric)
    figures = "".join(
        f'<a href="{_e(href)}"><img src="{_e(href)}" alt="{_e(a.dataset)} {_e(metric)}: {_e(name)}"></a>'
        for name, href in _plot_links(a, metric, out)
    )
    return (
        f'<section id="{_slug(a.dataset, metric)}"><h3>{_e(track_label(a, metric))}</h3>'
        f'<table class="sortable ranking" id="{table_id}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>" + (f"<figure>{figures}</figure>" if figures else "") + "</section>"
    )


def _joint_title(x_metric: str, y_metric: str, total: bool) -> str:
    kind = "human + machine" if is_task_metric(y_metric) else "human only: PSNR and MS-SSIM"
    on = ", on total bits (every stream written)" if total else ""
    return f"Joint view ({kind}{on}): {metric_label(x_metric)} × {metric_label(y_metric)}"


def _joint_text(total: bool) -> str:
    text = "Pareto set over the two BD-rates (lower is better on both), anchor at (0, 0)."
    return f"{text} Both BD-rates on bpp_total. {TOTAL_BITS_NOTE}" if total else text


def html_figures(a: DatasetAnalysis) -> list[str]:
    """JPEG AI's headline and the complexity table, where the results hold what they need."""
    parts = []
    headline = a.jpeg_ai_headline()
    if headline:
        parts += ["<h3>JPEG AI's headline: mean BD-rate over its seven metrics</h3>"]
        parts += [f'<p class="meta">{_e(JPEG_AI_NOTE)}</p>', "<table><tr><th>method</th><th>mean BD-rate [%]</th></tr>"]
        for e in a.entries:
            if e.name in headline:
                parts.append(f"<tr><td>{_e(display_name(e))}</td><td>{_e(str(headline[e.name]))}</td></tr>")
        parts.append("</table>")
    complexity = complexity_rows(a)
    if complexity:
        header, rows, note = complexity
        parts += ["<h3>Complexity</h3>", f'<p class="meta">{_e(note)}</p>', "<table><tr>"]
        parts += [f"<th>{_e(h)}</th>" for h in header] + ["</tr>"]
        parts += ["<tr>" + "".join(f"<td>{_e(str(v))}</td>" for v in row) + "</tr>" for row in rows]
        parts.append("</table>")
    return parts


def html_joint(
    a: DatasetAnalysis, x_metric: str, y_metric: str, plot: Path | None, out: Path, *, total: bool = False
) -> str:
    on = " on total bits" if total else ""
    head = "".join(
        [
            _th("method", "method"),
            _th("family", "family"),
            _th(f"BD-rate {metric_label(x_metric)}{on} [%]", "bd-x", True),
            _th(f"BD-rate {metric_label(y_metric)}{on} [%]", "bd-y", True),
            _th("Pareto", "pareto"),
            _th("samples", "samples"),
        ]
    )
    rows = []
    for p in joint_view(a, x_metric, y_metric, total=total):
        cls = "pareto" if p.pareto else ("anchor" if p.entry is a.anchor else "")
        cls += "" if p.entry.rankable else (" excluded" if p.entry in a.excluded else " partial")
        name = _td(_e(display_name(p.entry)), p.entry.name)
        if p.error:
            cells = [name, _td(_e(p.entry.family or "—"))]
            shown = "not ranked" if p.entry in a.excluded else "n/a"
            cells += [_td(shown, "", "num fail", p.error), _td(shown, "", "num fail", p.error), _td("—", "z")]
            cells.append(_td(_e(p.error if p.entry in a.excluded else ""), ""))
        else:
            cells = [
                name,
                _td(_e(p.entry.family or "—")),
                _td(_e(f"{p.x:+.2f}"), p.x, "num"),
                _td(_e(f"{p.y:+.2f}"), p.y, "num"),
                _td("yes" if p.pareto else "no", "a" if p.pareto else "b"),
                _td(_e(p.basis or "own curves")),
            ]
        rows.append(f'<tr class="{cls.strip()}" data-method="{_e(p.entry.name)}">{"".join(cells)}</tr>')
    fig = ""
    if plot is not None:
        href = Path(os.path.relpath(plot, out)).as_posix()
        fig = f'<figure><a href="{_e(href)}"><img src="{_e(href)}" alt="joint view {_e(a.dataset)}"></a></figure>'
    prefix = "jt" if total else "j"
    return (
        f'<section id="{_slug(a.dataset, "joint-total" if total else "joint", x_metric, y_metric)}">'
        f"<h3>{_e(_joint_title(x_metric, y_metric, total))}</h3>"
        f'<p class="meta">{_e(_joint_text(total))}</p>'
        f'<table class="sortable joint" id="{_slug(prefix, a.dataset, x_metric, y_metric)}">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{fig}</section>"
    )


@dataclass
class Board:
    """What was built: the pages and the analyses they show."""

    html: Path
    markdown: Path
    csv: Path
    analyses: list[DatasetAnalysis]
    joint_plots: dict[tuple[str, str, str], Path]
    #: the joint views on total bits (``bpp_total``), for datasets with an MBID method
    total_joint_plots: dict[tuple[str, str, str], Path] = field(default_factory=dict)


def render_html(
    analyses: Sequence[DatasetAnalysis],
    out: Path,
    joint_plots: dict[tuple[str, str, str], Path],
    *,
    sources: Sequence[str],
    settings: str,
    generated: str,
    total_plots: dict[tuple[str, str, str], Path] | None = None,
) -> str:
    nav = "".join(f'<a href="#{_slug(a.dataset)}">{_e(a.dataset)}</a>' for a in analyses)
    parts = [
        '<!doctype html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>hmc-bench leaderboard</title><style>{CSS}</style></head><body>",
        "<header><h1>hmc-bench leaderboard</h1>",
        f'<p class="meta">Generated {_e(generated)} from {_e(", ".join(map(shown_path, sources)))}. {_e(settings)} '
        "Click a column header to sort.</p></header>",
        f"<nav>{nav}</nav>",
    ]
    for a in analyses:
        parts.append(f'<section id="{_slug(a.dataset)}"><h2>{_e(a.dataset)}</h2>')
        parts.append(f'<p class="meta samples">{_e(dataset_caption(a))}.</p>')
        if a.excluded:
            parts.append(f'<p class="meta excluded">Not ranked: {_e("; ".join(not_ranked(a)))}.</p>')
        if a.anchor is None:
            parts.append(f"<p>No ranking: {_e(a.anchor_note)}.</p></section>")
            continue
        note = f" ({_e(a.anchor_note)})" if a.anchor_note else ""
        parts.append(
            f"<p>Anchor: <strong>{_e(a.anchor.name)}</strong> ({_e(a.anchor.family or 'reference')}){note}.</p>"
        )
        for metric in track_metrics(a):
            parts.append(html_ranking(a, metric, out))
        others = other_task_metrics(a)
        if others:
            parts.append(
                f'<p class="meta">Other task metrics ({_e(", ".join(others))}): BD figures in '
                "<code>leaderboard.csv</code> and <code>python -m bench report</code>.</p>"
            )
        for x_metric, y_metric in joint_axes(a):
            parts.append(html_joint(a, x_metric, y_metric, joint_plots.get((a.dataset, x_metric, y_metric)), out))
        for x_metric, y_metric in total_joint_axes(a):
            plot = (total_plots or {}).get((a.dataset, x_metric, y_metric))
            parts.append(html_joint(a, x_metric, y_metric, plot, out, total=True))
        parts += html_figures(a)
        if a.notes:
            parts.append("<details><summary>Notes</summary><ul>")
            parts += [f"<li>{_e(n)}</li>" for n in a.notes]
            parts.append("</ul></details>")
        parts.append("</section>")
    parts.append(f"<script>{JS}</script></body></html>")
    return "\n".join(parts) + "\n"


def _markdown_joint(
    a: DatasetAnalysis, x_metric: str, y_metric: str, plot: Path | None, out: Path, *, total: bool
) -> list[str]:
    on = " on total bits" if total else ""
    rows = [
        [
            display_name(p.entry),
            p.entry.family or "—",
            "n/a" if p.error else f"{p.x:+.2f}",
            "n/a" if p.error else f"{p.y:+.2f}",
            "—" if p.error else ("yes" if p.pareto else "no"),
            (p.error if p.entry in a.excluded else "") if p.error else (p.basis or "own curves"),
        ]
        for p in joint_view(a, x_metric, y_metric, total=total)
    ]
    header = ["method", "family", f"BD-rate {metric_label(x_metric)}{on} [%]"]
    header += [f"BD-rate {metric_label(y_metric)}{on} [%]", "Pareto", "samples"]
    title = f"Joint view{on}: {metric_label(x_metric)} × {metric_label(y_metric)}"
    lines = ["", f"### {title}", ""] + ([TOTAL_BITS_NOTE, ""] if total else []) + [md_table(header, rows)]
    if plot is not None:
        lines += ["", f"[joint plot{on}]({Path(os.path.relpath(plot, out)).as_posix()})"]
    return lines


def render_markdown(
    analyses: Sequence[DatasetAnalysis],
    out: Path,
    joint_plots: dict[tuple[str, str, str], Path],
    *,
    sources: Sequence[str],
    settings: str,
    generated: str,
    total_plots: dict[tuple[str, str, str], Path] | None = None,
) -> str:
    lines = [
        "# hmc-bench leaderboard",
        "",
        f"Generated {generated} from {', '.join(map(shown_path, sources))}. {settings}",
    ]
    for a in analyses:
        lines += ["", f"## {a.dataset}", "", f"{dataset_caption(a)}.", ""]
        if a.excluded:
            lines += [f"Not ranked: {'; '.join(not_ranked(a))}.", ""]
        if a.anchor is None:
            lines.append(f"No ranking: {a.anchor_note}.")
            continue
        lines.append(f"Anchor: **{a.anchor.name}** ({a.anchor.family or 'reference'}).")
        for metric in track_metrics(a):
            rows = []
            for r in ranking(a, metric):
                e, p = r.entry, r.entry.provenance()
                rows.append(
                    [
                        r.rank or "—",
                        display_name(e),
                        e.family or "—",
                        r.bd_text(),
                        _num(r.bd_metric) or "—",
                        n_text(e, metric)[0],
                        e.bpp_source or "—",
                        training_summary(e),
                        short_commit(p),
                        p["config_hash"] or "—",
                        _versions(e)[0],
                    ]
                )
            header = ["#", "method", "family", "BD-rate [%]", f"BD-{metric_label(metric)} [{axis_unit(metric)}]"]
            header += ["n", "bpp source", "training", "commit", "config hash", "versions"]
            lines += ["", f"### {track_label(a, metric)}", "", md_table(header, rows)]
            links = _plot_links(a, metric, out)
            if links:
                lines += ["", " · ".join(f"[{name}]({href})" for name, href in links)]
        others = other_task_metrics(a)
        if others:
            lines += ["", f"Other task metrics ({', '.join(others)}): BD figures in leaderboard.csv."]
        for x_metric, y_metric in joint_axes(a):
            plot = joint_plots.get((a.dataset, x_metric, y_metric))
            lines += _markdown_joint(a, x_metric, y_metric, plot, out, total=False)
        for x_metric, y_metric in total_joint_axes(a):
            plot = (total_plots or {}).get((a.dataset, x_metric, y_metric))
            lines += _markdown_joint(a, x_metric, y_metric, plot, out, total=True)
        headline = a.jpeg_ai_headline()
        if headline:
            rows = [[display_name(e), str(headline[e.name])] for e in a.entries if e.name in headline]
            lines += ["", "### JPEG AI's headline: mean BD-rate over its seven metrics", "", JPEG_AI_NOTE, ""]
            lines.append(md_table(["method", "mean BD-rate [%]"], rows))
        complexity = complexity_markdown(a)
        if complexity:
            lines += ["", "### Complexity", "", complexity]
        if a.notes:
            lines += ["", "Notes:", ""] + [f"- {n}" for n in a.notes]
    return "\n".join(lines) + "\n"


def build(
    by_dataset: dict[str, list[Entry]],
    out: Path,
    *,
    anchor: str | None = None,
    monotone: str = "refuse",
    min_overlap: float = DEFAULT_MIN_OVERLAP,
    sources: Sequence[str] = (),
    include_partial: bool = False,
) -> Board:
    """Analyse, plot and write ``index.html``, ``leaderboard.md`` and ``leaderboard.csv`` into ``out``.

    Only complete runs without failures are ranked unless ``include_partial`` (then the others are ranked too,
    marked partial); see :func:`bench.analysis.report.analyse`.
    """
    analyses = analyse(
        by_dataset, anchor=anchor, monotone=monotone, min_overlap=min_overlap, include_partial=include_partial
    )
    joint_plots: dict[tuple[str, str, str], Path] = {}
    total_plots: dict[tuple[str, str, str], Path] = {}
    for a in analyses:
        folder = out / "plots" / a.dataset
        write_plots(replace(a, metrics=track_metrics(a)), folder)  # fills a.plots (the same dict)
        if a.anchor is None:
            continue
        for total, axes, plots in ((False, joint_axes(a), joint_plots), (True, total_joint_axes(a), total_plots)):
            for x_metric, y_metric in axes:
                pts = joint_view(a, x_metric, y_metric, total=total)
                if any(p.error is None for p in pts):
                    kind = "joint-total" if total else "joint"
                    path = folder / f"{kind}-{file_part(x_metric)}-{file_part(y_metric)}.png"
                    title = f"{a.dataset}: BD-rates{' on total bits' if total else ''} vs {a.anchor.name}"
                    plot = plot_joint(pts, x_metric, y_metric, title, path, total=total)
                    plots[(a.dataset, x_metric, y_metric)] = plot
    generated = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    settings = f"BD-rate pairwise against the anchor (PCHIP), monotone={monotone}, min overlap {min_overlap:.0%}. "
    if include_partial:
        ranked = "Partial runs and runs with failed rows are ranked too (--include-partial), marked (partial)."
    else:
        ranked = "Only complete runs without failed rows are ranked; the others are listed with the reason."
    settings += f"{SAME_SAMPLES_RULE} {ranked}"
    kw = {"sources": sources, "settings": settings, "generated": generated, "total_plots": total_plots}
    html_path, md_path, csv_path = out / "index.html", out / "leaderboard.md", out / "leaderboard.csv"
    atomic_write_text(html_path, render_html(analyses, out, joint_plots, **kw))
    atomic_write_text(md_path, render_markdown(analyses, out, joint_plots, **kw))
    cells = cells_frame(c for a in analyses for c in (*a.cells, *a.total_cells))
    atomic_write_text(csv_path, cells.to_csv(index=False))
    return Board(html_path, md_path, csv_path, list(analyses), joint_plots, total_plots)


def load_with_overrides(roots: Sequence[Path]) -> tuple[dict[str, list[Entry]], list[str]]:
    """Entries of several roots; a later root's method replaces an earlier root's on the same dataset."""
    merged: dict[str, dict[str, Entry]] = {}
    notes = []
    for root in roots:
        for dataset, entries in load_roots([root]).items():
            slot = merged.setdefault(dataset, {})
            for e in entries:
                if e.name in slot:
                    notes.append(f"{dataset}/{e.name}: {e.path} replaces {slot[e.name].path}")
                slot[e.name] = e
    return {ds: list(v.values()) for ds, v in sorted(merged.items())}, notes


def ranking_line(rows: Sequence[Row]) -> str:
    """``1. jpeg (+0.00%), 2. webp [partial] (-34.90%, over the 2 samples both measured); not ranked: ...``."""

    def ranked(r: Row) -> str:
        basis = r.cell.basis() if r.cell is not None else None
        return f"{r.rank}. {r.entry.name}{'' if r.entry.rankable else ' [partial]'} ({r.bd_rate:+.2f}%" + (
            f", {basis})" if basis else ")"
        )

    text = ", ".join(ranked(r) for r in rows if r.rank)
    failed = "; ".join(f"{r.entry.name} ({r.error if r.excluded else short_reason(r.error)})" for r in rows if r.error)
    return (text or "no BD-rate figures") + (f"; not ranked: {failed}" if failed else "")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench leaderboard", description="HTML + markdown leaderboard")
    parser.add_argument("--results", action="append", default=[], help="results folder (repeatable)")
    parser.add_argument(
        "--no-committed", action="store_true", help="leave out the repository's committed results/ folder"
    )
    parser.add_argument("--out", default=os.path.join("reports", "leaderboard"), help="output folder")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    roots = [] if args.no_committed else [committed_results()]
    roots = [r for r in roots if r.is_dir()] + [Path(r) for r in args.results]
    if not roots:
        print("error: no results folder: pass --results DIR", file=sys.stderr)
        return 2
    try:
        by_dataset, notes = load_with_overrides(roots)
        if args.dataset:
            by_dataset = {k: v for k, v in by_dataset.items() if k in args.dataset}
        by_dataset = attach_references(by_dataset, load_references(args.reference))
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not any(any(not e.reference for e in v) for v in by_dataset.values()):
        where = ", ".join(map(str, roots))
        print(f"error: no results (<dataset>/<method>.json) under {where}", file=sys.stderr)
        return 2
    if args.anchor and not any(pick_anchor(v, args.anchor)[0] for v in by_dataset.values()):
        names = sorted({e.name for v in by_dataset.values() for e in v})
        print(f"error: anchor {args.anchor!r} is in no dataset; methods: {', '.join(names)}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"note: {note}")
    board = build(
        by_dataset,
        Path(args.out),
        anchor=args.anchor,
        monotone=args.monotone,
        min_overlap=args.min_overlap,
        sources=[str(r) for r in roots],
        include_partial=args.include_partial,
    )
    for a in board.analyses:
        anchor = f"anchor {a.anchor.name}" if a.anchor else f"no ranking ({a.anchor_note})"
        print(f"{a.dataset}: {anchor}; {dataset_caption(a)}")
        for metric in track_metrics(a):
            print(f"{a.dataset} {metric}: {ranking_line(ranking(a, metric))}")
        for x_metric, y_metric in total_joint_axes(a):
            pts = [p for p in joint_view(a, x_metric, y_metric, total=True) if p.error is None]
            shown = ", ".join(f"{p.entry.name} ({p.x:+.2f}%, {p.y:+.2f}%{', Pareto' if p.pareto else ''})" for p in pts)
            print(f"{a.dataset} joint on total bits ({x_metric}, {y_metric}): {shown or 'no BD-rate figures'}")
    print(f"leaderboard: {board.html} and {board.markdown}")
    return 0
