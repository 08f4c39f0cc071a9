"""``bench export-ctc``: the MPEG FCM CTC and JPEG AI reporting layouts, their columns, and numbers that are the
run's (the whole dataset's from the results JSON; a group's evaluated again over its own predictions)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_module

from bench.analysis.ctc import FCM_IMAGE_RATE, _clip_kbps, export, main, sequence_groups
from bench.running.app import run_job

FCM_COLUMNS = ["Dataset", "qp", FCM_IMAGE_RATE, "end_accuracy", "y_psnr"]
JPEG_AI_COLUMNS = [
    "Image", "Rate point", "Target bpp", "bpp", "MS-SSIM", "VIF", "FSIM", "NLPD", "IW-SSIM", "VMAF", "PSNR-HVS",
    "PSNR-Y", "Enc time [s]", "Dec time [s]",
]  # fmt: skip


def _sweep(tmp_path: Path, root: Path, task: bool = True) -> Path:
    conf = tmp_path / "myconf" / "task"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "dominant.yaml").write_text("_target_: task_fixtures.DominantChannel\nname: dominant\ngrid: 4\n")
    overrides = [
        "method=jpeg", "method.rates=[15,85]", "dataset=folder", f"dataset.root={root}", "dataset.recursive=true",
        f"results_dir={tmp_path / 'out'}", "progress=false", "workers=1",
        f"hydra.searchpath=[file://{tmp_path / 'myconf'}]", "metrics=[psnr-rgb,psnr-y]",
    ]  # fmt: skip
    if task:
        overrides.append("task=dominant")
    with initialize_config_module(config_module="bench.conf", version_base="1.3"):
        return Path(run_job(compose("config", overrides=overrides))["json"])


@pytest.fixture()
def grouped(tmp_path: Path, photo_folder: Path) -> Path:
    """Three photographs in two folders (groups 'a': 2 images, 'b': 1)."""
    root = tmp_path / "grouped"
    files = sorted(photo_folder.glob("*.png"))
    for i, f in enumerate(files):
        dest = root / ("a" if i < 2 else "b")
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dest / f.name)
    return root


def test_fcm_layout_has_the_templates_columns_and_the_runs_numbers(tmp_path, grouped, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1]))
    results = _sweep(tmp_path, grouped)
    written = export([results], tmp_path / "ctc")
    fcm = pd.read_csv(tmp_path / "ctc" / "folder-grouped" / "jpeg.fcm.csv")
    assert sorted(p.name for p in written) == ["jpeg.fcm.csv", "jpeg.jpeg-ai.csv"]
    assert list(fcm.columns) == FCM_COLUMNS
    assert list(fcm["Dataset"]) == ["a", "a", "b", "b", "folder-grouped", "folder-grouped"]
    assert list(fcm["qp"]) == [15, 85] * 3

    doc = json.loads(results.read_text())
    whole = fcm[fcm["Dataset"] == "folder-grouped"]
    assert whole["end_accuracy"].tolist() == pytest.approx([100 * v for v in doc["results"]["dominant/accuracy"]])
    assert whole[FCM_IMAGE_RATE].tolist() == pytest.approx(doc["results"]["bpp@dominant"], abs=1e-6)

    # a group's figures from the stored rows, independently: mean bpp and cell accuracy against the original
    root = results.parent.parent
    task_meta = doc["meta"]["tasks"]["dominant"]
    preds = [json.loads(x) for x in (root / task_meta["rows"]).read_text().splitlines()]
    refs = {r["sample"]: r["prediction"] for r in map(json.loads, (root / task_meta["reference_rows"]).open())}
    human = [json.loads(x) for x in (root / doc["meta"]["rows"]).read_text().splitlines()]
    for group in ("a", "b"):
        for rate in (15, 85):
            mine = [p for p in preds if p["sample"].startswith(group + "/") and p["rate"] == rate]
            hits = sum(int(x == y) for p in mine for x, y in zip(p["prediction"], refs[p["sample"]]))
            cells = sum(len(refs[p["sample"]]) for p in mine)
            row = fcm[(fcm["Dataset"] == group) & (fcm["qp"] == rate)].iloc[0]
            assert row["end_accuracy"] == pytest.approx(100 * hits / cells, abs=1e-4)
            assert row[FCM_IMAGE_RATE] == pytest.approx(sum(p["bpp"] for p in mine) / len(mine), abs=1e-6)
            ys = [h["psnr-y"] for h in human if h["sample"].startswith(group + "/") and h["rate"] == rate]
            assert row["y_psnr"] == pytest.approx(sum(ys) / len(ys), abs=1e-5)


def test_jpeg_ai_layout_one_row_per_image_and_rate_and_names_what_was_not_measured(
    tmp_path, grouped, monkeypatch, capsys
):
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1]))
    results = _sweep(tmp_path, grouped)
    assert main([str(results), "--out", str(tmp_path / "ctc"), "--format", "jpeg-ai"]) == 0
    assert "not measured, left empty in jpeg.jpeg-ai.csv: MS-SSIM, VIF, FSIM, NLPD" in capsys.readouterr().err
    table = pd.read_csv(tmp_path / "ctc" / "folder-grouped" / "jpeg.jpeg-ai.csv")
    assert list(table.columns) == JPEG_AI_COLUMNS
    assert len(table) == 3 * 2 and list(table["Rate point"]) == [15, 85] * 3
    doc = json.loads(results.read_text())
    rows = {(r["sample"], r["rate"]): r for r in map(json.loads, (results.parent.parent / doc["meta"]["rows"]).open())}
    for _, row in table.iterrows():
        recorded = rows[(row["Image"], row["Rate point"])]
        assert row["bpp"] == pytest.approx(recorded["bpp_total"], abs=1e-6)
        assert row["PSNR-Y"] == pytest.approx(recorded["psnr-y"], abs=1e-5)
    assert table["MS-SSIM"].isna().all()


def test_a_run_without_a_task_has_no_fcm_layout_and_says_so(tmp_path, photo_folder, capsys):
    results = _sweep(tmp_path, photo_folder, task=False)
    assert main([str(results), "--out", str(tmp_path / "ctc"), "--format", "fcm"]) == 2
    assert "has no machine task; the FCM layout reports a task metric" in capsys.readouterr().err
    assert main([str(results), "--out", str(tmp_path / "ctc")]) == 0  # both layouts asked: JPEG AI's is written
    assert [p.name for p in (tmp_path / "ctc").rglob("*.csv")] == ["jpeg.jpeg-ai.csv"]


def test_clip_groups_come_in_the_templates_order_and_bitrate_is_bits_over_seconds():
    ids = ["Run/v_Run_g02.avi", "Jump/v_Jump_g01.avi", "Run/v_Run_g01.avi"]
    groups = sequence_groups(ids, "ucf101", clips=True)
    assert [g.name for g in groups] == ["v_Jump_g01", "v_Run_g01", "v_Run_g02", "Jump", "Run", "ucf101"]
    assert groups[4].samples == ("Run/v_Run_g01.avi", "Run/v_Run_g02.avi")
    # a 2 s clip of 1000 bytes (4 kbps) and a 1 s clip of 3000 bytes (24 kbps): 32000 bits over 3 s
    rows = pd.DataFrame({"bytes": [1000, 3000], "kbps": [4.0, 24.0]})
    assert _clip_kbps(rows) == pytest.approx(32.0 / 3.0)
    assert math.isnan(_clip_kbps(pd.DataFrame({"bytes": [10], "kbps": [math.nan]})))
    assert [g.name for g in sequence_groups(["x.png", "y.png"], "kodak", clips=False)] == ["kodak"]
