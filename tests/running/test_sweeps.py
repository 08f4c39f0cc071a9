"""Sweeps split into jobs: sample shards writing one rows log at once, cluster launchers, the bitstream cache."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import bench
from PIL import Image
from task_fixtures import CountingJPEG, DominantChannel

from bench.datasets.folder import ImageFolder
from bench.running import jobs
from bench.running.runner import BitstreamCache, TaskLogs, run_sweep
from bench.running.store import RunStore

KEYS = ("bpp", "psnr-rgb", "ms-ssim-rgb")


@pytest.fixture()
def six_photos(tmp_path: Path, photos: dict[str, np.ndarray]) -> Path:
    folder = tmp_path / "six"
    folder.mkdir()
    i = 0
    for name, arr in photos.items():
        for variant in (arr, arr[:, ::-1]):
            Image.fromarray(np.ascontiguousarray(variant)).save(folder / f"{i}_{name}.png")
            i += 1
    return folder


def _args(folder: Path, results: Path, *extra: str) -> list[str]:
    return [
        "run",
        "method=webp",
        "dataset=folder",
        f"dataset.root={folder}",
        "method.rates=[10,50,90]",
        "workers=1",
        f"results_dir={results}",
        "progress=false",
        *extra,
    ]


def _results(results: Path) -> dict:
    doc = json.loads((results / "folder-six" / "webp.json").read_text())
    return {k: doc["results"][k] for k in KEYS}


@pytest.mark.slow  # three sweeps in subprocesses
def test_concurrent_shards_then_a_final_run_equal_an_unsharded_run(tmp_path, six_photos):
    reference = tmp_path / "reference"
    assert bench(*_args(six_photos, reference), cwd=tmp_path).returncode == 0

    shared = tmp_path / "sharded"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench", *_args(six_photos, shared, f"shard={i}/2")],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    rows = [
        json.loads(x) for p in (shared / "folder-six" / "webp").glob("*/rows.jsonl") for x in p.read_text().splitlines()
    ]
    assert len(rows) == 6 * 3 and len({(r["sample"], r["rate"]) for r in rows}) == 6 * 3  # none lost, none twice

    final = bench(*_args(six_photos, shared), cwd=tmp_path)
    assert final.returncode == 0, final.stderr
    assert "nothing to do" in final.stderr + final.stdout
    assert _results(shared) == _results(reference)  # exactly
    assert json.loads((shared / "folder-six" / "webp.json").read_text())["meta"]["complete"] is True


def test_rate_point_jobs_then_a_final_run_equal_one_run(tmp_path, six_photos):
    """Rates are not part of the config hash: jobs over subsets of the rates fill the same rows."""
    reference = tmp_path / "reference"
    assert bench(*_args(six_photos, reference), cwd=tmp_path).returncode == 0
    split = tmp_path / "split"
    args = [a for a in _args(six_photos, split) if not a.startswith("method.rates=")]
    res = bench(args[0], "-m", *args[1:], "method.rates=[10],[50,90]", "hydra.launcher.n_jobs=1", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    final = bench(*_args(six_photos, split), cwd=tmp_path)
    assert final.returncode == 0, final.stderr
    assert "nothing to do" in final.stderr + final.stdout
    assert _results(split) == _results(reference)


def test_one_shard_says_its_json_is_partial(tmp_path, six_photos):
    res = bench(*_args(six_photos, tmp_path / "out", "shard=1/2"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "shard 1/2: results are partial until every shard has run" in res.stdout + res.stderr
    doc = json.loads((tmp_path / "out" / "folder-six" / "webp.json").read_text())
    assert doc["meta"]["complete"] is False and doc["meta"]["shard"] == "1/2"
    assert len((tmp_path / "out" / doc["meta"]["rows"]).read_text().splitlines()) == 3 * 3

    res = bench(*_args(six_photos, tmp_path / "out", "shard=2/2"), cwd=tmp_path)
    assert res.returncode == 2 and "shard" in res.stderr


def test_multirun_with_the_submitit_local_launcher(tmp_path, photo_folder):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    res = bench(
        "run",
        "-m",
        "hydra/launcher=submitit_local",
        # one log folder made before the jobs start: with the plugin's default (.submitit/%j), submitit's local
        # controller can open its log before the submitting process has made the job's folder (a race under load)
        "hydra.launcher.submitit_folder=${hydra.sweep.dir}/.submitit",
        "method=jpeg,webp",
        "dataset=folder",
        f"dataset.root={photo_folder}",
        "method.rates=[10,90]",
        f"results_dir={tmp_path / 'out'}",
        "progress=false",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    for method in ("jpeg", "webp"):
        doc = json.loads((tmp_path / "out" / "folder-images" / f"{method}.json").read_text())
        assert doc["results"]["rate"] == [10, 90] and doc["meta"]["samples"] == 3


def test_cached_bitstreams_make_adding_a_task_encode_nothing(tmp_path, photo_folder):
    dataset = ImageFolder(photo_folder)
    cache = BitstreamCache(tmp_path / "cache", "jpeg-key")
    method = CountingJPEG()
    store = RunStore(tmp_path / "out", dataset.name, method.name, "h")
    run_sweep(method, dataset, store, workers=1, progress=False, cache=cache)
    assert method.encodes == 9
    rows_before = store.read_rows()

    method.encodes = 0
    task = DominantChannel()
    logs = TaskLogs(task, store.task_log(task.name, "t"), store.reference_log(task.name, "t"))
    stats = run_sweep(method, dataset, store, workers=1, progress=False, tasks=[logs], cache=cache)
    assert method.encodes == 0 and stats["measured"] == 9
    assert store.read_rows() == rows_before
    # the task is charged exactly the bytes the human rows were charged
    human = store.sample_table().set_index(["sample", "rate"])
    preds = logs.predictions.table().set_index(["sample", "rate"])
    assert (preds["bpp"] == human["bpp"]).all()

    # a different method key (another config or code version) never sees those entries
    other = RunStore(tmp_path / "other", dataset.name, method.name, "h")
    method.encodes = 0
    run_sweep(method, dataset, other, workers=1, progress=False, cache=BitstreamCache(tmp_path / "cache", "other"))
    assert method.encodes == 9 and len(other.read_rows()) == 9
    fresh = RunStore(tmp_path / "fresh", dataset.name, method.name, "h")
    counting = CountingJPEG()
    run_sweep(counting, dataset, fresh, workers=1, progress=False, cache=BitstreamCache(tmp_path / "cache", "new"))
    assert counting.encodes == 9
    # numbers from cached bytes equal numbers from fresh encodes
    cols = ["bpp", "psnr-rgb"]
    assert fresh.sample_table().set_index(["sample", "rate"])[cols].equals(human[cols])


def test_cache_dir_through_the_cli(tmp_path, photo_folder):
    args = ["run", "method=jpeg", "dataset=folder", f"dataset.root={photo_folder}", "method.rates=[10,90]"]
    args += [f"cache_dir={tmp_path / 'cache'}", "progress=false"]
    assert bench(*args, f"results_dir={tmp_path / 'a'}", cwd=tmp_path).returncode == 0
    entries = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert len(entries) == 6
    assert bench(*args, f"results_dir={tmp_path / 'b'}", cwd=tmp_path).returncode == 0
    assert len([p for p in (tmp_path / "cache").rglob("*") if p.is_file()]) == 6
    a = json.loads((tmp_path / "a" / "folder-images" / "jpeg.json").read_text())["results"]
    b = json.loads((tmp_path / "b" / "folder-images" / "jpeg.json").read_text())["results"]
    assert {k: a[k] for k in KEYS} == {k: b[k] for k in KEYS}


def _composed(*overrides: str):
    """The run config as Hydra composes it for `python -m bench run`, hydra node included."""
    from hydra import compose, initialize_config_module

    jobs.register_resolver()  # as importing bench.running.app does
    with initialize_config_module(config_module="bench.conf", version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def test_the_default_launcher_runs_as_many_jobs_as_fit_the_cores(tmp_path):
    import joblib
    from omegaconf.errors import InterpolationResolutionError

    shown = bench("run", "--cfg", "hydra", "-p", "hydra.launcher", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "_target_: hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher" in shown.stdout
    assert "n_jobs: ${bench.parallel_jobs:${workers}}" in shown.stdout
    assert "deprecated" not in shown.stderr  # extends the plugin's schema, no automatic schema matching

    cores = joblib.cpu_count()  # what joblib's own default, n_jobs=-1, would start
    assert _composed("workers=1").hydra.launcher.n_jobs == cores
    assert _composed("workers=2").hydra.launcher.n_jobs == max(1, cores // 2)
    assert _composed(f"workers={cores + 1}").hydra.launcher.n_jobs == 1
    assert _composed("hydra.launcher.n_jobs=3").hydra.launcher.n_jobs == 3
    with pytest.raises(InterpolationResolutionError, match="workers must be at least 1, got 0"):
        _ = _composed("workers=0").hydra.launcher.n_jobs


def test_a_multirun_starts_that_many_joblib_jobs(tmp_path):
    import joblib

    res = bench(
        "run",
        "-m",
        "method=jpeg,webp",
        "limit=1",
        "method.rates=[50]",
        "workers=1",
        f"results_dir={tmp_path / 'out'}",
        "progress=false",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert f"Joblib.Parallel(n_jobs={joblib.cpu_count()}," in res.stdout + res.stderr
    assert all((tmp_path / "out" / "samples" / f"{m}.json").is_file() for m in ("jpeg", "webp"))


@pytest.mark.parametrize("launcher", ["submitit_local", "submitit_slurm"])
def test_cluster_launchers_replace_the_default_whole(launcher):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    conf = _composed(f"hydra/launcher={launcher}").hydra.launcher
    assert conf._target_.startswith("hydra_plugins.hydra_submitit_launcher.") and "n_jobs" not in conf
