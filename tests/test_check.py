"""The drift gate: the committed golden smoke record still holds, and a moved number fails naming where it moved."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import assets_dir

from bench import check as C

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "results" / "golden" / "smoke"


def weights_dir() -> Path | None:
    """HMC_BENCH_WEIGHTS, else HMC_BENCH_ASSETS/weights, else None."""
    if os.environ.get("HMC_BENCH_WEIGHTS"):
        return Path(os.environ["HMC_BENCH_WEIGHTS"])
    assets = assets_dir()
    return assets / "weights" if assets else None


WEIGHTS = weights_dir()
HAVE_WEIGHTS = bool(WEIGHTS) and (WEIGHTS / "mobilenet_imagenet_tflite" / "mobilenet_v2_1.0_224_quant.tflite").is_file()
requires_weights = pytest.mark.skipif(not HAVE_WEIGHTS, reason="the MobileNetV2 TFLite weights are not here")


def bench(*args: str, cwd: Path, timeout: int = 300, weights: Path | None = WEIGHTS) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HMC_BENCH_WEIGHTS"}
    if weights is not None:
        env["HMC_BENCH_WEIGHTS"] = str(weights)
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


def golden_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "golden"
    shutil.copytree(GOLDEN, dst)
    return dst


def edit(path: Path, key: str, index: int, fn) -> tuple[float, float]:
    doc = json.loads(path.read_text())
    old = doc["results"][key][index]
    doc["results"][key][index] = fn(old)
    path.write_text(json.dumps(doc, indent=2))
    return old, doc["results"][key][index]


def test_golden_smoke_record_has_not_drifted(tmp_path):
    """CI's drift gate: re-run the pinned smoke sweep (the `bench run` code path) and compare with the golden record."""
    res = bench("check", "--baseline", str(GOLDEN), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    if HAVE_WEIGHTS:  # bpp, PSNR, MS-SSIM and the classifier's top1, top5, n, bpp@classification
        assert "no drift: 42 value(s) within tolerance" in res.stdout and "skipped" not in res.stdout
    else:  # the human-side numbers are still all compared
        assert "task classification skipped: TFLite model not found" in res.stdout
        assert "no drift: 18 value(s) within tolerance" in res.stdout


@requires_weights
def test_a_moved_top1_fails_when_the_task_runs(tmp_path):
    baseline = golden_copy(tmp_path)
    edit(baseline / "samples" / "jpeg.json", "classification/top1", 0, lambda v: v + 1 / 6)
    res = bench("check", "--baseline", str(baseline), cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "DRIFT: 1 of 42 value(s) differ" in res.stdout
    assert re.search(r"^jpeg\s+10\s+classification/top1\s.*abs 1e-09$", res.stdout, re.M)


def test_without_weights_the_task_is_skipped_but_human_numbers_still_count(tmp_path):
    baseline = golden_copy(tmp_path)
    edit(baseline / "samples" / "jpeg.json", "classification/top1", 0, lambda v: v + 1 / 6)
    edit(baseline / "samples" / "webp.json", "psnr-rgb", 2, lambda v: v + 1e-3)
    empty = tmp_path / "no-weights"
    empty.mkdir()
    res = bench("check", "--baseline", str(baseline), cwd=tmp_path, weights=empty)
    assert res.returncode == 1, res.stdout + res.stderr
    skipped = [line for line in res.stdout.splitlines() if line.startswith("task classification skipped: ")]
    assert len(skipped) == 1 and "TFLite model not found" in skipped[0]
    assert "DRIFT: 1 of 18 value(s) differ" in res.stdout and "classification/top1" not in res.stdout
    assert re.search(r"^webp\s+90\s+psnr-rgb\s", res.stdout, re.M)


def test_require_tasks_fails_when_the_weights_are_absent(tmp_path):
    empty = tmp_path / "no-weights"
    empty.mkdir()
    res = bench("check", "--baseline", str(GOLDEN), "--require-tasks", cwd=tmp_path, weights=empty)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "task classification is required (--require-tasks) but cannot run here" in res.stderr
    assert "TFLite model not found" in res.stderr and "Traceback" not in res.stderr


def test_a_moved_psnr_fails_and_names_method_rate_metric(tmp_path):
    baseline = golden_copy(tmp_path)
    old, new = edit(baseline / "samples" / "jpeg.json", "psnr-rgb", 1, lambda v: v + 1e-3)
    res = bench("check", "--baseline", str(baseline), "--results", str(GOLDEN), cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "DRIFT: 1 of 42 value(s) differ" in res.stdout
    row = next(line for line in res.stdout.splitlines() if line.startswith("jpeg "))
    assert re.split(r"\s+", row)[:3] == ["jpeg", "50", "psnr-rgb"]
    # golden is the perturbed copy, "new" the real numbers: diff = old - new
    assert repr(new) in row and repr(old) in row and "-1.000e-03" in row and "abs 1e-06" in row


def test_tolerances_from_the_command_line(tmp_path):
    baseline = golden_copy(tmp_path)
    edit(baseline / "samples" / "webp.json", "psnr-rgb", 0, lambda v: v + 1e-3)
    edit(baseline / "samples" / "webp.json", "bpp", 2, lambda v: v * (1 + 1e-8))
    args = ["check", "--baseline", str(baseline), "--results", str(GOLDEN)]
    res = bench(*args, cwd=tmp_path)
    assert res.returncode == 1 and "DRIFT: 2 of 42" in res.stdout
    assert re.search(r"^webp\s+90\s+bpp\s.*rel 1e-09$", res.stdout, re.M)
    res = bench(*args, "--tolerance", "psnr=1e-2", "--tolerance", "bpp=rel:1e-7", cwd=tmp_path)
    assert res.returncode == 0, res.stdout
    res = bench(*args, "--tolerance", "psnr-rgb=abs:1e-4", "--tolerance", "bpp=rel:1e-7", cwd=tmp_path)
    assert res.returncode == 1 and "DRIFT: 1 of 42" in res.stdout


def test_update_rewrites_the_record_and_logs_why(tmp_path):
    baseline = golden_copy(tmp_path)
    edit(baseline / "samples" / "jpeg.json", "ms-ssim-rgb", 2, lambda v: v - 0.01)
    res = bench("check", "--baseline", str(baseline), "--results", str(GOLDEN), "--update", cwd=tmp_path)
    assert res.returncode == 2 and "--update needs --reason" in res.stderr
    reason = "Pillow 13.1 ships a new libjpeg-turbo"
    res = bench(
        "check", "--baseline", str(baseline), "--results", str(GOLDEN), "--update", "--reason", reason, cwd=tmp_path
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 value(s) changed" in res.stdout
    res = bench("check", "--baseline", str(baseline), "--results", str(GOLDEN), cwd=tmp_path)
    assert res.returncode == 0, res.stdout
    changes = (baseline / "CHANGES.md").read_text()
    assert reason in changes and re.search(r"^jpeg\s+90\s+ms-ssim-rgb\s", changes, re.M)
    last = json.loads((baseline / "history.jsonl").read_text().splitlines()[-1])
    assert last["reason"] == reason and last["drifted"] == 1 and "commit" in last and last["time"]


def test_errors_are_clear(tmp_path):
    res = bench("check", "--baseline", str(tmp_path / "nope"), cwd=tmp_path)
    assert res.returncode == 2 and "smoke.yaml: no such file" in res.stderr and "Traceback" not in res.stderr
    baseline = golden_copy(tmp_path)
    (baseline / "samples" / "webp.json").write_text("{not json")
    res = bench("check", "--baseline", str(baseline), "--results", str(GOLDEN), cwd=tmp_path)
    assert res.returncode == 2 and "webp.json: not valid JSON" in res.stderr
    with pytest.raises(C.CheckError, match="expected METRIC="):
        C.parse_tolerance("psnr")


def test_compare_missing_pieces_and_nan():
    def doc(rates, **res):
        return {"results": {"rate": rates, **res}}

    golden = {"m": doc([1, 2], bpp=[0.1, 0.2], **{"ms-ssim-rgb": [None, 0.9], "encoding_time": [1.0, 1.0]})}
    same = {"m": doc([1, 2], bpp=[0.1, 0.2], **{"ms-ssim-rgb": [None, 0.9], "encoding_time": [9.0, 9.0]})}
    assert C.compare(golden, same)[0] == []  # NaN (null) equals NaN; timings are not compared
    moved = {"m": doc([1], bpp=[0.1], **{"ms-ssim-rgb": [0.5]})}
    drifts = {(d.rate, d.metric) for d in C.compare(golden, moved)[0]}
    assert drifts == {("1", "ms-ssim-rgb"), ("2", "(rate point)")}
    assert [d.metric for d in C.compare(golden, {"m": None})[0]] == ["(results)"]
    extra = {"m": doc([1, 2], bpp=[0.1, 0.2], **{"ms-ssim-rgb": [None, 0.9], "mAP": [0.1, 0.2]})}
    drifts, _, notes = C.compare(golden, extra)
    assert drifts == [] and "mAP" in notes[0]


def test_golden_record_holds_no_machine_specifics():
    config = C.load_config(GOLDEN)
    assert config["dataset"] == "samples" and set(config["methods"]) == {"jpeg", "webp"}
    assert config["task"] == "classification"
    for path in GOLDEN.rglob("*.json"):
        doc = json.loads(path.read_text())
        assert "rows" not in doc["meta"] and "host" not in doc["meta"]["provenance"]
        assert not any(k.endswith("_time") for k in doc["results"])
    for path in GOLDEN.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert not re.search(r"/(home|tmp|work|root|Users)/", text), path
