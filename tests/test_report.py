"""``python -m bench report``: BD tables equal ``bench.bdrate`` called directly; failures are cells; bad input."""

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
from conftest import assets_dir, requires_assets

from bench import report as R
from bench.bdrate import bd_metric, bd_rate
from bench.rdcurves import RDCurve

REPO = Path(__file__).resolve().parents[1]
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
    a = R.parse_document(doc("jpeg", BPP, psnr_rgb=PSNR), Path("jpeg.json"), "toy")
    t = R.parse_document(doc("task", BPP, mAP=[0.2, 0.3, 0.4, 0.5], lpips=[0.3, 0.2, 0.1, 0.05]), Path("t.json"), "toy")
    (analysis,) = R.analyse({"toy": [a, t]})
    assert analysis.metrics == ["psnr-rgb", "mAP"]
    assert analysis.cell("task", "mAP").error == "anchor 'jpeg' has no 'mAP' curve"
    assert analysis.cell("task", "psnr-rgb") is None
    assert any("lpips" in n for n in analysis.notes)  # not a known quality axis: listed, not guessed


def test_line_styles_by_family_anchor_dashed():
    anchor = R.Entry("jpeg", "d", Path("jpeg.json"), family="SBAR")
    styles = {f: R._style(R.Entry(f, "d", Path("x"), family=f), anchor, "k")["linestyle"] for f in R.FAMILIES}
    assert len(set(map(str, styles.values()))) == 4
    assert R._style(anchor, anchor, "k")["linestyle"] == "--"
    ref = R.Entry("ref", "d", Path("r.json"), reference=True)
    assert R._style(ref, anchor, "k")["marker"] == "x"


def test_monotone_fit_option_matches_bdrate():
    a = R.parse_document(doc("jpeg", BPP, psnr_rgb=PSNR), Path("jpeg.json"), "toy")
    w = R.parse_document(doc("wobbly", BPP, psnr_rgb=[28.0, 31.0, 30.5, 37.0]), Path("w.json"), "toy")
    (analysis,) = R.analyse({"toy": [a, w]}, monotone="fit")
    cell = analysis.cell("wobbly", "psnr-rgb")
    assert cell.error is None and cell.monotone_fit
    assert cell.value == bd_rate(a.curves["psnr-rgb"], w.curves["psnr-rgb"], monotone="fit").value


def test_relative_difference_over_common_range():
    a = _curve("a", BPP, PSNR, "psnr-rgb")
    t = _curve("t", [0.5, 1.0, 2.0, 4.0], [p + 2 for p in PSNR], "psnr-rgb")
    x, d = R.relative_difference(a, t)
    assert x.min() == pytest.approx(0.5) and x.max() == pytest.approx(2.0)
    same = R.relative_difference(a, _curve("s", BPP, [p + 1.5 for p in PSNR], "psnr-rgb"))[1]
    np.testing.assert_allclose(same, 1.5, atol=1e-12)
    with pytest.raises(ValueError, match="no common bpp range"):
        R.relative_difference(a, _curve("far", [3, 4], [40, 41], "psnr-rgb"))


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
    e = R.parse_document(d, Path("m.json"), "x")
    assert e.curves["seg/mIoU"].rates.tolist() == [1, 2, 3, 4] and set(e.per_class["seg/IoU"]) == {"a"}
    bad = doc("m", BPP, psnr_rgb=PSNR)
    bad["results"]["per_class"] = [1, 2]
    assert "per_class must map" in R.parse_document(bad, Path("m.json"), "x").curve_errors["per_class"]


def test_malformed_results_json_is_one_error_naming_the_file(tmp_path):
    root = tmp_path / "res"
    write(root, "toy", doc("jpeg", BPP, psnr_rgb=PSNR))
    (root / "toy" / "broken.json").write_text('{"name": "broken", "results": {"bpp": [0.1,')
    res = bench("report", "--results", str(root), "--out", str(tmp_path / "rep"), cwd=tmp_path)
    assert res.returncode == 2
    assert "broken.json: not valid JSON" in res.stderr and "Traceback" not in res.stderr
    (root / "toy" / "broken.json").write_text(json.dumps({"name": "broken", "bpp": [1]}))
    with pytest.raises(R.ResultsError, match=r"broken\.json: no 'results' object"):
        R.load_roots([root])
    (root / "toy" / "broken.json").write_text(json.dumps({"results": {"psnr-rgb": [30]}}))
    with pytest.raises(R.ResultsError, match=r"broken\.json: results have no 'bpp' \(keys: psnr-rgb\)"):
        R.load_roots([root])


def test_anchor_choice(tmp_path):
    root = tmp_path / "res"
    write(root, "toy", doc("webp", BPP, psnr_rgb=PSNR))
    write(root, "toy", doc("avif", BPP, psnr_rgb=PSNR))
    (a,) = R.analyse(R.load_roots([root]))
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
    ((_, entries),) = R.load_references([str(folder)])
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
