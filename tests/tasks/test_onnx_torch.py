"""ONNX networks as differentiable torch modules (onnx2torch), checked against onnxruntime.

Default tests export their own small networks with ``torch.onnx.export``; the
real detectors (YOLOX-Nano, NanoDet-m-320) run where ``HMC_BENCH_WEIGHTS`` (or
``HMC_BENCH_ASSETS``) points at the weights and the COCO images.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx2torch")

from conftest import assets_dir  # noqa: E402

from bench.tasks.base import TaskUnavailable  # noqa: E402
from bench.tasks.detection import OnnxDetector  # noqa: E402
from bench.tasks.losses import RawHeadDistillationLoss, loss_for  # noqa: E402
from bench.tasks.runtimes.onnx_torch import OnnxConversionError, clear_cache, load_onnx_module  # noqa: E402

# --- small networks exported here ----------------------------------------------------------------


def export(net: torch.nn.Module, path: Path, size: int, dynamic_batch: bool = False) -> Path:
    torch.manual_seed(0)
    net.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated (the other one needs onnxscript)
        torch.onnx.export(
            net,
            (torch.rand(1, 3, size, size),),
            str(path),
            dynamo=False,
            opset_version=17,  # onnx2torch 1.5 converts opsets up to 18 (Reshape, Shape: up to 14/15)
            input_names=["images"],
            output_names=["out"],
            dynamic_axes={"images": {0: "batch"}, "out": {0: "batch"}} if dynamic_batch else None,
        )
    return path


def conv_net() -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 4, 3, stride=2, padding=1),
        torch.nn.Sigmoid(),
    )
    bn = net[1]
    bn.running_mean.uniform_(-0.2, 0.2)
    bn.running_var.uniform_(0.5, 2.0)
    return net


class TinyYolox(torch.nn.Module):
    """A YOLOX-shaped head: rows of strides 8, 16, 32 (row-major), columns tx, ty, tw, th, obj, 80 classes."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, stride=8, padding=1)
        self.down = torch.nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.head = torch.nn.Conv2d(8, 85, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f8 = torch.relu(self.stem(x / 255.0))  # fed 0..255, as YOLOX
        f16 = torch.relu(self.down(f8))
        f32 = torch.relu(self.down(f16))
        rows = torch.cat([self.head(f).flatten(2) for f in (f8, f16, f32)], 2).transpose(1, 2)
        return torch.cat([rows[..., :4], torch.sigmoid(rows[..., 4:])], -1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return export(conv_net(), tmp_path_factory.mktemp("onnx") / "tiny.onnx", 16)


def assert_same_detections(ours: list[dict], theirs: list[dict]) -> None:
    """Same detections up to float noise (the order of near-equal scores may differ)."""
    assert len(ours) == len(theirs) > 0

    def key(d: dict) -> tuple:
        return (d["category_id"], *[round(v) for v in d["bbox"]], d["score"])

    for a, b in zip(sorted(ours, key=key), sorted(theirs, key=key)):
        assert a["category_id"] == b["category_id"]
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)
        assert a["bbox"] == pytest.approx(b["bbox"], abs=0.05)


def ort_run(path: Path, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})


# --- the conversion ---------------------------------------------------------------------------------


def test_converted_module_equals_onnxruntime(tiny):
    x = np.random.default_rng(0).uniform(-1, 2, (1, 3, 16, 16)).astype(np.float32)
    (expected,) = ort_run(tiny, x)
    with torch.no_grad():
        (got,) = load_onnx_module(tiny)(torch.from_numpy(x))
    assert got.shape == expected.shape == (1, 4, 8, 8)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5, rtol=0)


def test_a_batch_runs_image_by_image_when_the_export_fixed_batch_one(tiny, tmp_path):
    x = np.random.default_rng(1).uniform(0, 1, (3, 3, 16, 16)).astype(np.float32)
    module = load_onnx_module(tiny)
    assert module.fixed_batch_one
    with torch.no_grad():
        (got,) = module(torch.from_numpy(x))
    expected = np.concatenate([ort_run(tiny, x[i : i + 1])[0] for i in range(3)])
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5, rtol=0)
    dynamic = load_onnx_module(export(conv_net(), tmp_path / "dynamic.onnx", 16, dynamic_batch=True))
    assert not dynamic.fixed_batch_one
    with torch.no_grad():
        np.testing.assert_allclose(dynamic(torch.from_numpy(x))[0].numpy(), expected, atol=1e-5, rtol=0)


