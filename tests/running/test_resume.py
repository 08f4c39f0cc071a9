"""A sweep killed with SIGKILL at any moment resumes and ends with the numbers of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

KEYS = ("bpp", "psnr-rgb", "ms-ssim-rgb")


@pytest.fixture()
def eight_photos(tmp_path: Path, photos: dict[str, np.ndarray]) -> Path:
    folder = tmp_path / "eight"
    folder.mkdir()
    i = 0
    for name, arr in photos.items():
        for variant in (arr, arr[:, ::-1], arr[::-1], arr.transpose(1, 0, 2)):
            if i < 8:
                Image.fromarray(np.ascontiguousarray(variant)).save(folder / f"{i}_{name}.png")
                i += 1
    return folder


def _cmd(folder: Path, results: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bench",
        "run",
        "method=webp",
        "dataset=folder",
        f"dataset.root={folder}",
        "method.rates=[10,30,50,70,90]",
        "workers=2",
        f"results_dir={results}",
        "progress=false",
    ]


def _results(results: Path) -> dict:
    doc = json.loads((results / "folder-eight" / "webp.json").read_text())
    return {k: doc["results"][k] for k in KEYS}


@pytest.mark.slow  # kills and resumes a sweep several times
def test_sigkill_at_several_points_then_resume_gives_identical_numbers(tmp_path, eight_photos):
    reference = tmp_path / "reference"
    subprocess.run(_cmd(eight_photos, reference), check=True, capture_output=True, cwd=tmp_path)
    expected = _results(reference)

    killed = tmp_path / "killed"
    for delay in (1.0, 2.0, 3.0):
        proc = subprocess.Popen(
            _cmd(eight_photos, killed),
            cwd=tmp_path,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGKILL)  # the run and its workers, mid-sweep
        proc.wait()
    done = subprocess.run(_cmd(eight_photos, killed), capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert _results(killed) == expected  # exactly, not approximately
    rows = [
        json.loads(x)
        for p in (killed / "folder-eight" / "webp").glob("*/rows.jsonl")
        for x in p.read_text().splitlines()
    ]
    assert len({(r["sample"], r["rate"]) for r in rows}) == 8 * 5
