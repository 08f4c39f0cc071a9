"""A user's own package adds a method, a dataset, a task and a metric without forking: the example plugin,
installed into a folder of its own, is listed by ``bench list`` with where it comes from, runs end to end, and
its lower-is-better metric gets BD-rates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import bench as run_bench

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plugin"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """The example plugin installed (its entry points included) into a folder put on PYTHONPATH."""
    site = tmp_path_factory.mktemp("plugin-site")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site),
         str(EXAMPLE)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return site


def bench(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m bench`` with the plugin's folder on PYTHONPATH."""
    return run_bench(*args, cwd=cwd, env={"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])})


@pytest.mark.slow  # `bench list` in a subprocess (20 s); the plugin still runs and ranks in the default suite
def test_bench_list_shows_the_plugins_configs_and_metric_with_their_origin(plugin_site, tmp_path):
    res = bench(plugin_site, "list", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()

    def line(name: str) -> str:
        return next(x for x in lines if x.strip().startswith(name + " "))

    assert "[plugin:example]" in line("posterize-png") and "yes" in line("posterize-png")
    assert "[plugin:example]" in line("gradients") and "3 samples" in line("gradients")
    assert "[plugin:example]" in line("dominant-channel")
    assert "[hmc_bench_example]" in line("mae-rgb") and "lower is better" in line("mae-rgb")
    assert "[" not in line("jpeg").split("SBAR")[0]  # the harness's own are not marked


def test_the_plugins_method_dataset_task_and_metric_run_and_rank(plugin_site, tmp_path):
    out = tmp_path / "out"
    common = ("dataset=gradients", "task=dominant-channel", "metrics=[psnr-rgb,mae-rgb]", f"results_dir={out}",
              "progress=false", "workers=1")  # fmt: skip
    res = bench(plugin_site, "run", "method=posterize-png", *common, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    doc = json.loads((out / "gradients" / "posterize-png.json").read_text())
    mae = doc["results"]["mae-rgb"]
    assert mae == sorted(mae, reverse=True) and mae[-1] < mae[0]  # more bits, less error
    assert doc["meta"]["tasks"]["dominant-channel"]["protocol"] == "ground_truth"
    assert doc["results"]["dominant-channel/top1"][-1] == 1.0
    res = bench(plugin_site, "run", "method=jpeg", "method.rates=[20,40,60,80,95]", *common, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    res = bench(plugin_site, "report", "--results", str(out), "--anchor", "jpeg", "--out", str(tmp_path / "rep"),
                cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "mae-rgb" in (tmp_path / "rep" / "report.md").read_text()
