"""``autocast: true`` runs the torch task networks in bfloat16 on the CPU: plain JSON out, numbers close to float32."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from bench.tasks.classification import TorchvisionClassifier  # noqa: E402
from bench.tasks.detection import TorchvisionDetector  # noqa: E402
from bench.tasks.evaluators.segmentation import read_prediction  # noqa: E402
from bench.tasks.precision import autocast  # noqa: E402
from bench.tasks.segmentation import TorchvisionSegmenter  # noqa: E402


@pytest.fixture()
def images() -> list[np.ndarray]:
    import skimage.data

    return [skimage.data.astronaut()[::4, ::4].copy(), skimage.data.chelsea()[::3, ::3].copy()]


def test_autocast_context_uses_bf16_on_cpu_and_refuses_unknown_devices():
    with autocast("cpu", True):
        y = torch.nn.Linear(4, 4)(torch.ones(1, 4))
    assert y.dtype == torch.bfloat16
    with autocast("cpu", False):
        assert torch.nn.Linear(4, 4)(torch.ones(1, 4)).dtype == torch.float32
    with pytest.raises(ValueError, match="no 16-bit type for device 'meta'"):
        autocast("meta", True)


def test_classifier_under_autocast_gives_close_probabilities(images):
    torch.manual_seed(0)
    task = TorchvisionClassifier("cls", model="mobilenet_v3_small", weights=None, num_classes=10, device="cpu")
    full = task.predict(images)
    task.autocast = True
    half = task.predict(images)
    json.dumps(half, allow_nan=False)
    for a, b in zip(full, half):
        assert all(type(v) is float for v in b["scores"])  # plain JSON numbers, not bf16 tensors
        p32 = dict(zip(a["top5"], a["scores"]))
        common = [c for c in b["top5"] if c in p32]
        assert len(common) >= 3
        assert max(abs(p32[c] - s) for c, s in zip(b["top5"], b["scores"]) if c in p32) < 0.02


def test_segmenter_under_autocast_gives_close_logits_and_maps(images):
    torch.manual_seed(0)
    task = TorchvisionSegmenter(
        "seg", model="lraspp_mobilenet_v3_large", weights=None, num_classes=21, device="cpu", resize=64
    )
    x = torch.from_numpy(images[0]).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        l32 = task.logits(x)
        with autocast("cpu", True):
            l16 = task.logits(x)
    assert l16.dtype == torch.bfloat16
    scale = float(l32.abs().max())
    assert float((l16.float() - l32).abs().max()) < 0.05 * scale
    full = read_prediction(task.predict(images[:1])[0])
    task.autocast = True
    half = read_prediction(task.predict(images[:1])[0])
    assert half.shape == full.shape == images[0].shape[:2]
    assert (half == full).mean() > 0.8


def test_detector_runs_under_autocast_with_plain_json(images):
    torch.manual_seed(0)
    task = TorchvisionDetector(
        "det", model="fasterrcnn_mobilenet_v3_large_fpn", weights=None, device="cpu", score_threshold=0.0,
        min_size=96, max_size=128, autocast=True,
    )  # fmt: skip
    images = images[:1]
    preds, counts = task.predict_with_counts(images)
    assert counts == [{"dropped_nonfinite": 0}]
    json.dumps(preds, allow_nan=False)
    for pred, img in zip(preds, images):
        assert pred, "an untrained detector with threshold 0 still proposes boxes"
        for det in pred:
            assert all(type(v) is float for v in det["bbox"]) and type(det["score"]) is float
            x, y, w, h = det["bbox"]
            assert 0 <= x and x + w <= img.shape[1] + 0.01 and 0 <= y and y + h <= img.shape[0] + 0.01


def test_autocast_is_a_config_key_of_the_torch_tasks():
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate

    with initialize_config_module(config_module="bench.conf", version_base="1.3"):
        for name in ("detection", "mask-rcnn", "resnet50", "espnet"):
            cfg = compose("config", overrides=[f"task={name}"])
            assert cfg.task.autocast is False
        cfg = compose("config", overrides=["task=detection", "task.autocast=true"])
    assert instantiate(cfg.task).autocast is True
