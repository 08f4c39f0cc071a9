"""Shipped checkpoints are found from any working directory, verified against their sidecars, and overridable."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import bench
from PIL import Image

from bench.resolvers import checkpoints_root, project_checkpoints


@pytest.fixture()
def elsewhere(tmp_path: Path, photos) -> Path:
    """A working directory far from the checkout, with one small photograph in ``images/``."""
    (tmp_path / "images").mkdir()
    Image.fromarray(np.ascontiguousarray(photos["astronaut"][::4, ::4])).save(tmp_path / "images" / "a.png")
    return tmp_path


def test_the_project_checkpoints_are_the_default_wherever_the_run_starts(monkeypatch):
    monkeypatch.delenv("HMC_BENCH_CHECKPOINTS", raising=False)
    assert Path(checkpoints_root()) == project_checkpoints()
    assert (project_checkpoints() / "bmshj2018-hyperprior-ours" / "bmshj2018-hyperprior-mse-q1.json").is_file()


def test_list_fetch_and_run_from_another_folder(elsewhere):
    pytest.importorskip("compressai")
    fetched = bench("fetch", "bmshj2018-hyperprior-ours", cwd=elsewhere, without=("HMC_BENCH_CHECKPOINTS",))
    assert fetched.returncode == 0, fetched.stderr
    assert (
        str(project_checkpoints() / "bmshj2018-hyperprior-ours" / "bmshj2018-hyperprior-mse-q1.pth") in fetched.stdout
    )
    run = bench(
        "run", "method=bmshj2018-hyperprior-ours", "method.rates=[1]", "dataset=folder", "dataset.root=images",
        "results_dir=out", "progress=false", "device=cpu", cwd=elsewhere, without=("HMC_BENCH_CHECKPOINTS",),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    doc = json.loads((elsewhere / "out" / "folder-images" / "bmshj2018-hyperprior-ours.json").read_text())
    (entry,) = doc["meta"]["weights"]
    sidecar = json.loads((project_checkpoints() / "bmshj2018-hyperprior-ours" / "bmshj2018-hyperprior-mse-q1.json")
                         .read_text())  # fmt: skip
    assert entry["sha256"] == sidecar["sha256"] and doc["results"]["bpp"][0] > 0


def test_a_corrupt_copy_fails_fetch_and_the_override_points_elsewhere(elsewhere):
    copy = elsewhere / "ckpt" / "bmshj2018-hyperprior-ours"
    copy.mkdir(parents=True)
    for name in ("bmshj2018-hyperprior-mse-q1.pth", "bmshj2018-hyperprior-mse-q1.json"):
        shutil.copy(project_checkpoints() / "bmshj2018-hyperprior-ours" / name, copy / name)
    with open(copy / "bmshj2018-hyperprior-mse-q1.pth", "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\x00\x01")
    env = {"HMC_BENCH_CHECKPOINTS": str(elsewhere / "ckpt")}
    res = bench("fetch", "bmshj2018-hyperprior-ours", cwd=elsewhere, env=env)
    assert res.returncode == 2
    assert "does not match" in res.stderr and str(copy / "bmshj2018-hyperprior-mse-q1.pth") in res.stderr


def test_the_shipped_eac_modules_are_verified_and_run_from_another_folder(elsewhere):
    """EAC's trained predictors/adapters (YOLOX-Nano: ICMH's modules; ESPNet) ship; fetch verifies every one."""
    pytest.importorskip("compressai")
    pytest.importorskip("onnx2torch")
    fetched = bench("fetch", "eac", cwd=elsewhere, without=("HMC_BENCH_CHECKPOINTS",))
    assert fetched.returncode == 0, fetched.stderr
    for task in ("yolox-nano", "espnet"):
        assert str(project_checkpoints() / "eac" / task / "rate-1" / "model.pt") in fetched.stdout
    if not os.environ.get("HMC_BENCH_WEIGHTS"):
        pytest.skip("HMC_BENCH_WEIGHTS is unset: YOLOX-Nano's weights are a download")
    run = bench(
        "run", "method=eac", "method.rates=[1]", "task=yolox-nano", "dataset=folder", "dataset.root=images",
        "results_dir=out", "progress=false", "device=cpu", cwd=elsewhere, without=("HMC_BENCH_CHECKPOINTS",),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    doc = json.loads((elsewhere / "out" / "folder-images" / "eac.json").read_text())
    shipped = {w["sha256"] for w in doc["meta"]["weights"]}
    for task in ("yolox-nano", "espnet"):
        sidecar = json.loads((project_checkpoints() / "eac" / task / "rate-1" / "model.json").read_text())
        assert sidecar["sha256"] in shipped
    assert 0 < doc["results"]["bpp@yolox-nano"][0] < doc["results"]["bpp"][0]


@pytest.mark.slow  # three SICMH rate points in a fresh process: the default tests code each shipped file already
def test_sicmh_runs_with_its_shipped_weights_from_another_folder(elsewhere):
    """`method=sicmh` with no other override: its own task (ESPNet) and every shipped rate, from any folder."""
    pytest.importorskip("compressai")
    if not os.environ.get("HMC_BENCH_WEIGHTS"):
        pytest.skip("HMC_BENCH_WEIGHTS is unset: ESPNet's weights are a download")
    run = bench(
        "run", "method=sicmh", "dataset=folder", "dataset.root=images", "results_dir=out", "progress=false",
        "device=cpu", cwd=elsewhere, without=("HMC_BENCH_CHECKPOINTS",),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    doc = json.loads((elsewhere / "out" / "folder-images" / "sicmh.json").read_text())
    results = doc["results"]
    assert len(results["bpp"]) >= 3 and all(0 < b < h for b, h in zip(results["bpp@espnet"], results["bpp"]))
    shipped = {w["sha256"] for w in doc["meta"]["weights"]}
    sidecar = json.loads((project_checkpoints() / "sicmh" / "espnet" / "rate-1" / "model.json").read_text())
    assert sidecar["sha256"] in shipped
