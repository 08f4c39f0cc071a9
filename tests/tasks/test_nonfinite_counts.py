"""Detections with a NaN/inf box or score are dropped, counted per rate point, and shown by ``bench report``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bench.analysis.report import main as report_main
from bench.datasets.folder import ImageFolder
from bench.methods.codecs.pillow import PillowCodec
from bench.running.evaluation import evaluate_task
from bench.running.runner import TaskLogs, run_sweep
from bench.running.store import RunStore, aggregate, compressai_json, write_outputs
from bench.tasks.detection import OnnxDetector


class NaNSession:
    """Stands in for an onnxruntime session of YOLOX-Nano: two good boxes, two NaN ones, one infinite one."""

    def get_inputs(self):
        from types import SimpleNamespace

        return [SimpleNamespace(name="images", shape=[1, 3, 416, 416])]

    def run(self, names, feeds):
        out = np.zeros((3549, 85), np.float32)
        out[5 * 52 + 10, :5] = [0.5, 0.5, np.log(4), np.log(2), 0.9]  # a person box, score 0.72
        out[5 * 52 + 10, 5] = 0.8
        out[52 * 52 + 26 * 26 + 7 * 13 + 3, :5] = [0, 0, 0, 0, 1.0]
        out[52 * 52 + 26 * 26 + 7 * 13 + 3, 5 + 2] = 0.5
        out[100, :5] = [np.nan, 0, 0, 0, 0.99]
        out[100, 5] = 0.99
        out[101, :5] = [0, 0, 0, 0, np.nan]
        out[101, 5] = 0.99
        out[102, :5] = [0, 0, 1e6, 0, 0.99]  # exp overflow: an infinite width
        out[102, 5] = 0.99
        return [out[None]]


@pytest.fixture()
def nan_detector() -> OnnxDetector:
    task = OnnxDetector("nan-det", model="unused.onnx", decoder="yolox", input_size=416, multi_label=True)
    task._session = NaNSession()
    return task


def test_predict_with_counts_gives_the_drops_per_image(nan_detector):
    images = [np.zeros((416, 416, 3), np.uint8), np.zeros((200, 300, 3), np.uint8)]
    predictions, counts = nan_detector.predict_with_counts(images)
    assert [len(p) for p in predictions] == [2, 2]
    assert counts == [{"dropped_nonfinite": 3}, {"dropped_nonfinite": 3}]
    json.dumps(predictions, allow_nan=False)  # nothing non-finite reaches a row
    assert nan_detector.dropped_nonfinite == 6


def test_nan_boxes_are_counted_per_rate_point_and_reported(tmp_path, photo_folder, nan_detector, capsys):
    dataset = ImageFolder(photo_folder)
    method = PillowCodec("jpeg", [20, 80], "JPEG")
    store = RunStore(tmp_path / "results", dataset.name, method.name, "h")
    logs = TaskLogs(nan_detector, store.task_log("nan-det", "t"), store.reference_log("nan-det", "t"))
    run_sweep(method, dataset, store, workers=1, progress=False, tasks=[logs])

    rows = logs.predictions.read()
    assert len(rows) == 6 and all(r["counts"] == {"dropped_nonfinite": 3} for r in rows)
    table, meta = evaluate_task(logs, dataset, dataset.samples(), method.rates)
    assert table["nan-det/dropped_nonfinite"].tolist() == [9, 9]  # 3 images x 3 dropped, at each rate point
    assert table["nan-det/n"].tolist() == [3, 3]
    assert table["nan-det/mAP"].tolist() == [1.0, 1.0]  # the finite boxes are scored as usual
    assert meta["counters"] == ["dropped_nonfinite"] and meta["uncompressed_counts"] == {"dropped_nonfinite": 9}

    # the results JSON carries the counts, and the report lists them (and does not take them for a quality axis)
    merged = aggregate(store.sample_table(), method.rates).merge(table, on="rate")
    doc = compressai_json(method.name, "JPEG", merged, {"family": "SBAR", "tasks": {"nan-det": meta}})
    assert doc["results"]["nan-det/dropped_nonfinite"] == [9.0, 9.0]
    write_outputs(store, doc, merged)
    out = tmp_path / "report"
    assert report_main(["--results", str(tmp_path / "results"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    line = f"{dataset.name}: jpeg: nan-det/dropped_nonfinite = 18 (per rate point: 20: 9, 80: 9)"
    assert f"count: {line}" in printed
    report = (out / "report.md").read_text()
    assert "### Task counts" in report and "nan-det/dropped_nonfinite = 18" in report
    ignored = [line for line in report.splitlines() if "not used as quality axes" in line]
    assert not any("dropped_nonfinite" in line for line in ignored)  # a count, not an unknown metric


def test_a_sweep_without_drops_reports_zero_and_no_count_line(tmp_path, photo_folder):
    """Rows written before counting existed (no ``counts``) and clean rows both count 0."""
    dataset = ImageFolder(photo_folder)
    task = OnnxDetector("clean", model="unused.onnx", decoder="yolox", input_size=416)

    class Clean(NaNSession):
        def run(self, names, feeds):
            (out,) = super().run(names, feeds)
            out[0, 100:103] = 0  # the three bad rows become empty (no score)
            return [out]

    task._session = Clean()
    store = RunStore(tmp_path, dataset.name, "jpeg", "h")
    logs = TaskLogs(task, store.task_log("clean", "t"), store.reference_log("clean", "t"))
    run_sweep(PillowCodec("jpeg", [50], "JPEG"), dataset, store, workers=1, progress=False, tasks=[logs])
    table, meta = evaluate_task(logs, dataset, dataset.samples(), [50])
    assert table["clean/dropped_nonfinite"].tolist() == [0]
    assert not math.isnan(table["clean/mAP"].iloc[0])