def test_gradients_reach_the_input_and_the_network_stays_frozen(tiny):
    module = load_onnx_module(tiny)
    assert not module.training
    assert all(not p.requires_grad for p in module.parameters()) and len(list(module.parameters())) > 0
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    module(x)[0].square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in module.parameters())
    trainable = load_onnx_module(tiny, frozen=False)
    assert trainable is not module and all(p.requires_grad for p in trainable.parameters())
    assert all(not p.requires_grad for p in load_onnx_module(tiny).parameters())


def test_converted_once_per_file_and_again_when_it_changes(tiny, tmp_path):
    assert load_onnx_module(tiny) is load_onnx_module(str(tiny))
    path = export(conv_net(), tmp_path / "net.onnx", 16)
    first = load_onnx_module(path)
    net = conv_net()
    with torch.no_grad():
        net[0].bias.add_(1.0)
    export(net, path, 16)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    second = load_onnx_module(path)
    assert second is not first
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert not torch.equal(first(x)[0], second(x)[0])
    clear_cache()
    assert load_onnx_module(path) is not second


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"ONNX model file .*nowhere\.onnx not found"):
        load_onnx_module(tmp_path / "nowhere.onnx")
    task = OnnxDetector(
        "yolox-test", model=tmp_path / "yolox_nano_coco" / "yolox_nano.onnx", decoder="yolox", input_size=32
    )
    with pytest.raises(TaskUnavailable, match=r"yolox_nano\.onnx not found.*HMC_BENCH_WEIGHTS"):
        task.torch_network()


def test_an_op_without_converter_names_the_op_and_the_file(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Hardmax", ["r"], ["y"], axis=1)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    path = tmp_path / "hardmax.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    with pytest.raises(OnnxConversionError, match=r"cannot convert .*hardmax\.onnx: no converter for Hardmax \(.*13\)"):
        load_onnx_module(path)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(OnnxConversionError, match=r"junk\.onnx is not a readable ONNX model"):
        load_onnx_module(tmp_path / "junk.onnx")


# --- the detector's preprocessing in torch -------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        dict(resize="letterbox", letterbox_position="top-left", pad_value=114.0),
        dict(resize="letterbox", letterbox_position="center", pad_value=0.0, channel_order="rgb"),
        dict(resize="stretch", mean=[103.53, 116.28, 123.675], std=[57.375, 57.12, 58.395]),
    ],
)
def test_torch_preprocessing_equals_the_numpy_one(photos, options):
    task = OnnxDetector("t", model="unused.onnx", decoder="yolox", input_size=[96, 128], **options)
    image = photos["chelsea"][:150, :201]  # odd size, wider than tall: resized down and padded
    expected, geometry = task.preprocess(image)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float().div(255).requires_grad_(True)
    got, torch_geometry = task.torch_preprocess(x)
    assert torch_geometry == pytest.approx(geometry)
    # numpy resizes 8-bit pixels (rounding), torch resizes floats: at most ~1 grey level apart
    scale = 1.0 / 57.0 if "std" in options else 1.0
    assert float((got[0].detach() - torch.from_numpy(expected)).abs().max()) <= 1.0 * scale
    got.sum().backward()
    assert x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="B x 3 x H x W"):
        task.torch_preprocess(x[0])


# --- the distillation loss through a small YOLOX-shaped network ----------------------------------


@pytest.fixture(scope="module")
def tiny_yolox(tmp_path_factory) -> OnnxDetector:
    path = export(TinyYolox(), tmp_path_factory.mktemp("yolox") / "tiny_yolox.onnx", 64)
    # no cap on detections: an untrained head has many near-equal scores, and a cap would cut ties
    return OnnxDetector("tiny-yolox", model=path, decoder="yolox", input_size=64, max_detections=10_000)


def test_torch_outputs_equal_onnxruntime_and_decode_to_the_same_detections(tiny_yolox, photos):
    image = photos["astronaut"][::8, ::8]
    x, _ = tiny_yolox.preprocess(image)
    (expected,) = ort_run(tiny_yolox.model, x[None])
    with torch.no_grad():
        (got,) = tiny_yolox.torch_network()(torch.from_numpy(x[None]))
    assert got.shape == expected.shape == (1, 64 + 16 + 4, 85)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5, rtol=0)
    assert_same_detections(tiny_yolox.torch_predict([image])[0], tiny_yolox.predict([image])[0])


