"""``python -m bench report``: BD tables equal ``bench.analysis.bdrate`` called directly; failures are cells."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import results_builder as RB
from conftest import assets_dir, requires_assets

from bench.analysis import comparison, plots, report, results
from bench.analysis.bdrate import bd_metric, bd_rate
from bench.analysis.rdcurves import RDCurve

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "results" / "golden" / "smoke"

BPP = [0.25, 0.5, 1.0, 2.0]
PSNR = [28.0, 31.0, 34.0, 37.0]
MSSSIM = [0.90, 0.95, 0.975, 0.99]


def bench(*args: str, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def doc(name: str, bpp, family: str | None = "SBAR", meta: dict | None = None, **results) -> dict:
    """A results JSON in our format with the given curves (``ms_ssim_rgb`` -> ``ms-ssim-rgb``)."""
    res = {"bpp": list(bpp), **{k.replace("_", "-"): v for k, v in results.items()}}
    base_meta = {"family": family, "bpp_source": "bitstream", "config_hash": f"hash-{name}"}
    base_meta["provenance"] = {"git": {"commit": "0123456789abcdef", "dirty": False}, "versions": {"numpy": "1"}}
    return {"name": name, "description": name, "results": res, "meta": {**base_meta, **(meta or {})}}


def write(root: Path, dataset: str, document: dict, stem: str | None = None) -> Path:
    path = root / dataset / f"{stem or document['name']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


def toy_results(root: Path) -> Path:
    """An anchor, a method 20 % cheaper, and curves BD must refuse, each for its own reason."""
    write(root, "toy", doc("jpeg", BPP, psnr_rgb=PSNR, ms_ssim_rgb=MSSSIM))
    write(root, "toy", doc("fast", [b * 0.8 for b in BPP], family="MBHD", psnr_rgb=PSNR, ms_ssim_rgb=MSSSIM))
    write(root, "toy", doc("better", BPP, family="SBMD", psnr_rgb=[p + 1.0 for p in PSNR], ms_ssim_rgb=MSSSIM))
    write(root, "toy", doc("wobbly", BPP, psnr_rgb=[28.0, 31.0, 30.5, 37.0], ms_ssim_rgb=MSSSIM))
    write(root, "toy", doc("single", [0.5], psnr_rgb=[31.0], ms_ssim_rgb=[0.95]))
    write(root, "toy", doc("holey", BPP, psnr_rgb=[28.0, None, 34.0, 37.0], ms_ssim_rgb=MSSSIM))
    write(root, "toy", doc("narrow", BPP, psnr_rgb=[35.5, 36.0, 36.5, 37.0], ms_ssim_rgb=MSSSIM))
    write(root, "toy", doc("ssimonly", BPP, ms_ssim_rgb=MSSSIM))
    write(root, "toy", doc("short", BPP, psnr_rgb=PSNR[:3], ms_ssim_rgb=MSSSIM))
    return root


@pytest.fixture(scope="module")
def toy_report(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    base = tmp_path_factory.mktemp("toy")
    root = toy_results(base / "res")
    res = bench("report", "--results", str(root), "--out", str(base / "rep"), cwd=base)
    return root, base / "rep", res


def _csv(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "bd.csv", float_precision="round_trip")


def _curve(name: str, bpp, values, metric: str) -> RDCurve:
    return RDCurve(name, np.array(bpp, dtype=float), np.array(values, dtype=float), metric)


def test_bd_table_equals_bdrate_called_directly(toy_report):
    _, out, res = toy_report
    assert res.returncode == 0, res.stderr
    table = _csv(out)
    anchor = _curve("jpeg", BPP, PSNR, "psnr-rgb")
    fast = _curve("fast", [b * 0.8 for b in BPP], PSNR, "psnr-rgb")
    better = _curve("better", BPP, [p + 1 for p in PSNR], "psnr-rgb")

    def value(method: str, metric: str, quantity: str) -> float:
        row = table[(table.method == method) & (table.metric == metric) & (table.quantity == quantity)]
        assert len(row) == 1 and pd.isna(row.error.iloc[0]), row
        return float(row.value.iloc[0])

    assert value("fast", "psnr-rgb", "bd-rate") == bd_rate(anchor, fast).value
    assert value("fast", "psnr-rgb", "bd-rate") == pytest.approx(-20.0, abs=1e-9)
    assert value("better", "psnr-rgb", "bd-metric") == bd_metric(anchor, better).value
    assert value("better", "psnr-rgb", "bd-metric") == pytest.approx(1.0, abs=1e-9)
    a_ssim = _curve("jpeg", BPP, MSSSIM, "ms-ssim-rgb")
    f_ssim = _curve("fast", [b * 0.8 for b in BPP], MSSSIM, "ms-ssim-rgb")
    assert value("fast", "ms-ssim-rgb", "bd-rate") == bd_rate(a_ssim, f_ssim).value
    assert set(table.anchor) == {"jpeg"}  # the default anchor
    md = (out / "report.md").read_text()
    assert "| fast | MBHD | bitstream | -20.00 |" in md
    assert "BD-rate psnr-rgb fast vs jpeg: -20.00" in res.stdout


def test_bd_failures_are_cells_with_reasons_not_crashes(toy_report):
    _, out, res = toy_report
    table = _csv(out)
    psnr = table[(table.metric == "psnr-rgb") & (table.quantity == "bd-rate")].set_index("method")
    assert "'wobbly' is not monotone" in psnr.loc["wobbly", "error"]
    assert "'single' has 1 point(s)" in psnr.loc["single", "error"]
    assert "'holey': non-finite point(s)" in psnr.loc["holey", "error"]
    assert "below min_overlap" in psnr.loc["narrow", "error"] and "'narrow'" in psnr.loc["narrow", "error"]
    assert "short.json" in psnr.loc["short", "error"] and "lengths must match" in psnr.loc["short", "error"]
    assert "ssimonly" not in psnr.index  # no PSNR curve: no cell, not a failure
    md = (out / "report.md").read_text()
    for shown in ("n/a: not monotone", "n/a: 1 point(s), too few", "n/a: NaN/inf points", "n/a: malformed curve"):
        assert shown in md
    assert "[^1]:" in md  # the full messages as footnotes
    assert "Traceback" not in res.stderr


def test_plots_and_provenance_in_markdown(toy_report):
    _, out, _ = toy_report
    for name in ("rd-psnr-rgb.png", "reldiff-psnr-rgb.png", "rd-ms-ssim-rgb.png", "reldiff-ms-ssim-rgb.png"):
        assert (out / "toy" / name).stat().st_size > 5000
    md = (out / "report.md").read_text()
    assert "](toy/rd-psnr-rgb.png)" in md and "](toy/reldiff-psnr-rgb.png)" in md
    assert "0123456789+" not in md and "| 0123456789 | hash-fast |" in md
    assert "Package versions (all methods): numpy 1" in md


def test_mismatched_metrics_name_the_anchor():
    a = results.parse_document(doc("jpeg", BPP, psnr_rgb=PSNR), Path("jpeg.json"), "toy")
    t_doc = doc("task", BPP, mAP=[0.2, 0.3, 0.4, 0.5], lpips=[0.3, 0.2, 0.1, 0.05])
    t = results.parse_document(t_doc, Path("t.json"), "toy")
    (analysis,) = comparison.analyse({"toy": [a, t]})
    assert analysis.metrics == ["psnr-rgb", "mAP"]
    assert analysis.cell("task", "mAP").error == "anchor 'jpeg' has no 'mAP' curve"
    assert analysis.cell("task", "psnr-rgb") is None
    assert any("lpips" in n for n in analysis.notes)  # not a known quality axis: listed, not guessed


def test_line_styles_by_family_anchor_dashed():
    anchor = results.Entry("jpeg", "d", Path("jpeg.json"), family="SBAR")
    entries = {f: results.Entry(f, "d", Path("x"), family=f) for f in results.FAMILIES}
    styles = {f: plots.line_style(e, anchor, "k")["linestyle"] for f, e in entries.items()}
    assert len(set(map(str, styles.values()))) == 4
    assert plots.line_style(anchor, anchor, "k")["linestyle"] == "--"
    ref = results.Entry("ref", "d", Path("r.json"), reference=True)
    assert plots.line_style(ref, anchor, "k")["marker"] == "x"


def test_monotone_fit_option_matches_bdrate():
    a = results.parse_document(doc("jpeg", BPP, psnr_rgb=PSNR), Path("jpeg.json"), "toy")
    w = results.parse_document(doc("wobbly", BPP, psnr_rgb=[28.0, 31.0, 30.5, 37.0]), Path("w.json"), "toy")
    (analysis,) = comparison.analyse({"toy": [a, w]}, monotone="fit")
    cell = analysis.cell("wobbly", "psnr-rgb")
    assert cell.error is None and cell.monotone_fit
    assert cell.value == bd_rate(a.curves["psnr-rgb"], w.curves["psnr-rgb"], monotone="fit").value


def test_relative_difference_over_common_range():
    a = _curve("a", BPP, PSNR, "psnr-rgb")
    t = _curve("t", [0.5, 1.0, 2.0, 4.0], [p + 2 for p in PSNR], "psnr-rgb")
    x, d = comparison.relative_difference(a, t)
    assert x.min() == pytest.approx(0.5) and x.max() == pytest.approx(2.0)
    same = comparison.relative_difference(a, _curve("s", BPP, [p + 1.5 for p in PSNR], "psnr-rgb"))[1]
    np.testing.assert_allclose(same, 1.5, atol=1e-12)
    with pytest.raises(ValueError, match="no common bpp range"):
        comparison.relative_difference(a, _curve("far", [3, 4], [40, 41], "psnr-rgb"))


def test_references_in_plots_and_bd_tables(tmp_path):
    root = tmp_path / "res"
    write(root, "toy", doc("jpeg", BPP, psnr_rgb=PSNR, ms_ssim_rgb=MSSSIM))
    refs = tmp_path / "refs"
    refs.mkdir()
    db = [-10 * math.log10(1 - v) for v in MSSSIM]
    # CompressAI's published files: no meta, MS-SSIM in dB, names that repeat across files
    for stem in ("paper-x_mse", "paper-x_ms-ssim"):
        (refs / f"{stem}.json").write_text(
            json.dumps(
                {"name": "x", "results": {"bpp": [b * 0.5 for b in BPP], "psnr-rgb": PSNR, "ms-ssim-db-rgb": db}}
            )
        )
    res = bench(
        "report", "--results", str(root), "--out", str(tmp_path / "rep"), "--reference", f"toy={refs}", cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    table = _csv(tmp_path / "rep")
    refrows = table[table.reference & (table.quantity == "bd-rate")]
    assert set(refrows.method) == {"paper-x_mse", "paper-x_ms-ssim"}  # stems where names repeat
    ssim = refrows[refrows.metric == "ms-ssim-rgb"].value.iloc[0]
    expected = bd_rate(
        _curve("a", BPP, MSSSIM, "ms-ssim-rgb"), _curve("r", [b * 0.5 for b in BPP], MSSSIM, "ms-ssim-rgb")
    )
    assert ssim == pytest.approx(expected.value, rel=1e-9) and ssim == pytest.approx(-50.0, abs=1e-6)
    assert "paper-x_mse (ref)" in (tmp_path / "rep" / "report.md").read_text()


def test_per_class_and_task_metric_rate_key(tmp_path):
    """Task metrics as the runner writes them (``<task>/<metric>`` on ``bpp@<task>``) and per-class columns."""
    machine = [0.1, 0.2, 0.4, 0.8]
    ap = {"person": [0.30, 0.40, 0.50, 0.55], "car": [0.20, 0.30, 0.35, 0.40]}

    def task_doc(name, family, machine_bpp, car):
        d = doc(name, BPP, family=family, psnr_rgb=PSNR)
        d["results"].update({"bpp@detection": machine_bpp, "detection/mAP": [0.25, 0.35, 0.42, 0.47]})
        d["results"].update({"detection/n": [3, 3, 3, 3], "detection/AP/person": ap["person"], "detection/AP/car": car})
        return d

    root = tmp_path / "res"
    write(root, "coco", task_doc("jpeg", "SBAR", machine, ap["car"]))
    write(root, "coco", task_doc("mbid", "MBID", [b * 0.5 for b in machine], [0.2, 0.3, 0.3, 0.4]))
    res = bench("report", "--results", str(root), "--out", str(tmp_path / "rep"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    table = _csv(tmp_path / "rep")
    task = table[(table.metric == "detection/mAP") & (table.quantity == "bd-rate")]
    assert task.value.iloc[0] == pytest.approx(-50.0, abs=1e-9)  # the machine stream's bits, not the human bpp
    per_class = pd.read_csv(tmp_path / "rep" / "per-class-bd.csv", float_precision="round_trip").set_index("class")
    half = _curve("t", [b * 0.5 for b in machine], ap["person"], "detection/AP")
    person = bd_rate(_curve("a", machine, ap["person"], "detection/AP"), half)
    assert per_class.loc["person", "value"] == person.value
    assert "not monotone" in per_class.loc["car", "error"]
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "detection/AP, BD-rate per class vs jpeg" in md and "BD-rate detection/mAP [%]" in md
    assert "BD-detection/mAP [pp]" in md and "ignored" not in md
    assert (tmp_path / "rep" / "coco" / "rd-detection_mAP.png").stat().st_size > 5000


def test_nested_per_class_and_rate_key_override():
    d = doc("m", BPP, psnr_rgb=PSNR, meta={"rate_keys": {"seg/mIoU": "bits"}})
    d["results"].update(
        {"bits": [1, 2, 3, 4], "seg/mIoU": [0.1, 0.2, 0.3, 0.4], "per_class": {"seg/IoU": {"a": [0] * 4}}}
    )
    e = results.parse_document(d, Path("m.json"), "x")
    assert e.curves["seg/mIoU"].rates.tolist() == [1, 2, 3, 4] and set(e.per_class["seg/IoU"]) == {"a"}
    bad = doc("m", BPP, psnr_rgb=PSNR)
    bad["results"]["per_class"] = [1, 2]
    assert "per_class must map" in results.parse_document(bad, Path("m.json"), "x").curve_errors["per_class"]


def test_malformed_results_json_is_one_error_naming_the_file(tmp_path):
    root = tmp_path / "res"
    write(root, "toy", doc("jpeg", BPP, psnr_rgb=PSNR))
    (root / "toy" / "broken.json").write_text('{"name": "broken", "results": {"bpp": [0.1,')
    res = bench("report", "--results", str(root), "--out", str(tmp_path / "rep"), cwd=tmp_path)
    assert res.returncode == 2
    assert "broken.json: not valid JSON" in res.stderr and "Traceback" not in res.stderr
    (root / "toy" / "broken.json").write_text(json.dumps({"name": "broken", "bpp": [1]}))
    with pytest.raises(results.ResultsError, match=r"broken\.json: no 'results' object"):
        results.load_roots([root])
    (root / "toy" / "broken.json").write_text(json.dumps({"results": {"psnr-rgb": [30]}}))
    with pytest.raises(results.ResultsError, match=r"broken\.json: results have no 'bpp' \(keys: psnr-rgb\)"):
        results.load_roots([root])


def test_anchor_choice(tmp_path):
    root = tmp_path / "res"
    write(root, "toy", doc("webp", BPP, psnr_rgb=PSNR))
    write(root, "toy", doc("avif", BPP, psnr_rgb=PSNR))
    (a,) = comparison.analyse(results.load_roots([root]))
    assert a.anchor.name == "avif" and "no 'jpeg' here" in a.anchor_note
    res = bench("report", "--results", str(root), "--out", str(tmp_path / "rep"), "--anchor", "vtm", cwd=tmp_path)
    assert res.returncode == 2 and "anchor 'vtm' is in no dataset; methods: avif, webp" in res.stderr


def test_report_on_real_results_with_compressai_reference(tmp_path):
    """The committed golden results (a real run) against CompressAI's published JPEG curve, when assets are here."""
    root = tmp_path / "res"
    shutil.copytree(GOLDEN / "samples", root / "samples")
    args = ["report", "--results", str(root), "--out", str(tmp_path / "rep")]
    assets = assets_dir()
    ref = assets / "reference_rd" / "compressai_kodak" / "jpeg.json" if assets else None
    if ref is not None and ref.exists():
        args += ["--reference", str(ref)]
    res = bench(*args, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    md = (tmp_path / "rep" / "report.md").read_text()
    golden = json.loads((GOLDEN / "samples" / "webp.json").read_text())
    assert golden["meta"]["provenance"]["git"]["commit"][:10] in md and golden["meta"]["config_hash"] in md
    assert "| pillow " in md and "Package versions (all methods): python " in md
    if ref is not None and ref.exists():
        assert "JPEG (ref)" in md


@pytest.mark.assets
@requires_assets
def test_compressai_published_references_load():
    folder = assets_dir() / "reference_rd" / "compressai_kodak"
    if not folder.is_dir():
        pytest.skip(f"{folder} is not there")
    ((_, entries),) = results.load_references([str(folder)])
    names = {e.name for e in entries}
    assert "JPEG" in names and "compressai-mbt2018_mse_cpu" in names  # repeated names -> stems
    elic = next(e for e in entries if e.name == "paper-elic2022_ms-ssim")
    assert set(elic.curves) == {"ms-ssim-rgb"} and (elic.curves["ms-ssim-rgb"].values < 1).all()


# ---------------------------------------------------------------------------------------------------------------
# CompressAI's plotting reads our results JSON


@pytest.fixture(scope="module")
def real_results(tmp_path_factory) -> Path:
    """A real ``python -m bench run`` output (with ``rate``, ``meta``, timings), small."""
    base = tmp_path_factory.mktemp("real")
    res = bench(
        "run",
        "method=jpeg",
        "method.rates=[10,50,90]",
        "limit=2",
        f"results_dir={base / 'res'}",
        "progress=false",
        "workers=1",
        cwd=base,
    )
    assert res.returncode == 0, res.stderr
    return base / "res" / "samples" / "jpeg.json"


def _compressai_plot():
    pytest.importorskip("compressai")
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    from compressai.utils.plot import __main__ as plot

    return plot


def test_compressai_plot_reads_our_results_json(real_results, tmp_path):
    plot = _compressai_plot()
    ours = json.loads(real_results.read_text())
    assert {"rate", "encoding_time"} <= set(ours["results"]) and "meta" in ours
    parsed = plot.parse_json_file(real_results, "psnr")
    assert parsed["name"] == "jpeg" and parsed["xs"] == ours["results"]["bpp"]
    for metric in ("psnr", "ms-ssim"):
        out = tmp_path / f"{metric}.png"
        plot.main(["-f", str(real_results), "-m", metric, "-o", str(out), "--figsize", "4", "3"])
        assert out.stat().st_size > 5000
    import matplotlib.pyplot as plt

    plt.close("all")


def test_compressai_plot_with_an_undefined_value(real_results, tmp_path):
    plot = _compressai_plot()
    doc_ = json.loads(real_results.read_text())
    doc_["results"]["ms-ssim-rgb"][0] = float("nan")  # what the store writes for a rate point with no defined MS-SSIM
    path = tmp_path / "jpeg.json"
    path.write_text(json.dumps(doc_))
    plot.parse_json_file(path, "ms-ssim")


# ---------------------------------------------------------------------------------------------------------------
# what stands behind a figure: complete runs, shared samples, per-rate n, lossless rows, weights, total bits


def _bd_rows(out: Path) -> pd.DataFrame:
    table = _csv(out)
    return table[(table.quantity == "bd-rate") & (table.rate_axis != "bpp_total")]


def test_partial_run_is_listed_with_its_reason_not_compared(tmp_path):
    """A full sweep and one shard of another: the shard is listed with why, and gets no BD figure by default."""
    root = tmp_path / "res"
    full = [r for s in RB.SAMPLES for r in RB.sample_rows(s)]
    shard = [r for s in RB.SAMPLES[::3] for r in RB.sample_rows(s, scale=0.7)]  # shard 0/3: 2 of 6 samples
    RB.write_run(root, "kodak", "jpeg", full, sample_set=RB.SAMPLES)
    RB.write_run(root, "kodak", "webp", shard, sample_set=RB.SAMPLES, shard="0/3")
    res = bench("report", "--results", str(root), "--out", str(tmp_path / "rep"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "not compared: kodak: webp: partial: shard 0/3, 2 of 6 samples" in res.stdout
    assert "webp" not in set(_csv(tmp_path / "rep").method)  # no BD figure at all
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "### Not compared (pass --include-partial to compare them, marked partial)" in md
    assert "- webp: partial: shard 0/3, 2 of 6 samples" in md

    # --include-partial: compared over the 2 samples both measured, and marked
    res = bench("report", "--results", str(root), "--out", str(tmp_path / "rep2"), "--include-partial", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    cells = _bd_rows(tmp_path / "rep2").set_index(["method", "metric"])
    shared = RB.SAMPLES[::3]
    a, w = RB.by_hand(full, shared), RB.by_hand(shard, shared)
    expected = bd_rate(
        _curve("a", a["bpp"], a["psnr-rgb"], "psnr-rgb"), _curve("w", w["bpp"], w["psnr-rgb"], "psnr-rgb")
    )
    cell = cells.loc[("webp", "psnr-rgb")]
    assert cell.value == pytest.approx(expected.value, abs=1e-9) and bool(cell.partial) and cell.shared_samples == 2
    assert cell.value == pytest.approx(-30.0, abs=1e-6)  # bpp x 0.7 on the same samples: an exact BD-rate
    md = (tmp_path / "rep2" / "report.md").read_text()
    assert "| webp (partial) | SBAR | bitstream | -30.00 (over the 2 samples both measured) |" in md
    assert "BD-rate psnr-rgb webp [partial] vs jpeg: -30.00 (over the 2 samples both measured)" in res.stdout
    table = pd.read_csv(tmp_path / "rep2" / "kodak" / "rd-table.csv")
    assert set(table[table.method == "webp"]["n"]) == {2} and set(table[table.method == "jpeg"]["n"]) == {6}
    assert table[table.method == "webp"]["partial"].all() and not table[table.method == "jpeg"]["partial"].any()


def test_failed_rows_and_older_files():
    """Failures keep a run out of the ranking; a file without ``complete`` is ranked only without failures or shard."""
    rows = [r for s in RB.SAMPLES[:2] for r in RB.sample_rows(s)]
    rows[1] = {**rows[1], "error": "ValueError: boom", "bpp": None}
    d = results.parse_document(_run_doc(rows, RB.SAMPLES[:2]), Path("r/kodak/m.json"), "kodak")
    assert not d.rankable and d.not_ranked_reason() == "1 failed row" and d.failures == 1
    old = doc("old", BPP, psnr_rgb=PSNR, meta={"failures": [], "samples": 24})
    entry = results.parse_document(old, Path("old.json"), "kodak")
    assert entry.complete is None and entry.rankable and entry.point_counts == {}
    bad = doc("bad", BPP, psnr_rgb=PSNR, meta={"failures": [{"sample": "a", "rate": 1, "error": "x"}] * 3})
    assert results.parse_document(bad, Path("bad.json"), "kodak").not_ranked_reason() == "3 failed rows"
    shard = doc("shard", BPP, psnr_rgb=PSNR, meta={"shard": "1/4", "samples": 24})
    assert results.parse_document(shard, Path("s.json"), "kodak").not_ranked_reason() == "partial: shard 1/4"
    jpeg = results.parse_document(doc("jpeg", BPP, psnr_rgb=PSNR), Path("j.json"), "kodak")
    (a,) = comparison.analyse({"kodak": [jpeg, entry]})
    assert any("completeness not recorded (older results files): jpeg, old; ranked as complete" in n for n in a.notes)
    assert any("samples per rate point (n) not recorded" in n for n in a.notes)


def _run_doc(rows: list[dict], sample_set: list[str]) -> dict:
    from bench.running.store import aggregate, compressai_json

    table = aggregate(pd.DataFrame(rows), RB.RATES)
    failures = [{k: r[k] for k in ("sample", "rate", "error")} for r in rows if r.get("error")]
    meta = {"family": "SBAR", "complete": not failures, "failures": failures, "samples": len(sample_set)}
    meta["missing_rows"] = len(failures)
    return compressai_json("m", "m", table, meta)


def _task(name: str) -> dict:
    return {
        "detection": {"protocol": "ground_truth", "headline": "detection/mAP", "metrics": ["mAP"], "complete": True}
    }


def test_other_sample_sets_compare_over_shared_samples_from_rows(tmp_path):
    """A full run next to one on 4 of its 6 samples: human BD over the 4, recomputed from rows, equals the BD of a run
    on only those 4; the task metric (not a mean of rows) is marked not comparable; lossless rows are counted."""
    root = tmp_path / "res"
    full = [r for s in RB.SAMPLES for r in RB.sample_rows(s)]
    lossless = next(i for i, r in enumerate(full) if r["sample"] == "img1" and r["rate"] == 90)
    full[lossless] = {**full[lossless], "psnr-rgb": math.inf}  # identical images at q90
    mine = [r for s in RB.SAMPLES[:4] for r in RB.sample_rows(s, scale=0.8, gain=0.3)]
    task = {"bpp@detection": [0.2, 0.4, 0.8, 1.6], "detection/mAP": [0.3, 0.4, 0.5, 0.55], "detection/n": [6] * 4}
    RB.write_run(root, "coco", "jpeg", full, sample_set=RB.SAMPLES, tasks=_task("jpeg"), task_results=task)
    task4 = {**task, "bpp@detection": [0.15, 0.3, 0.6, 1.2], "detection/n": [4] * 4}
    RB.write_run(root, "coco", "mine", mine, sample_set=RB.SAMPLES[:4], tasks=_task("mine"), task_results=task4)
    res = bench("report", "--results", str(root), "--out", str(tmp_path / "rep"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    cells = _bd_rows(tmp_path / "rep").set_index(["method", "metric"])

    # the reference: the full run measured on the 4 shared samples only, as its own results file would hold it
    shared = RB.SAMPLES[:4]
    reference = RB.write_run(
        tmp_path / "ref", "coco", "jpeg4", [r for r in full if r["sample"] in shared], sample_set=shared
    )
    ref = results.parse_document(json.loads(reference.read_text()), reference, "coco")
    a, m = RB.by_hand(full, shared), RB.by_hand(mine, shared)
    assert ref.curves["psnr-rgb"].values.tolist() == pytest.approx(a["psnr-rgb"], abs=1e-12)  # lossless left out
    for metric in ("psnr-rgb", "ms-ssim-rgb"):
        expected = bd_rate(ref.curves[metric], _curve("m", m["bpp"], m[metric], metric))
        cell = cells.loc[("mine", metric)]
        assert cell.value == pytest.approx(expected.value, abs=1e-9) and cell.shared_samples == 4, metric
        own = bd_rate(_curve("j", *_own(root, "jpeg", metric), metric), _curve("m", m["bpp"], m[metric], metric))
        assert abs(own.value - cell.value) > 0.5  # the full set's own curve would give another figure
    task_cell = cells.loc[("mine", "detection/mAP")]
    assert pd.isna(task_cell.value) and task_cell.error.startswith("not comparable: 'mine' and 'jpeg' were measured")
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "(over the 4 samples both measured)" in md and "n/a: not comparable: measured on other samples" in md
    assert "| jpeg | 6 | 6 at every point | detection: 6 at every point | 1 at rate 90 [^lossless] | 0 | 0 |" in md
    assert "| mine | 4 | 4 at every point | detection: 4 at every point | 0 | 0 | 0 |" in md
    assert "[^lossless]: Lossless rows: a lossless row (identical images) keeps PSNR = inf" in md
    assert "lossless: coco: jpeg: 1 at rate 90" in res.stdout
    table = pd.read_csv(tmp_path / "rep" / "coco" / "rd-table.csv")
    assert table[table.method == "jpeg"]["n_lossless"].tolist() == [0, 0, 0, 1]

    # without the rows log nothing can be recomputed, and the cell says so
    (root / "coco" / "mine" / "cafe0123" / "rows.jsonl").unlink()
    (analysis,) = comparison.analyse(results.load_roots([root]))
    err = analysis.cell("mine", "psnr-rgb").error
    assert "measured on other samples" in err and "rows log" in err and "is not there" in err


def _own(root: Path, name: str, metric: str) -> tuple[list[float], list[float]]:
    res = json.loads((root / "coco" / f"{name}.json").read_text())["results"]
    return res["bpp"], res[metric]


def test_total_bits_view_for_separate_streams(tmp_path):
    """An MBID method's human bpp and task bpp each count one stream; the total-bits view charges all of them."""
    root = tmp_path / "res"
    jpeg = [r for s in RB.SAMPLES for r in RB.sample_rows(s)]
    mbid = [r for s in RB.SAMPLES for r in RB.sample_rows(s, scale=0.8, total_extra=0.3)]  # + a machine stream
    task = {"detection": {"protocol": "ground_truth", "headline": "detection/mAP", "complete": True}}
    RB.write_run(root, "coco", "jpeg", jpeg, sample_set=RB.SAMPLES, tasks=task, task_results=_det([1, 2, 4, 8]))
    RB.write_run(
        root,
        "coco",
        "mbid",
        mbid,
        sample_set=RB.SAMPLES,
        family="MBID",
        tasks=task,
        task_results=_det([0.3, 0.6, 1.2, 2.4]),
    )
    (a,) = comparison.analyse(results.load_roots([root]))
    assert a.has_total_view
    res_m = json.loads((root / "coco" / "mbid.json").read_text())["results"]
    res_j = json.loads((root / "coco" / "jpeg.json").read_text())["results"]
    assert res_m["bpp_total"] != res_m["bpp"] and res_j["bpp_total"] == res_j["bpp"]
    own = a.cell("mbid", "psnr-rgb").value
    total = a.cell("mbid", "psnr-rgb", total=True)
    expected = bd_rate(
        _curve("j", res_j["bpp_total"], res_j["psnr-rgb"], "psnr-rgb"),
        _curve("m", res_m["bpp_total"], res_m["psnr-rgb"], "psnr-rgb"),
    )
    assert own == pytest.approx(-20.0, abs=1e-6) and total.value == pytest.approx(expected.value, abs=1e-9)
    assert total.value == pytest.approx(10.0, abs=1e-6)  # 0.8 + 0.3 of the anchor's bits with both streams: +10 %
    det = a.cell("mbid", "detection/mAP", total=True)
    assert det.value == pytest.approx(
        bd_rate(
            _curve("j", res_j["bpp_total"], res_j["detection/mAP"], "detection/mAP"),
            _curve("m", res_m["bpp_total"], res_m["detection/mAP"], "detection/mAP"),
        ).value,
        abs=1e-9,
    )
    out = tmp_path / "rep"
    assert report.main(["--results", str(root), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "### BD on total bits (every stream written: bpp_total)" in md
    assert (out / "coco" / "rd-total-psnr-rgb.png").stat().st_size > 5000
    assert "| mbid | MBID | bitstream | +10.00 |" in md.split("### BD on total bits")[1]
    assert "| mbid | MBID | bitstream | -20.00 |" in md.split("### BD against the anchor")[1]


def _det(machine_bpp: list[float]) -> dict:
    return {"bpp@detection": machine_bpp, "detection/mAP": [0.3, 0.4, 0.5, 0.55], "detection/n": [6] * 4}


def test_real_shard_next_to_a_full_sweep(tmp_path):
    """What ``python -m bench run`` writes: a full JPEG sweep and WebP ``shard=0/2`` (2 of 4 images)."""
    common = ["method.rates=[10,50,90]", "limit=4", "results_dir=res", "progress=false", "workers=1"]
    for extra in (["method=jpeg"], ["method=webp", "shard=0/2"]):
        res = bench("run", *extra, *common, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
    webp = json.loads((tmp_path / "res" / "samples" / "webp.json").read_text())
    assert webp["meta"]["complete"] is False and webp["results"]["n"] == [2, 2, 2]
    res = bench("report", "--results", "res", "--out", "rep", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "not compared: samples: webp: partial: shard 0/2, 2 of 4 samples" in res.stdout

    res = bench("report", "--results", "res", "--out", "rep2", "--include-partial", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rows = {
        name: [json.loads(line) for line in (tmp_path / "res" / doc_["meta"]["rows"]).read_text().splitlines()]
        for name, doc_ in (("webp", webp), ("jpeg", json.loads((tmp_path / "res/samples/jpeg.json").read_text())))
    }
    shared = {r["sample"] for r in rows["webp"]}
    assert len(shared) == 2

    def means(name: str, key: str) -> list[float]:
        return [
            float(np.mean([r[key] for r in rows[name] if r["rate"] == q and r["sample"] in shared]))
            for q in (10, 50, 90)
        ]

    expected = bd_rate(
        _curve("jpeg", means("jpeg", "bpp"), means("jpeg", "psnr-rgb"), "psnr-rgb"),
        _curve("webp", means("webp", "bpp"), means("webp", "psnr-rgb"), "psnr-rgb"),
    )
    cell = _bd_rows(tmp_path / "rep2").set_index(["method", "metric"]).loc[("webp", "psnr-rgb")]
    assert cell.value == pytest.approx(expected.value, rel=1e-9) and cell.shared_samples == 2 and bool(cell.partial)


def test_jpeg_ai_headline_is_the_mean_of_seven_bd_rates_and_complexity_is_shown(tmp_path):
    """A method measured with JPEG AI's seven metrics gets their mean BD-rate (computed here from each metric's own
    BD-rate against the anchor); one missing metric means no headline; kMAC and peak memory are tabled."""
    from results_builder import SAMPLES, sample_rows, write_run

    from bench.analysis.bdrate import bd_rate
    from bench.analysis.rdcurves import load_compressai_json
    from bench.metrics.jpeg_ai import JPEG_AI_METRICS

    keys = [m.key for m in JPEG_AI_METRICS]

    def with_suite(rows, shift):
        for r in rows:
            q = r["psnr-rgb"] + shift
            for i, k in enumerate(keys):
                r[k] = (100 - q) / 100 if k == "nlpd-y" else q / 50 + 0.01 * i  # any monotone function of quality
        return rows

    root = tmp_path / "res"
    paths = {}
    for name, scale, shift in (("jpeg", 1.0, 0.0), ("avif", 0.7, 0.0), ("webp", 0.85, 0.0)):
        rows = [r for s in SAMPLES for r in with_suite(sample_rows(s, scale=scale), shift)]
        if name == "webp":
            for r in rows:
                del r["vmaf-y"]  # six of seven: no headline
        paths[name] = write_run(root, "toy", name, rows, sample_set=SAMPLES)
    doc = json.loads(paths["avif"].read_text())
    doc["results"]["kmac_enc"] = [44.9] * 4
    doc["results"]["encode_peak_mib"] = [120.0, 121.0, 122.0, 130.0]
    paths["avif"].write_text(json.dumps(doc))
    assert report.main(["--results", str(root), "--anchor", "jpeg", "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    expected = np.mean(
        [bd_rate(load_compressai_json(paths["jpeg"], k), load_compressai_json(paths["avif"], k)).value for k in keys]
    )
    assert f"| avif | {expected:+.2f} (mean of 7 metrics) |" in md
    assert "| webp | not computed: no BD-rate for vmaf-y |" in md
    assert "### Complexity" in md and "| avif | 44.9 | — | 120–130 | — |" in md
