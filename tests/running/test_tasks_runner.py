"""Tasks in a sweep: bits charged per target, one encode shared by all targets, fidelity protocol, resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from task_fixtures import CountingJPEG, DominantChannel

from bench.datasets.folder import ImageFolder
from bench.methods.codecs.pillow import PillowCodec
from bench.running.evaluation import evaluate_task
from bench.running.runner import TaskLogs, run_sweep
from bench.running.store import RunStore


def test_task_rows_share_the_encode_and_fidelity_is_reported(tmp_path, photo_folder):
    dataset = ImageFolder(photo_folder)
    method = CountingJPEG()
    task = DominantChannel()
    store = RunStore(tmp_path, dataset.name, method.name, "h")
    logs = TaskLogs(task, store.task_log(task.name, "t"), store.reference_log(task.name, "t"))
    run_sweep(method, dataset, store, workers=1, progress=False, tasks=[logs])
    assert method.encodes == 3 * 3  # once per (sample, rate), shared by human and task
    assert task.calls == 3 * 3 + 3  # every reconstruction, and each uncompressed image once
    human = store.sample_table().set_index(["sample", "rate"])
    preds = logs.predictions.table().set_index(["sample", "rate"])
    assert (preds["bpp"] == human["bpp"]).all()  # SBAR: the task is charged the whole stream
    table, meta = evaluate_task(logs, dataset, dataset.samples(), method.rates)
    assert meta["protocol"] == "fidelity"
    acc = table["dominant/accuracy"].tolist()
    assert acc[-1] >= acc[0] and acc[-1] > 0.9  # q95 agrees with the uncompressed prediction
    assert table["dominant/n"].tolist() == [3, 3, 3]

    # a resumed sweep redoes nothing; a new rate point is encoded once for both targets
    method.encodes, task.calls = 0, 0
    run_sweep(method, dataset, store, workers=1, progress=False, tasks=[logs])
    assert method.encodes == 0 and task.calls == 0
    method.rates = [5, 50, 95, 30]
    run_sweep(method, dataset, store, workers=2, progress=False, tasks=[logs])
    assert len(logs.predictions.read()) == 12 and len(store.read_rows()) == 12


def test_adding_a_task_to_a_finished_sweep_measures_only_the_task(tmp_path, photo_folder):
    dataset = ImageFolder(photo_folder)
    method = CountingJPEG()
    store = RunStore(tmp_path, dataset.name, method.name, "h")
    run_sweep(method, dataset, store, workers=1, progress=False)
    rows_before = store.rows_path.read_text()
    task = DominantChannel()
    logs = TaskLogs(task, store.task_log(task.name, "t"), store.reference_log(task.name, "t"))
    stats = run_sweep(method, dataset, store, workers=1, progress=False, tasks=[logs])
    assert stats["measured"] == 9 and store.rows_path.read_text() == rows_before


def test_task_through_the_cli_with_a_user_config_folder(tmp_path, photo_folder):
    conf = tmp_path / "myconf" / "task"
    conf.mkdir(parents=True)
    (conf / "dominant.yaml").write_text("_target_: task_fixtures.DominantChannel\nname: dominant\ngrid: 4\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "run",
            "method=webp",
            "method.rates=[10,90]",
            "dataset=folder",
            f"dataset.root={photo_folder}",
            "task=dominant",
            f"hydra.searchpath=[file://{tmp_path / 'myconf'}]",
            f"results_dir={tmp_path / 'out'}",
            "progress=false",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads((tmp_path / "out" / "folder-images" / "webp.json").read_text())
    assert doc["meta"]["tasks"]["dominant"]["protocol"] == "fidelity"
    results = doc["results"]
    assert results["dominant/n"] == [3, 3]
    assert results["bpp@dominant"] == results["bpp"]  # SBAR: the task pays for the whole stream
    assert 0 <= results["dominant/accuracy"][0] <= results["dominant/accuracy"][1] <= 1
    assert "dominant/accuracy" in res.stdout


class OutOfMemory(RuntimeError):
    pass


OutOfMemory.__name__ = "OutOfMemoryError"  # what torch.cuda.OutOfMemoryError is called


class SmallGPU(DominantChannel):
    """Runs out of memory on batches larger than ``fits`` (a GPU that is too small)."""

    def __init__(self, fits: int):
        super().__init__(batch_size=8)
        self.fits = fits
        self.batches: list[int] = []

    def predict(self, images):
        self.batches.append(len(images))
        if len(images) > self.fits:
            raise OutOfMemory("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().predict(images)


def test_out_of_memory_lowers_the_batch_size(tmp_path, photo_folder):
    dataset = ImageFolder(photo_folder)
    method = PillowCodec("jpeg", [10, 30, 50, 70, 90], "JPEG")
    task = SmallGPU(fits=2)
    store = RunStore(tmp_path, dataset.name, method.name, "h")
    logs = TaskLogs(task, store.task_log(task.name, "t"), store.reference_log(task.name, "t"))
    run_sweep(method, dataset, store, workers=1, progress=False, tasks=[logs])
    rows = logs.predictions.read()
    assert len(rows) == 15 and all(r["error"] is None for r in rows)
    assert 1 <= task.batch_size <= 2 and max(task.batches[-3:]) <= 2  # later batches start small


def test_out_of_memory_on_one_input_fails_with_a_message(tmp_path, photo_folder):
    dataset = ImageFolder(photo_folder)
    method = PillowCodec("jpeg", [50], "JPEG")
    task = SmallGPU(fits=0)
    store = RunStore(tmp_path, dataset.name, method.name, "h")
    logs = TaskLogs(task, store.task_log(task.name, "t"), store.reference_log(task.name, "t"))
    run_sweep(method, dataset, store, workers=1, progress=False, tasks=[logs])
    rows = logs.predictions.read()
    assert rows and all("ran out of memory on a single input" in r["error"] for r in rows)
