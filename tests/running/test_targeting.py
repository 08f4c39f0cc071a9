"""Matched rates: the search finds the knob setting nearest a target bitrate; runs record what they reached."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_module
from PIL import Image

from bench.methods.base import RateParameter
from bench.running.app import UserError, run_job
from bench.running.targeting import PROFILES, TargetingError, distance, search, targets_of


def jpeg_bpp(image: np.ndarray, quality: int) -> float:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=int(quality))
    return len(buf.getvalue()) * 8 / (image.shape[0] * image.shape[1])


def test_bisection_on_an_integer_knob_rising_and_falling():
    rising = RateParameter("quality", 1, 100, integer=True, rate_rises=True)
    curve = {q: 0.02 * math.exp(q / 20) for q in range(1, 101)}  # a monotone rate curve
    found = search(lambda q: (curve[q], q), rising, target=1.0, tolerance=0.001)
    nearest = min(curve, key=lambda q: distance(curve[q], 1.0))
    assert found.value == nearest and found.tries <= 10  # bisection, not a scan
    falling = RateParameter("QP", 0, 51, integer=True, rate_rises=False)
    qp_curve = {qp: 4.0 * 2 ** (-qp / 6) for qp in range(52)}
    found = search(lambda qp: (qp_curve[qp], qp), falling, target=0.25, tolerance=0.001)
    assert found.value == min(qp_curve, key=lambda qp: distance(qp_curve[qp], 0.25))


def test_a_target_out_of_reach_takes_the_nearest_end_and_choices_take_the_nearest():
    knob = RateParameter("quality", 1, 100, integer=True, rate_rises=True)
    found = search(lambda q: (0.5 + q / 100, q), knob, target=0.01)
    assert found.value == 1
    levels = RateParameter("quality", choices=(1, 2, 3, 4, 5))
    bpps = {1: 0.1, 2: 0.2, 3: 0.35, 4: 0.5, 5: 0.8}
    assert search(lambda q: (bpps[q], q), levels, target=0.3).value == 3
    assert search(lambda q: (bpps[q], q), levels, target=2.0).value == 5


def test_profiles_and_bad_targets():
    assert targets_of("jpeg-ai") == [0.06, 0.12, 0.25, 0.50, 0.75] == list(PROFILES["jpeg-ai"])
    for bad in ([0.5, 0.2], [0.0, 0.1], "no-such-profile", []):
        with pytest.raises(TargetingError):
            targets_of(bad)


def run(results: Path, *overrides: str) -> dict:
    with initialize_config_module(config_module="bench.conf", version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, f"results_dir={results}", "progress=false", "workers=1"])
    return json.loads(Path(run_job(cfg)["json"]).read_text())


def test_each_image_is_coded_at_the_jpeg_quality_nearest_each_target(tmp_path, photo_folder):
    targets = [0.4, 0.8, 1.6]
    doc = run(tmp_path / "out", "method=jpeg", "dataset=folder", f"dataset.root={photo_folder}",
              f"rate_target={{profile: {targets}, tolerance: 0.01}}")  # fmt: skip
    assert doc["results"]["rate"] == targets and doc["meta"]["rate_target"]["mode"] == "image"
    rows = [json.loads(x) for x in (tmp_path / "out" / doc["meta"]["rows"]).read_text().splitlines()]
    assert len(rows) == 3 * len(targets)
    for row in rows:
        image = np.asarray(Image.open(photo_folder / row["sample"]).convert("RGB"))
        every = {q: jpeg_bpp(image, q) for q in range(1, 101)}
        best = min(distance(b, row["target_bpp"]) for b in every.values())
        assert row["bpp"] == pytest.approx(every[row["parameter"]], rel=1e-12)  # what was recorded is what was coded
        assert distance(row["bpp"], row["target_bpp"]) == pytest.approx(best)  # no quality comes nearer
        assert abs(row["bpp"] / row["target_bpp"] - 1) < 0.1
    means = doc["results"]["bpp"]
    assert all(abs(m / t - 1) < 0.1 for m, t in zip(means, targets))


def test_one_setting_per_target_for_the_whole_dataset(tmp_path, photo_folder):
    doc = run(tmp_path / "out", "method=jpeg", "dataset=folder", f"dataset.root={photo_folder}",
              "rate_target={profile: [0.5, 1.0], mode: dataset}")  # fmt: skip
    settings = doc["meta"]["rate_target"]["settings"]
    images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(photo_folder.glob("*.png"))]
    for target, quality in settings.items():
        means = {q: np.mean([jpeg_bpp(img, q) for img in images]) for q in range(1, 101)}
        nearest = min(distance(m, float(target)) for m in means.values())
        assert distance(means[quality], float(target)) == pytest.approx(nearest)


def test_a_bad_rate_target_is_one_clear_error(tmp_path, photo_folder):
    with pytest.raises(UserError, match="rate_target: unknown key"):
        run(tmp_path, "method=jpeg", "dataset=folder", f"dataset.root={photo_folder}", "rate_target={speed: 1}")
    with pytest.raises(UserError, match="unknown rate-target profile"):
        run(tmp_path, "method=jpeg", "dataset=folder", f"dataset.root={photo_folder}", "rate_target={profile: x}")


def test_calibration_encodes_each_setting_once_for_all_targets(photo_folder):
    """The targets' bisections share their first steps; a setting already measured is not encoded again."""
    from collections import Counter

    from hydra.utils import instantiate

    from bench.running.targeting import calibrate

    with initialize_config_module(config_module="bench.conf", version_base="1.3"):
        codec = instantiate(compose("config", overrides=["method=jpeg"]).method)
    images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(photo_folder.glob("*.png"))]
    calls: Counter = Counter()
    encode = codec.encode

    def counted(image, value):
        calls[value] += 1
        return encode(image, value)

    codec.encode = counted
    settings = calibrate(codec, images, [0.3, 0.5, 1.0, 2.0], tolerance=0.0)
    assert set(calls.values()) == {len(images)}  # every setting tried: once per image
    for target, quality in settings.items():
        means = {q: np.mean([jpeg_bpp(img, q) for img in images]) for q in range(1, 101)}
        assert distance(means[quality], target) == pytest.approx(min(distance(m, target) for m in means.values()))


def test_dataset_mode_can_calibrate_on_a_spread_subset(tmp_path, photo_folder):
    """``calibration_samples`` picks every k-th sample; the run names them and still codes every sample."""
    from bench.running.targeting import calibration_subset

    assert calibration_subset(list(range(10)), 4) == [0, 3, 6, 9] and calibration_subset([1, 2], None) == [1, 2]
    with pytest.raises(TargetingError, match="at least 1"):
        calibration_subset([1, 2], 0)
    doc = run(tmp_path / "out", "method=jpeg", "dataset=folder", f"dataset.root={photo_folder}",
              "rate_target={profile: [0.5, 1.0], mode: dataset, calibration_samples: 2}")  # fmt: skip
    meta = doc["meta"]["rate_target"]
    names = sorted(p.name for p in photo_folder.glob("*.png"))
    assert meta["calibration_samples"] == names[::2] and doc["meta"]["samples"] == len(names)
    images = [np.asarray(Image.open(photo_folder / n).convert("RGB")) for n in names[::2]]
    for target, quality in meta["settings"].items():
        means = {q: np.mean([jpeg_bpp(img, q) for img in images]) for q in range(1, 101)}
        assert distance(means[quality], float(target)) <= math.log1p(0.02) or distance(
            means[quality], float(target)
        ) == pytest.approx(min(distance(m, float(target)) for m in means.values()))
