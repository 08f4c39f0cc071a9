"""Video end to end: the CLI on a synthetic UCF101, video tasks, the family contract on clips, fetch offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.datasets.ucf101 import UCF101
from bench.io.video import Clip
from bench.methods.base import HUMAN, Bitstream, Family, Method
from bench.methods.codecs.video import PyAVVideoCodec
from bench.running.runner import measure_sample
from tests.conftest import assets_dir, requires_assets
from tests.video_fixtures import moving_shapes, write_ucf101_tree


def bench(*args: str, cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def weights_dir() -> Path | None:
    if os.environ.get("HMC_BENCH_WEIGHTS"):
        return Path(os.environ["HMC_BENCH_WEIGHTS"])
    return assets_dir() / "weights" if assets_dir() else None


MOBILENET = "mobilenet_imagenet_tflite/mobilenet_v2_1.0_224_quant.tflite"
requires_mobilenet = pytest.mark.skipif(
    weights_dir() is None or not (weights_dir() / MOBILENET).is_file(),
    reason="the MobileNetV2 TFLite weights (HMC_BENCH_WEIGHTS) are not here",
)


@pytest.fixture(scope="module")
def ucf_tree(tmp_path_factory) -> Path:
    """The synthetic UCF101 plus one broken video listed in the test split."""
    root = tmp_path_factory.mktemp("ucf101")
    write_ucf101_tree(root)  # 20 frames of 176x168: MS-SSIM is defined (shorter side > 160)
    broken = root / "UCF-101" / "Basketball" / "v_Basketball_g02_c01.avi"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00AVI LIST" + bytes(300))
    with (root / "ucfTrainTestlist" / "testlist01.txt").open("ab") as fh:
        fh.write(b"Basketball/v_Basketball_g02_c01.avi\r\n")
    return root


def rows_of(results: Path, doc: dict) -> list[dict]:
    return [json.loads(line) for line in (results / doc["meta"]["rows"]).read_text().splitlines()]


def test_cli_h264_on_ucf101_counts_bits_per_frame_and_pixel_and_a_broken_video_fails_alone(tmp_path, ucf_tree):
    out = tmp_path / "results"
    res = bench(
        "run", "method=h264", "dataset=ucf101", f"dataset.root={ucf_tree}", "method.rates=[40,25]",
        f"results_dir={out}", "progress=false", "workers=2", cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    doc = json.loads((out / "ucf101" / "h264.json").read_text())
    results, meta = doc["results"], doc["meta"]
    assert results["rate"] == [40, 25]
    assert set(results) >= {"bpp", "kbps", "psnr-rgb", "psnr-yuv420", "ms-ssim-rgb", "frames"}
    assert results["bpp"][0] < results["bpp"][1] and results["psnr-yuv420"][0] < results["psnr-yuv420"][1]
    assert results["frames"] == [16.0, 16.0] and all(0.5 < v < 1 for v in results["ms-ssim-rgb"])
    assert meta["samples"] == 4 and meta["family"] == "SBAR" and "libavcodec" in meta["codec_versions"]
    broken = [f for f in meta["failures"] if f["sample"] == "Basketball/v_Basketball_g02_c01.avi"]
    assert len(broken) == 2 and all("not a video FFmpeg can read" in f["error"] for f in broken)
    ok = [r for r in rows_of(out, doc) if not r.get("error")]
    assert len(ok) == 6
    for row in ok:
        assert (row["frames"], row["height"], row["width"]) == (16, 168, 176)
        assert row["bpp"] == row["bytes"] * 8 / (16 * 168 * 176)
        assert row["kbps"] == pytest.approx(row["bytes"] * 8 * 25 / (16 * 1000), rel=1e-12)
    # the row's bytes are what the codec writes for that clip
    data = UCF101(ucf_tree)
    sample = next(s for s in data.samples() if s.id == ok[0]["sample"])
    written = PyAVVideoCodec("h264", [40, 25], "libx264").encode(data.load(sample), ok[0]["rate"])
    assert written.num_bytes() == ok[0]["bytes"]


@requires_mobilenet
def test_cli_frame_fidelity_task_on_ucf101(tmp_path, ucf_tree):
    out = tmp_path / "results"
    res = bench(
        "run", "method=vp9", "dataset=ucf101", f"dataset.root={ucf_tree}", "method.rates=[59,19]",
        "task=frame-fidelity", f"results_dir={out}", "progress=false", cwd=tmp_path,
        env={"HMC_BENCH_WEIGHTS": str(weights_dir())},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    doc = json.loads((out / "ucf101" / "vp9.json").read_text())
    task = doc["meta"]["tasks"]["frame-fidelity"]
    assert task["protocol"] == "fidelity" and "not action recognition accuracy" in task["description"]
    results = doc["results"]
    assert results["frame-fidelity/n"] == [3.0, 3.0]
    assert results["bpp@frame-fidelity"] == results["bpp"]  # SBAR: the task pays for the whole stream
    assert all(0 <= v <= 1 for v in results["frame-fidelity/top1"] + results["frame-fidelity/top5"])


# --- the tasks, with seeded random networks (no weights needed) ----------------------------------------------


@pytest.fixture(scope="module")
def frame_task():
    torch = pytest.importorskip("torch")
    from bench.tasks.action import FrameFidelity
    from bench.tasks.classification import TorchvisionClassifier

    torch.manual_seed(0)
    classifier = TorchvisionClassifier("frames", model="mobilenet_v3_small", weights=None, device="cpu")
    assert classifier.network is not None  # built now, under the seed
    return FrameFidelity("frame-fidelity", classifier, segments=3)


def test_frame_fidelity_averages_probabilities_over_segment_centres(frame_task):
    import torch

    clip = moving_shapes(9, 48, 64, seed=1)
    pred = frame_task.predict([clip])[0]
    net = frame_task.classifier
    with torch.no_grad():  # independently: softmax of frames 1, 4, 7 (centres of 3 equal parts), averaged
        probs = [
            net.logits(torch.from_numpy(clip[i]).permute(2, 0, 1)[None].float() / 255).softmax(1)[0].numpy()
            for i in (1, 4, 7)
        ]
    mean = np.mean(probs, axis=0)
    assert pred["top5"] == [int(i) for i in np.argsort(-mean, kind="stable")[:5]]
    assert pred["scores"][0] == pytest.approx(float(mean.max()), abs=1e-6)
    assert frame_task.kind not in UCF101.label_kinds  # never scored against UCF101 labels
    reference = {"a": frame_task.reference_from_prediction(pred)}
    assert frame_task.evaluate({"a": pred}, reference) == {"top1": 1.0, "top5": 1.0}
    with pytest.raises(ValueError, match="expects video clips"):
        frame_task.predict([clip[0]])


def test_video_classifier_uses_the_weights_preprocessing_and_says_where_weights_go(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    from bench.tasks.action import VideoClassifier

    torch.manual_seed(0)
    task = VideoClassifier("action", model="mc3_18", weights=None, num_classes=101, label_space="ucf101", clip_len=8,
                           device="cpu")  # fmt: skip
    assert task.preset.crop_size == [112] or list(task.preset.crop_size) == [112, 112]
    preds = task.predict([moving_shapes(5, 60, 80), moving_shapes(12, 60, 80, seed=2)])
    assert len(preds) == 2 and all(len(p["top5"]) == 5 and max(p["top5"]) < 101 for p in preds)

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    kinetics = VideoClassifier("action", model="r3d_18")
    reason = kinetics.unavailable_reason()
    assert reason is not None and "r3d_18-b3b3357e.pth" in reason and str(tmp_path / "torch") in reason
    assert "fidelity protocol only" in kinetics.describe()


# --- the family contract holds for clips --------------------------------------------------------------------


class TwoLayerH264(Method):
    """A two-layer method from two real H.264 streams (a simulcast: enough to check what the runner charges)."""

    family = Family.MBHD

    def __init__(self):
        super().__init__("two-layer-h264", [0])
        self.base, self.top = PyAVVideoCodec("base", [40], "libx264"), PyAVVideoCodec("top", [20], "libx264")

    def contract(self):
        from bench.methods.families import LayeredStreams

        return LayeredStreams({"base": ["base"], "top": ["top"]}, needs={}, default_layer="base")

    def encode(self, image, rate):
        b, t = self.base.encode(image, 40), self.top.encode(image, 20)
        h, w = image.shape[1:3]
        return Bitstream({"base": b.streams["video"], "top": t.streams["video"]}, height=h, width=w)

    def decode(self, bitstream, target=HUMAN):
        layer, codec = ("top", self.top) if "top" in bitstream.streams else ("base", self.base)
        return codec.decode(Bitstream({"video": bitstream.streams[layer]}, bitstream.height, bitstream.width))


def test_a_layered_video_method_charges_the_task_its_base_layer_per_frame_and_pixel(frame_task, tmp_path):
    from bench.datasets.video_folder import VideoFolder
    from bench.running.runner import TaskJob
    from tests.video_fixtures import write_video

    write_video(tmp_path / "v" / "clip.avi", moving_shapes(8, 48, 64))
    data = VideoFolder(tmp_path / "v", frames=None)
    sample = data.samples()[0]
    result = measure_sample(TwoLayerH264(), data, sample, [0], ["psnr-rgb"], [TaskJob(frame_task, [0], True)])
    human, task = result.human[0], result.tasks["frame-fidelity"][0]
    assert human["error"] is None and task["error"] is None, (human, task)
    base, top = human["bytes_by_stream"]["base"], human["bytes_by_stream"]["top"]
    assert human["bytes"] == base + top and task["bytes"] == base
    assert task["bpp"] == base * 8 / (8 * 48 * 64) and human["bpp"] == (base + top) * 8 / (8 * 48 * 64)
    assert "psnr-yuv420" in human and human["frames"] == 8


def test_a_clip_that_is_not_a_clip_is_one_error_row():
    clip = Clip(moving_shapes(4, 48, 64), fps=25)
    method = PyAVVideoCodec("h264", [30], "libx264")

    class Frames:  # a dataset whose loader hands an image to a video codec
        name = "frames"

        def load(self, sample):
            return clip[0]

    result = measure_sample(method, Frames(), type("S", (), {"id": "x", "source": "x"})(), [30], ["psnr-rgb"])
    assert "expected a T x H x W x 3 uint8 clip" in result.human[0]["error"]


def test_an_image_codec_on_a_video_dataset_is_one_clear_error(tmp_path, ucf_tree):
    res = bench("run", "method=jpeg", "dataset=ucf101", f"dataset.root={ucf_tree}", f"results_dir={tmp_path}",
                cwd=tmp_path)  # fmt: skip
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "method 'jpeg' codes images but dataset 'ucf101' holds videos" in res.stderr


def test_fetch_ucf101_offline_is_one_clear_message(tmp_path):
    env = {"https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9", "no_proxy": ""}
    res = bench("fetch", "ucf101", "--root", str(tmp_path / "ucf101"), cwd=tmp_path, env=env, timeout=120)
    assert res.returncode == 2
    assert "cannot download https://www.crcv.ucf.edu/data/UCF101/" in res.stderr and "Traceback" not in res.stderr


# --- the real UCF101 clips of the shared assets --------------------------------------------------------------


@requires_assets
@requires_mobilenet
def test_real_ucf101_clips_end_to_end(tmp_path):
    out = tmp_path / "results"
    res = bench(
        "run", "method=h264", "dataset=ucf101", f"dataset.root={assets_dir() / 'ucf101'}",
        "dataset.missing_videos=skip", "method.rates=[38,23]", "task=frame-fidelity", f"results_dir={out}",
        "progress=false", cwd=tmp_path, env={"HMC_BENCH_WEIGHTS": str(weights_dir())},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    doc = json.loads((out / "ucf101" / "h264.json").read_text())
    results = doc["results"]
    assert results["frame-fidelity/n"] == [4.0, 4.0] and not doc["meta"]["failures"]
    assert 25 < results["psnr-yuv420"][0] < results["psnr-yuv420"][1] < 50
    assert 10 < results["kbps"][0] < results["kbps"][1] < 2000