def test_distillation_loss_is_zero_on_the_original_and_grows_with_distortion(tiny_yolox, photos):
    torch.manual_seed(0)
    x = torch.from_numpy(photos["coffee"][::5, ::5].copy()).permute(2, 0, 1)[None].float().div(255)
    task_loss = loss_for(tiny_yolox)
    assert isinstance(task_loss, RawHeadDistillationLoss)
    assert task_loss.network is tiny_yolox.torch_network()
    targets = task_loss.targets(x)
    assert float(task_loss.loss(x, targets)) == 0.0
    noise = torch.randn_like(x)
    losses = [float(task_loss.loss((x + s * noise).clamp(0, 1), targets)) for s in (0.02, 0.1, 0.3)]
    assert 0 < losses[0] < losses[1] < losses[2], losses
    x_hat = (x + 0.1 * noise).clamp(0, 1).requires_grad_(True)
    task_loss.loss(x_hat, targets).backward()
    assert torch.isfinite(x_hat.grad).all() and x_hat.grad.abs().sum() > 0
    with pytest.raises(TypeError, match="score_threshold"):
        loss_for(tiny_yolox, score_threshold=0.5)


# --- the real detectors (weights and COCO images from the shared assets) -------------------------


def weights_dir() -> Path | None:
    if os.environ.get("HMC_BENCH_WEIGHTS"):
        return Path(os.environ["HMC_BENCH_WEIGHTS"])
    return assets_dir() / "weights" if assets_dir() else None


COCO_IMAGE = "coco/val2017/000000000139.jpg"
REAL = {"yolox-nano": "yolox_nano_coco/yolox_nano.onnx", "nanodet-m": "nanodet_m_coco/nanodet_m_320.onnx"}
have_real = (
    weights_dir() is not None
    and assets_dir() is not None
    and all((weights_dir() / f).is_file() for f in REAL.values())
    and (assets_dir() / COCO_IMAGE).is_file()
)
requires_real = pytest.mark.skipif(not have_real, reason="HMC_BENCH_WEIGHTS / HMC_BENCH_ASSETS are not set")


def real_task(name: str) -> OnnxDetector:
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HMC_BENCH_WEIGHTS", str(weights_dir()))
        with initialize_config_module(config_module="bench.conf", version_base="1.3"):
            return instantiate(compose("config", overrides=[f"task={name}"]).task)


def coco_image() -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(assets_dir() / COCO_IMAGE).convert("RGB"))


@pytest.mark.assets
@requires_real
@pytest.mark.parametrize("name, tolerance", [("yolox-nano", 5e-4), ("nanodet-m", 5e-5)])
def test_real_detector_in_torch_matches_onnxruntime(name, tolerance):
    torch.set_num_threads(1)
    task = real_task(name)
    image = coco_image()
    x, _ = task.preprocess(image)
    session = task.session()
    expected = session.run(None, {session.get_inputs()[0].name: x[None]})
    with torch.no_grad():
        got = task.torch_network()(torch.from_numpy(x[None]))
    diffs = [float(np.abs(g[0].numpy() - (e[0] if e.ndim == 3 else e)).max()) for g, e in zip(got, expected)]
    print(f"{name}: max abs diff torch vs onnxruntime {max(diffs):.2e}")
    assert max(diffs) < tolerance
    assert_same_detections(task.torch_predict([image])[0], task.predict([image])[0])


@pytest.mark.assets
@requires_real
@pytest.mark.parametrize("name", ["yolox-nano", "nanodet-m"])
def test_real_distillation_loss_trains_an_input(name):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    task = real_task(name)
    x = torch.from_numpy(coco_image()[:320, :320].copy()).permute(2, 0, 1)[None].float().div(255)
    task_loss = loss_for(task)
    targets = task_loss.targets(x)
    assert float(task_loss.loss(x, targets)) < 1e-6
    noise = torch.randn_like(x)
    losses = [float(task_loss.loss((x + s * noise).clamp(0, 1), targets)) for s in (0.02, 0.05, 0.1)]
    assert 0 < losses[0] < losses[1] < losses[2], losses
    # one optimiser step on a perturbation of the distorted image lowers the loss
    x_hat = (x + 0.05 * noise).clamp(0, 1)
    delta = torch.zeros_like(x, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=2e-3)
    before = task_loss.loss(x_hat + delta, targets)
    before.backward()
    opt.step()
    with torch.no_grad():
        after = task_loss.loss(x_hat + delta, targets)
    before = float(before.detach())
    print(f"{name}: loss at noise 0.02/0.05/0.1 {losses}; one Adam step {before:.4f} -> {float(after):.4f}")
    assert float(after) < before
    assert all(p.grad is None and not p.requires_grad for p in task_loss.network.parameters())
