"""Task networks cut in two: the front and back halves give exactly the unsplit network's outputs and predictions.

Default tests use networks made here (a YOLOX-shaped ONNX detector, ESPNet
with seeded weights) on scikit-image's photographs; the real YOLOX-Nano and
ESPNet run where HMC_BENCH_WEIGHTS / HMC_BENCH_ASSETS point at the shared
weights and images.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx2torch")

from conftest import assets_dir  # noqa: E402
from learned_method_fixtures import one_torch_thread, tiny_classifier  # noqa: E402, F401 - autouse fixture
from split_fixtures import tiny_espnet_task, tiny_yolox_task  # noqa: E402

from bench.methods.human_machine.task_split import ESPNET_CUTS, SplitError, SplitTaskNetwork, default_split  # noqa: E402
from bench.tasks.evaluators.segmentation import read_prediction  # noqa: E402
from bench.tasks.losses import raw_head_terms  # noqa: E402
from bench.tasks.runtimes.onnx_torch import OnnxConversionError, resolve_cut, single_tensor_cuts  # noqa: E402


@pytest.fixture(scope="module")
def yolox(tmp_path_factory):
    return tiny_yolox_task(tmp_path_factory.mktemp("yolox"))


@pytest.fixture(scope="module")
def espnet(tmp_path_factory):
    return tiny_espnet_task(tmp_path_factory.mktemp("espnet"))


@pytest.fixture(scope="module")
def image(photos):
    return np.ascontiguousarray(photos["astronaut"][60:300:3, 100:420:3])  # 80 x 107: letterboxed, stretched


def as_batch(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].float().div(255)


def max_diff(a, b) -> float:
    a, b = (a if isinstance(a, (list, tuple)) else [a]), (b if isinstance(b, (list, tuple)) else [b])
    assert len(a) == len(b) and all(x.shape == y.shape for x, y in zip(a, b))
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


# --- ONNX detectors --------------------------------------------------------------------------------


def test_single_tensor_cuts_stop_where_the_neck_reads_the_backbone_again(yolox):
    import onnx

    cuts = single_tensor_cuts(onnx.load(str(yolox.model)))
    strides = [c.stride for c in cuts if c.stride]
    assert strides == sorted(strides) and max(strides) == 8  # nothing deeper: the neck still reads stride 8
    last8 = resolve_cut(cuts, "stride8", "tiny")
    assert last8 == [c for c in cuts if c.stride == 8][-1] and last8.shape == (1, 16, 8, 8)
    assert resolve_cut(cuts, last8.name, "tiny") == last8
    with pytest.raises(OnnxConversionError, match=r"no single-tensor cut 'stride16'.*stride2, stride4, stride8"):
        resolve_cut(cuts, "stride16", "tiny")


def test_yolox_split_gives_the_unsplit_outputs_and_detections(yolox, image):
    split = SplitTaskNetwork(yolox)
    assert (split.channels, split.stride) == (16, 8) and split.split == "stride8"
    x = as_batch(image)
    with torch.no_grad():
        unsplit = yolox.torch_outputs(x)[0]
        features = split.front(x)
        raw = split.back(features, image.shape[:2])
    assert features.shape == (1, 16, 8, 8)  # the 64 x 64 letterboxed input's grid, not the image's
    assert max_diff(raw, unsplit) == 0.0
    predictions = split.predict_images([image])[0]
    assert predictions == yolox.torch_predict([image])[0]  # the task's own preprocessing, decoding and NMS
    assert len(predictions) > 0 and set(predictions[0]) == {"bbox", "score", "category_id"}
    # predictions are in image pixels: boxes stay inside the 80 x 107 image, not the 64 x 64 input
    assert max(d["bbox"][0] + d["bbox"][2] for d in predictions) > 64
    assert split.predictions(raw, image.shape[:2]) == [
        yolox.prediction_from_outputs([unsplit[0][0].numpy()], (80, 107))
    ]


def test_a_batch_splits_image_by_image_and_the_back_copy_trains(yolox, photos):
    split = SplitTaskNetwork(yolox)
    x = torch.stack([as_batch(photos[n][:96, :96])[0] for n in ("astronaut", "coffee", "chelsea")])
    with torch.no_grad():
        assert max_diff(split.back(split.front(x), (96, 96)), yolox.torch_outputs(x)[0]) == 0.0
    back = split.trainable_back()
    assert all(p.requires_grad for p in back.parameters())
    assert not any(p.requires_grad for p in split.network.parameters())
    head = SplitTaskNetwork(yolox, back=back)
    features = split.front(x[:1]).detach()
    with torch.no_grad():
        teacher = split.back(features, (96, 96))
        assert max_diff(head.back(features, (96, 96)), teacher) == 0.0
        assert float(split.distillation(teacher, teacher)) == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        for p in back.parameters():
            p.add_(0.05 * torch.randn_like(p))
    loss = split.distillation(head.back(features, (96, 96)), teacher)
    terms = raw_head_terms(yolox, head.back(features, (96, 96)), teacher)
    assert float(loss.detach()) == pytest.approx(float((terms["scores"] + terms["boxes"]).detach()), rel=1e-6)
    assert float(loss.detach()) > 0
    loss.backward()
    assert all(p.grad is not None for p in back.parameters())
    assert all(p.grad is None for p in split.network.parameters())


def test_resampling_maps_image_features_as_the_letterbox_maps_pixels(yolox):
    split = SplitTaskNetwork(yolox)
    h, w, s = 96, 128, 8  # letterboxed into 64 x 64 at r = 0.5: the image fills rows 0..47
    rows, cols = torch.meshgrid(torch.arange(h // s), torch.arange(w // s), indexing="ij")
    image_features = torch.stack([(cols + 0.5) * s, (rows + 0.5) * s])[None].float()  # pixel coordinate + 0.5
    grid = split.resample(image_features, (h, w), s)
    assert grid.shape == (1, 2, 8, 8) and split.grid_hw((h, w)) == (8, 8)
    centres = (torch.arange(8) + 0.5) * 8  # input pixel + 0.5 of each cell's centre
    torch.testing.assert_close(grid[0, 0, :6], (centres * 2).expand(6, 8))  # x: image = input / r
    torch.testing.assert_close(grid[0, 1, :6], (centres[:6, None] * 2).expand(6, 8))
    assert float(grid[0, :, 6:].abs().max()) == 0.0  # below the image: the letterbox padding
    tiny = tiny_classifier()
    same = torch.rand(1, 4, 5, 7)
    assert SplitTaskNetwork(tiny, "features.3").resample(same, (40, 56), 8) is same  # no resize: identity


# --- ESPNet -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", ESPNET_CUTS)
def test_espnet_cuts_give_the_unsplit_logits_and_labels(espnet, image, cut):
    split = SplitTaskNetwork(espnet, cut)
    channels, stride = {"level1": (19, 2), "level2": (131 + 16 * 4, 4), "level3": (256 + 20 * 4 + 16 * 16, 8)}[cut]
    assert (split.channels, split.stride) == (channels, stride)
    x = as_batch(image)
    with torch.no_grad():
        unsplit = espnet.logits(x * 255)
        features = split.front(x)
        raw = split.back(features, image.shape[:2])
    assert features.shape == (1, channels, 64 // stride, 96 // stride)  # on the 64 x 96 input's grid
    assert max_diff(raw, unsplit) == 0.0
    assert split.predict_images([image]) == espnet.predict([image])
    labels = read_prediction(split.predictions(raw, image.shape[:2])[0])
    assert labels.shape == image.shape[:2] and len(np.unique(labels)) > 1  # at the image's size, not constant


def test_espnet_back_copies_hold_only_what_follows_the_cut(espnet):
    sizes = {}
    for cut in ESPNET_CUTS:
        back = SplitTaskNetwork(espnet, cut).trainable_back()
        sizes[cut] = sum(p.numel() for p in back.parameters())
        assert all(p.requires_grad for p in back.parameters())
    total = sum(p.numel() for p in espnet.network.parameters())
    assert total > sizes["level1"] > sizes["level2"] > sizes["level3"] > 0
    assert not any(p.requires_grad for p in espnet.network.parameters())


def test_default_cuts_and_errors_say_what_is_possible(yolox, espnet):
    assert default_split(yolox) == "stride8" and default_split(espnet) == "level3"
    tiny = tiny_classifier()
    with pytest.raises(SplitError, match="method.split=layer2"):
        default_split(tiny)
    assert "no cut 'level4'" in SplitTaskNetwork(espnet, "level4").unavailable_reason()
    assert "stride8" in SplitTaskNetwork(yolox, "nowhere").unavailable_reason()
    assert SplitTaskNetwork(yolox).unavailable_reason() is None
    with pytest.raises(SplitError, match="no module 'layer9'"):
        SplitTaskNetwork(tiny, "layer9").front(torch.zeros(1, 3, 32, 32))


# --- the real networks (shared weights and images) ------------------------------------------------


def weights_dir() -> Path | None:
    if os.environ.get("HMC_BENCH_WEIGHTS"):
        return Path(os.environ["HMC_BENCH_WEIGHTS"])
    return assets_dir() / "weights" if assets_dir() else None


YOLOX_FILE = "yolox_nano_coco/yolox_nano.onnx"
ESPNET_FILE = "espnet_cityscapes/espnet_p_2_q_8.pth"
COCO_IMAGE = "coco/val2017/000000000139.jpg"
CITYSCAPES_IMAGE = "cityscapes/leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png"


def real(files: tuple[str, ...], image: str) -> pytest.MarkDecorator:
    have = (
        weights_dir() is not None
        and assets_dir() is not None
        and all((weights_dir() / f).is_file() for f in files)
        and (assets_dir() / image).is_file()
    )
    return pytest.mark.skipif(not have, reason="HMC_BENCH_WEIGHTS / HMC_BENCH_ASSETS are not set")


def config_task(name: str):
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HMC_BENCH_WEIGHTS", str(weights_dir()))
        with initialize_config_module(config_module="bench.conf", version_base="1.3"):
            return instantiate(compose("config", overrides=[f"task={name}", "task.device=cpu"]).task)


def read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    return np.array(Image.open(path).convert("RGB"))


@pytest.mark.assets
@real((YOLOX_FILE,), COCO_IMAGE)
def test_real_yolox_nano_split_after_dark3_gives_the_unsplit_network():
    task = config_task("yolox-nano")
    image = read_rgb(assets_dir() / COCO_IMAGE)
    split = SplitTaskNetwork(task)
    assert (split.channels, split.stride) == (64, 8)  # dark3's output on the 416 x 416 input: 64 x 52 x 52
    x = as_batch(image)
    with torch.no_grad():
        diff = max_diff(split.back(split.front(x), image.shape[:2]), task.torch_outputs(x)[0])
    predictions = split.predict_images([image])[0]
    print(f"\nYOLOX-Nano cut {split.halves.cut.describe()}: max abs diff {diff:.1e}, {len(predictions)} detections")
    assert diff == 0.0
    assert predictions == task.torch_predict([image])[0]
    onnxruntime = task.predict([image])[0]  # onnxruntime: the same detections up to float noise
    assert len(predictions) == len(onnxruntime) > 0
    assert predictions[0]["bbox"] == pytest.approx(onnxruntime[0]["bbox"], abs=0.05)


@pytest.mark.assets
@real((ESPNET_FILE,), CITYSCAPES_IMAGE)
def test_real_espnet_cuts_give_the_unsplit_network():
    task = config_task("espnet")
    image = read_rgb(assets_dir() / CITYSCAPES_IMAGE)
    reference = task.predict([image])
    x = as_batch(image)
    with torch.no_grad():
        unsplit = task.logits(x * 255)
    for cut in ESPNET_CUTS:
        split = SplitTaskNetwork(task, cut)
        with torch.no_grad():
            raw = split.back(split.front(x), image.shape[:2])
        diff = max_diff(raw, unsplit)
        print(f"\nESPNet cut {cut}: {split.channels} channels at stride {split.stride}, max abs diff {diff:.1e}")
        assert diff == 0.0
        assert split.predictions(raw, image.shape[:2]) == reference
