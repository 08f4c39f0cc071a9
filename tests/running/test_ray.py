"""Multirun on a local Ray instance (hydra/launcher=ray) gives the numbers of the default joblib launcher.

hydra-ray-launcher pins cloudpickle<3, so it lives in its own environment: `nox -s ray` installs
`.[ray]` there and runs this file. Elsewhere it is skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import bench

pytestmark = pytest.mark.ray
pytest.importorskip("hydra_plugins.hydra_ray_launcher.ray_launcher", reason="hydra-ray-launcher is not installed")

METHODS = ("jpeg", "webp")
TIMINGS = ("encoding_time", "decoding_time", "encode_peak_mib", "decode_peak_mib")


def _sweep(tmp_path: Path, results: Path, *launcher: str, env: dict | None = None, without: tuple = ()) -> str:
    res = bench(
        "run",
        "-m",
        *launcher,
        f"method={','.join(METHODS)}",
        "dataset=samples",
        "limit=2",
        "method.rates=[10,50,90]",
        "workers=1",
        f"results_dir={results}",
        "progress=false",
        cwd=tmp_path,
        env=env,
        without=without,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout + res.stderr


def _measured(results: Path, method: str) -> tuple[dict, dict]:
    """A result JSON without what differs between two runs of the same sweep: timings, peak memory, time and host."""
    doc = json.loads((results / "samples" / f"{method}.json").read_text())
    numbers = {k: v for k, v in doc["results"].items() if k not in TIMINGS}
    meta = {k: v for k, v in doc["meta"].items() if k != "provenance"}
    return numbers, meta


def test_a_sweep_on_a_local_ray_instance_equals_the_joblib_sweep(tmp_path):
    ray_out = _sweep(
        tmp_path,
        tmp_path / "ray",
        "hydra/launcher=ray",
        "+hydra.launcher.ray.init.num_cpus=2",
        "+hydra.launcher.ray.init.include_dashboard=false",
        env={"RAY_USAGE_STATS_ENABLED": "0"},
        without=("RAY_ADDRESS",),  # no address: ray.init() starts a local instance
    )
    assert "Ray Launcher is launching 2 jobs" in ray_out
    (multirun,) = (tmp_path / "ray" / ".hydra").glob("multirun_*/multirun.yaml")
    assert "hydra_ray_launcher.ray_launcher.RayLauncher" in multirun.read_text()

    joblib_out = _sweep(tmp_path, tmp_path / "joblib")
    assert "Joblib.Parallel(" in joblib_out

    for method in METHODS:
        numbers, meta = _measured(tmp_path / "ray", method)
        assert numbers["rate"] == [10, 50, 90] and meta["samples"] == 2 and meta["complete"] is True
        assert (numbers, meta) == _measured(tmp_path / "joblib", method)
