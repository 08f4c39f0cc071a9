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

from bench.analysis import check as C

REPO = Path(__file__).resolve().parents[2]
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
    # images: bpp, PSNR, MS-SSIM (+ the classifier's top1, top5, n, bpp@classification); video: 36 numbers
    assert "video-samples: h264 (3 rates), vp9 (3 rates)" in res.stdout
    if HAVE_WEIGHTS:
        assert "no drift: 78 value(s) within tolerance" in res.stdout and "skipped" not in res.stdout
    else:  # the human-side numbers are still all compared
        assert "task classification skipped: TFLite model not found" in res.stdout
        assert "no drift: 54 value(s) within tolerance" in res.stdout


@requires_weights
def test_a_moved_top1_fails_when_the_task_runs(tmp_path):
    baseline = golden_copy(tmp_path)
    edit(baseline / "samples" / "jpeg.json", "classification/top1", 0, lambda v: v + 1 / 6)
    res = bench("check", "--baseline", str(baseline), cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "DRIFT: 1 of 78 value(s) differ" in res.stdout
    assert re.search(r"^samples\s+jpeg\s+10\s+classification/top1\s.*abs 1e-09$", res.stdout, re.M)


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
    assert "DRIFT: 1 of 54 value(s) differ" in res.stdout and "classification/top1" not in res.stdout
    assert re.search(r"^samples\s+webp\s+90\s+psnr-rgb\s", res.stdout, re.M)


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
    assert "DRIFT: 1 of 78 value(s) differ" in res.stdout
    row = next(line for line in res.stdout.splitlines() if line.startswith("samples "))
    assert re.split(r"\s+", row)[:4] == ["samples", "jpeg", "50", "psnr-rgb"]
    # golden is the perturbed copy, "new" the real numbers: diff = old - new
    assert repr(new) in row and repr(old) in row and "-1.000e-03" in row and "abs 1e-06" in row


def test_tolerances_from_the_command_line(tmp_path):
    baseline = golden_copy(tmp_path)
    edit(baseline / "samples" / "webp.json", "psnr-rgb", 0, lambda v: v + 1e-3)
    edit(baseline / "samples" / "webp.json", "bpp", 2, lambda v: v * (1 + 1e-8))
    args = ["check", "--baseline", str(baseline), "--results", str(GOLDEN)]
    res = bench(*args, cwd=tmp_path)
    assert res.returncode == 1 and "DRIFT: 2 of 78" in res.stdout
    assert re.search(r"^samples\s+webp\s+90\s+bpp\s.*rel 1e-09$", res.stdout, re.M)
    res = bench(*args, "--tolerance", "psnr=1e-2", "--tolerance", "bpp=rel:1e-7", cwd=tmp_path)
    assert res.returncode == 0, res.stdout
    res = bench(*args, "--tolerance", "psnr-rgb=abs:1e-4", "--tolerance", "bpp=rel:1e-7", cwd=tmp_path)
    assert res.returncode == 1 and "DRIFT: 1 of 78" in res.stdout


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
    assert reason in changes and re.search(r"^samples\s+jpeg\s+90\s+ms-ssim-rgb\s", changes, re.M)
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
    images, video = C.load_config(GOLDEN)["sweeps"]
    assert images["dataset"] == "samples" and set(images["methods"]) == {"jpeg", "webp"}
    assert images["task"] == "classification" and "task" not in video
    assert video["dataset"] == "video-samples" and set(video["methods"]) == {"h264", "vp9"}
    assert images["workers"] == video["workers"] == 2  # top-level defaults reach every sweep
    for method in ("h264", "vp9"):  # the codec builds the bytes depend on are on record
        versions = json.loads((GOLDEN / "video-samples" / f"{method}.json").read_text())["meta"]["codec_versions"]
        assert versions["av"] and versions["ffmpeg"] and versions["libavcodec"]
    for path in GOLDEN.rglob("*.json"):
        doc = json.loads(path.read_text())
        assert "rows" not in doc["meta"] and "host" not in doc["meta"]["provenance"]
        assert not any(k.endswith("_time") for k in doc["results"])
    for path in GOLDEN.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert not re.search(r"/(home|tmp|work|root|Users)/", text), path


# --- video: the video-samples sweep (x264 and VP9 on clips panned across scikit-image photographs) ----------------


def only_video_sweep(baseline: Path) -> None:
    """Keep only the video sweep of a golden copy (a re-run of the video part alone takes a few seconds)."""
    from omegaconf import OmegaConf

    path = baseline / "smoke.yaml"
    cfg = OmegaConf.load(path)
    cfg.sweeps = [s for s in cfg.sweeps if s.dataset == "video-samples"]
    OmegaConf.save(cfg, path)
    shutil.rmtree(baseline / "samples")


def test_a_moved_video_number_fails_on_a_real_rerun_naming_the_row(tmp_path):
    baseline = golden_copy(tmp_path)
    only_video_sweep(baseline)
    res = bench("check", "--baseline", str(baseline), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr  # x264 and libvpx re-made the golden bytes exactly
    assert "no drift: 36 value(s) within tolerance; video-samples: h264 (3 rates), vp9 (3 rates)" in res.stdout
    old, new = edit(baseline / "video-samples" / "h264.json", "psnr-yuv420", 1, lambda v: v + 1e-5)
    res = bench("check", "--baseline", str(baseline), cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "DRIFT: 1 of 36 value(s) differ" in res.stdout
    row = next(line for line in res.stdout.splitlines() if line.startswith("video-samples "))
    assert re.split(r"\s+", row)[:4] == ["video-samples", "h264", "30", "psnr-yuv420"]
    assert repr(old) in row and repr(new) in row and "-1.000e-05" in row and "abs 1e-06" in row


def test_one_byte_more_of_vp9_is_a_drift_and_a_codec_version_change_is_named(tmp_path):
    baseline = golden_copy(tmp_path)
    path = baseline / "video-samples" / "vp9.json"
    doc = json.loads(path.read_text())
    frames, height, width = 8, 176, 224  # smoke.yaml's clips
    doc["results"]["bpp"][0] += 8 / (frames * height * width)  # one byte more per clip
    doc["results"]["kbps"][2] *= 1 + 1e-8
    real_av = doc["meta"]["codec_versions"]["av"]
    doc["meta"]["codec_versions"]["av"] = "0.0.1"
    path.write_text(json.dumps(doc))
    res = bench("check", "--baseline", str(baseline), "--results", str(GOLDEN), cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "DRIFT: 2 of 78 value(s) differ" in res.stdout
    assert re.search(r"^video-samples\s+vp9\s+51\s+bpp\s.*rel 1e-09$", res.stdout, re.M)
    assert re.search(r"^video-samples\s+vp9\s+27\s+kbps\s.*rel 1e-09$", res.stdout, re.M)
    assert f"video-samples/vp9 av 0.0.1 -> {real_av}" in res.stdout


def test_update_adds_a_new_sweep_to_the_record(tmp_path):
    baseline = golden_copy(tmp_path)
    shutil.rmtree(baseline / "video-samples")
    res = bench("check", "--baseline", str(baseline), "--results", str(GOLDEN), cwd=tmp_path)
    assert res.returncode == 2 and "video-samples/h264.json: golden results missing" in res.stderr
    reason = "Guard the video codecs too"
    res = bench(
        "check", "--baseline", str(baseline), "--results", str(GOLDEN), "--update", "--reason", reason, cwd=tmp_path
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 value(s) changed; added video-samples/h264, video-samples/vp9" in res.stdout
    assert (baseline / "video-samples" / "vp9.json").read_text() == (GOLDEN / "video-samples" / "vp9.json").read_text()
    assert "Added: video-samples/h264, video-samples/vp9." in (baseline / "CHANGES.md").read_text()
    last = json.loads((baseline / "history.jsonl").read_text().splitlines()[-1])
    assert last["added"] == ["video-samples/h264", "video-samples/vp9"] and last["reason"] == reason
    assert [s["dataset"] for s in last["sweeps"]] == ["samples", "video-samples"]


def test_a_single_sweep_record_still_reads_and_sweep_lists_are_checked(tmp_path):
    def load(text: str) -> dict:
        (tmp_path / "smoke.yaml").write_text(text)
        return C.load_config(tmp_path)

    (one,) = load("dataset: samples\nmethods: {jpeg: [10]}\ntask: classification\nworkers: 1\n")["sweeps"]
    assert one["dataset"] == "samples" and one["methods"] == {"jpeg": [10]} and one["task"] == "classification"
    two = load(
        "workers: 1\ntolerances: {psnr: 'abs:1e-3'}\nsweeps:\n"
        "  - {dataset: samples, methods: {jpeg: [10]}}\n"
        "  - {dataset: video-samples, methods: {h264: [30]}, workers: 2, tolerances: {bpp: 'rel:0'}}\n"
    )["sweeps"]
    assert [s["workers"] for s in two] == [1, 2]
    assert two[1]["tolerances"] == {"psnr": "abs:1e-3", "bpp": "rel:0"}
    with pytest.raises(C.CheckError, match=r"sweeps\[1\]: unknown key\(s\) metric;"):
        load("sweeps:\n  - {dataset: a, methods: {jpeg: [1]}}\n  - {dataset: b, methods: {h264: [1]}, metric: []}\n")
    with pytest.raises(C.CheckError, match="dataset\\(s\\) a pinned by more than one sweep"):
        load("sweeps:\n  - {dataset: a, methods: {jpeg: [1]}}\n  - {dataset: a, methods: {webp: [1]}}\n")
    with pytest.raises(C.CheckError, match="has both 'sweeps' and a top-level"):
        load("dataset: a\nmethods: {jpeg: [1]}\nsweeps: [{dataset: b, methods: {h264: [1]}}]\n")
    with pytest.raises(C.CheckError, match=r"sweeps\[0\]: methods.h264 must be a non-empty list"):
        load("sweeps:\n  - {dataset: a, methods: {h264: []}}\n")
