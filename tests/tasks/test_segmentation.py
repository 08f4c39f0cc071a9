"""Semantic segmentation: the mIoU evaluator, label maps as JSON, Cityscapes labels, the segmenters."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import assets_dir, requires_assets
from PIL import Image

from bench.datasets.base import DatasetUnavailable
from bench.datasets.cityscapes import (
    LABELS,
    TRAIN_CLASSES,
    Cityscapes,
    fetch_cityscapes,
    label_ids_to_train_ids,
)
from bench.fetch import FetchError
from bench.tasks import segmentation as seg
from bench.tasks.base import TaskUnavailable
from bench.tasks.evaluators import segmentation as seg_eval
from bench.tasks.masks import decode_label_png, encode_label_png, label_prediction, read_label_file
from bench.tasks.networks import espnet
from bench.tasks.runtimes import tflite

# Cityscapes' 19 evaluated labelIds in trainId order (cityscapesScripts labels.py), stated here independently
EVAL_LABEL_IDS = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]


def write_png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8), mode="L").save(path)
    return path


def miou_by_sets(
    pairs: list[tuple[np.ndarray, np.ndarray]], num_classes: int, ignore: int = 255
) -> tuple[float, float]:
    """Reference mIoU / pixel accuracy by explicit sets of pixel positions over all images."""
    inter = {c: 0 for c in range(num_classes)}
    union = {c: 0 for c in range(num_classes)}
    correct = valid = 0
    for gt, pred in pairs:
        positions = [(y, x) for y in range(gt.shape[0]) for x in range(gt.shape[1]) if gt[y, x] != ignore]
        valid += len(positions)
        correct += sum(1 for p in positions if gt[p] == pred[p])
        for c in range(num_classes):
            g = {p for p in positions if gt[p] == c}
            q = {p for p in positions if pred[p] == c}
            inter[c] += len(g & q)
            union[c] += len(g | q)
    ious = [inter[c] / union[c] for c in range(num_classes) if union[c] > 0]
    return sum(ious) / len(ious), correct / valid


# ---------------------------------------------------------------- evaluator


def test_miou_matches_independent_set_counting(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    num_classes = 6
    preds, refs, pairs = {}, {}, []
    for i in range(3):
        gt = rng.integers(0, 5, size=(17, 23)).astype(np.uint8)  # class 5 never in ground truth
        gt[rng.random(gt.shape) < 0.1] = 255
        pred = gt.copy()
        flip = rng.random(gt.shape) < 0.3
        pred[flip] = rng.integers(0, num_classes, size=int(flip.sum()))
        pred[0, :3] = 255  # "no class" predictions: misses
        refs[f"s{i}"] = str(write_png(tmp_path / f"gt{i}.png", gt))
        preds[f"s{i}"] = json.loads(json.dumps(label_prediction(pred)))  # survives JSON
        pairs.append((gt, pred))
    expected_miou, expected_acc = miou_by_sets(pairs, num_classes)
    task_scores, cm = seg_eval.evaluate_segmentation(preds, refs, num_classes)
    assert task_scores["mIoU"] == pytest.approx(expected_miou, abs=1e-12)
    assert task_scores["pixel_acc"] == pytest.approx(expected_acc, abs=1e-12)
    # dataset-level accumulation, not a mean of per-image scores
    assert cm.sum() == sum(int((gt != 255).sum()) for gt, _ in pairs)


def test_ground_truth_as_prediction_scores_one(tmp_path: Path) -> None:
    gt = np.zeros((8, 8), np.uint8)
    gt[2:6, 2:6] = 3
    gt[0, 0] = 255
    ref = {"path": str(write_png(tmp_path / "gt.png", gt)), "encoding": "trainIds"}
    pred = gt.copy()
    pred[0, 0] = 7  # under the ignore pixel: does not count
    scores, _ = seg_eval.evaluate_segmentation({"a": label_prediction(pred)}, {"a": ref}, 19)
    assert scores == {"mIoU": 1.0, "pixel_acc": 1.0}


def test_known_perturbation_hand_computed() -> None:
    # 4 x 4 ground truth: left half class 0 (8 px), right half class 1 (8 px).
    gt = np.array([[0, 0, 1, 1]] * 4, np.uint8)
    pred = gt.copy()
    pred[0, 2] = 0  # a class-1 pixel called 0
    pred[1, 1] = 2  # a class-0 pixel called 2 (class 2 absent from the ground truth)
    pred[3, 3] = 255  # a class-1 pixel left unlabelled
    # class 0: TP 7, FP 1, FN 1 -> 7/9; class 1: TP 6, FP 0, FN 2 -> 6/8; class 2: TP 0, FP 1 -> 0
    # classes 3..18: absent from both, left out of the mean
    expected = (Fraction(7, 9) + Fraction(6, 8) + 0) / 3
    scores, cm = seg_eval.evaluate_segmentation({"x": label_prediction(pred)}, {"x": label_prediction(gt)}, 19)
    assert scores["mIoU"] == pytest.approx(float(expected), abs=1e-12)
    assert scores["pixel_acc"] == pytest.approx(13 / 16)
    iou = seg_eval.per_class_iou(cm)
    assert iou[:3] == pytest.approx([7 / 9, 6 / 8, 0.0])
    assert np.isnan(iou[3:]).all()


def test_evaluator_errors(tmp_path: Path) -> None:
    gt = np.full((4, 4), 26, np.uint8)  # a labelId, not a trainId
    ref = str(write_png(tmp_path / "gt.png", gt))
    with pytest.raises(ValueError, match="outside 0..18"):
        seg_eval.evaluate_segmentation({"a": label_prediction(np.zeros((4, 4)))}, {"a": ref}, 19)
    with pytest.raises(ValueError, match="shape"):
        seg_eval.evaluate_segmentation({"a": label_prediction(np.zeros((4, 5)))}, {"a": label_prediction(gt % 19)}, 19)
    with pytest.raises(KeyError, match="no reference"):
        seg_eval.evaluate_segmentation({"b": label_prediction(np.zeros((4, 4)))}, {"a": ref}, 19)
    cityscapes_gt = {"a": {"path": ref, "encoding": "trainIds", "label_space": "cityscapes"}}
    with pytest.raises(ValueError, match="fidelity protocol"):
        seg_eval.evaluate_segmentation({"a": label_prediction(np.zeros((4, 4)))}, cityscapes_gt, 21, label_space="voc")
    rgb = tmp_path / "color.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(rgb)
    with pytest.raises(ValueError, match="not a label map"):
        read_label_file(rgb)


def test_label_png_roundtrip() -> None:
    labels = np.random.default_rng(1).integers(0, 256, size=(33, 71)).astype(np.uint8)
    encoded = encode_label_png(labels)
    assert isinstance(encoded, str)
    assert np.array_equal(decode_label_png(encoded), labels)
    with pytest.raises(ValueError, match="0..255"):
        encode_label_png(np.full((2, 2), 300))


# ---------------------------------------------------------------- Cityscapes


def test_cityscapes_label_table() -> None:
    assert len(LABELS) == 34 and [lab.id for lab in LABELS] == list(range(34))
    expected = np.full(34, 255)
    expected[EVAL_LABEL_IDS] = np.arange(19)
    assert np.array_equal(label_ids_to_train_ids(np.arange(34, dtype=np.uint8)), expected)
    assert TRAIN_CLASSES[0] == "road" and TRAIN_CLASSES[13] == "car" and TRAIN_CLASSES[18] == "bicycle"


def make_cityscapes(root: Path, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A tiny official-layout tree: 2 cities, labelIds for 3 frames; returns the expected trainIds per id."""
    expected = {}
    frames = [
        ("aachen", "aachen_000000_000019"),
        ("aachen", "aachen_000001_000019"),
        ("bremen", "bremen_000000_000019"),
    ]
    for city, stem in frames:
        image = rng.integers(0, 256, size=(12, 24, 3)).astype(np.uint8)
        (root / "leftImg8bit" / "val" / city).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png")
        label_ids = rng.integers(0, 34, size=(12, 24)).astype(np.uint8)
        write_png(root / "gtFine" / "val" / city / f"{stem}_gtFine_labelIds.png", label_ids)
        train_id = {lid: t for t, lid in enumerate(EVAL_LABEL_IDS)}
        expected[f"val/{city}/{stem}"] = np.array(
            [[train_id.get(int(v), 255) for v in row] for row in label_ids], dtype=np.uint8
        )
    return expected


def test_cityscapes_tree_maps_label_ids_to_train_ids(tmp_path: Path) -> None:
    expected = make_cityscapes(tmp_path, np.random.default_rng(2))
    ds = Cityscapes(tmp_path, split="val")
    samples = ds.samples()
    assert [s.id for s in samples] == sorted(expected)
    assert ds.load(samples[0]).shape == (12, 24, 3)
    targets = ds.targets("segmentation", samples)
    json.dumps(targets)  # light and serialisable: paths, not arrays
    for s in samples:
        assert targets[s.id]["encoding"] == "cityscapes-labelIds"
        assert np.array_equal(seg_eval.read_reference(targets[s.id]), expected[s.id])
        assert np.array_equal(ds.train_ids(s), expected[s.id])
    # labelIds are preferred over a labelTrainIds file next to them
    stem = tmp_path / "gtFine" / "val" / "aachen" / "aachen_000000_000019"
    write_png(Path(f"{stem}_gtFine_labelTrainIds.png"), np.zeros((12, 24), np.uint8))
    assert ds.label_target(samples[0])["encoding"] == "cityscapes-labelIds"
    # only labelTrainIds: used as they are
    Path(f"{stem}_gtFine_labelIds.png").unlink()
    assert ds.label_target(samples[0])["encoding"] == "trainIds"
    assert not ds.train_ids(samples[0]).any()
    # neither: a clear error naming the file
    Path(f"{stem}_gtFine_labelTrainIds.png").unlink()
    with pytest.raises(DatasetUnavailable, match="aachen_000000_000019_gtFine_labelIds.png"):
        ds.targets("segmentation", samples)
    # ground truth fed back as the prediction: mIoU 1
    refs = ds.targets("segmentation", samples[1:])
    preds = {s.id: label_prediction(expected[s.id]) for s in samples[1:]}
    assert seg_eval.evaluate_segmentation(preds, refs, 19)[0]["mIoU"] == 1.0


def test_cityscapes_options_and_errors(tmp_path: Path) -> None:
    make_cityscapes(tmp_path, np.random.default_rng(3))
    assert [s.id for s in Cityscapes(tmp_path, cities=["bremen"]).samples()] == ["val/bremen/bremen_000000_000019"]
    assert len(Cityscapes(tmp_path, limit=2).samples()) == 2
    with pytest.raises(KeyError):
        Cityscapes(tmp_path).targets("detection", [])
    with pytest.raises(DatasetUnavailable, match="fetch cityscapes"):
        Cityscapes(tmp_path, split="train").samples()
    assert Cityscapes(tmp_path, split="test").label_kinds == ()
    with pytest.raises(ValueError, match="split"):
        Cityscapes(tmp_path, split="validation")
    with pytest.raises(FetchError, match="csDownload") as err:
        fetch_cityscapes(tmp_path / "cs")
    assert "gtFine_trainvaltest.zip" in str(err.value) and "leftImg8bit_trainvaltest.zip" in str(err.value)


# ---------------------------------------------------------------- TFLite handling, on a stand-in interpreter


class FakeInterpreter:
    """Stands in for a TFLite interpreter: input quantisation as a real model declares it, a toy network."""

    def __init__(
        self,
        model_path: str,
        num_threads=None,
        output: str = "argmax",
        input_dtype=np.uint8,
        quant=(1 / 128, 128),
        size=(8, 8),
    ):
        self.output, self.size = output, size
        self.input = {"index": 0, "shape": np.array([1, *size, 3]), "dtype": input_dtype, "quantization": quant}
        self.seen = []

    def allocate_tensors(self) -> None:
        pass

    def get_input_details(self):
        return [self.input]

    def get_output_details(self):
        if self.output == "argmax":
            return [{"index": 1, "dtype": np.int64, "quantization": (0.0, 0)}]
        return [{"index": 1, "dtype": np.uint8, "quantization": (0.05, 10)}]

    def set_tensor(self, index, value):
        assert value.dtype == self.input["dtype"] and value.shape == (1, *self.size, 3)
        self.x = value
        self.seen.append(value.copy())

    def invoke(self) -> None:
        pass

    def get_tensor(self, index):
        bright = self.x[0, :, :, 0].astype(np.int64) >= 128  # class 1 where the red channel is bright
        if self.output == "argmax":
            return bright[None].astype(np.int64)
        scores = np.stack([np.where(bright, 10, 30), np.where(bright, 50, 10), np.full(bright.shape, 20)], -1)
        return scores[None].astype(np.uint8)


@pytest.fixture()
def fake_tflite(monkeypatch, tmp_path: Path):
    made = []

    def factory(**kw):
        class Interp(FakeInterpreter):
            def __init__(self, model_path, num_threads=None):
                super().__init__(model_path, num_threads, **kw)
                made.append(self)

        monkeypatch.setattr(tflite, "interpreter_class", lambda: Interp)
        model = tmp_path / "toy.tflite"
        model.write_bytes(b"stand-in")
        return model, made

    return factory


def half_image(h: int = 16, w: int = 32) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[:, w // 2 :, 0] = 200  # right half bright red -> class 1
    return img


@pytest.mark.parametrize("output", ["argmax", "logits"])
@pytest.mark.parametrize("resize", ["stretch", "pad", "tile"])
def test_tflite_segmenter_pipeline(fake_tflite, output: str, resize: str) -> None:
    model, made = fake_tflite(output=output)
    task = seg.TFLiteSegmenter("toy", model, num_classes=3, resize=resize, scale=0.5)
    assert task.unavailable_reason() is None
    img = half_image()
    (pred,) = json.loads(json.dumps(task.predict([img])))
    labels = seg_eval.read_prediction(pred)
    assert labels.shape == img.shape[:2]
    expected = (np.arange(32) >= 16).astype(np.uint8)[None].repeat(16, 0)
    assert np.array_equal(labels, expected)
    assert task.evaluate({"a": pred}, {"a": label_prediction(expected)}) == {"mIoU": 1.0, "pixel_acc": 1.0}
    if resize == "tile":  # 8 x 16 after scaling: two 8 x 8 windows
        assert len(made[0].seen) == 2


def test_tflite_quantisation(fake_tflite) -> None:
    img = half_image(8, 8)
    img[0, 0] = (0, 127, 255)
    # uint8, scale 1/128, zero point 128 (the TF-slim / DeepLab models): exactly the raw pixels reach the model
    model, made = fake_tflite()
    seg.TFLiteSegmenter("toy", model, num_classes=2).predict([img])
    assert np.array_equal(made[-1].seen[0][0], img)
    # int8 input, scale 1/128, zero point 0: pixel - 128
    model, _ = fake_tflite(input_dtype=np.int8, quant=(1 / 128, 0))
    assert np.array_equal(tflite.TFLiteModel(model).quantize(img, 128, 128), (img.astype(int) - 128).astype(np.int8))
    # uint8 with another scale: (p - mean) / std requantised; mean 0, std 255 into scale 1/255 -> p
    model, _ = fake_tflite(quant=(1 / 255, 0))
    assert np.array_equal(tflite.TFLiteModel(model).quantize(img, 0.0, 255.0), img)
    # mean 127.5, std 127.5 into scale 1/128, zero point 128: round((p - 127.5) / 127.5 * 128 + 128), clipped
    model, _ = fake_tflite()
    x = tflite.TFLiteModel(model).quantize(np.array([[[0, 128, 255]]], np.uint8), 127.5, 127.5)
    assert x.dtype == np.uint8 and x.tolist() == [[[0, 129, 255]]]
    # a float input: the normalised values themselves
    model, _ = fake_tflite(input_dtype=np.float32, quant=(0.0, 0))
    x = tflite.TFLiteModel(model).quantize(np.array([[[0, 128, 255]]], np.uint8), 128, 128)
    assert x.dtype == np.float32 and x.tolist() == [[[-1.0, 0.0, 127 / 128]]]


def test_tflite_class_map_and_unavailable(fake_tflite, tmp_path: Path) -> None:
    model, _ = fake_tflite()
    task = seg.TFLiteSegmenter("toy", model, num_classes=3, class_map=[2, 255])
    labels = seg_eval.read_prediction(task.predict([half_image()])[0])
    assert set(np.unique(labels[:, :16])) == {2} and set(np.unique(labels[:, 16:])) == {255}
    missing = seg.TFLiteSegmenter("toy", tmp_path / "nope.tflite", num_classes=3)
    assert "nope.tflite" in missing.unavailable_reason() and "HMC_BENCH_WEIGHTS" in missing.unavailable_reason()
    with pytest.raises(ValueError, match="resize"):
        seg.TFLiteSegmenter("toy", model, num_classes=3, resize="crop")


def test_tiling_windows_cover_each_pixel_once() -> None:
    for length, size in [(513, 513), (1024, 513), (2048, 513), (514, 513), (1500, 400)]:
        wins = seg.tile_windows(length, size)
        owned = np.zeros(length, int)
        for start, (a, b) in wins:
            assert start <= a < b <= start + size
            owned[a:b] += 1
        assert (owned == 1).all()


# ---------------------------------------------------------------- torchvision and ESPNet (no weights needed)


def test_torchvision_segmenter_offline_and_random_init(tmp_path: Path, monkeypatch) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    task = seg.TorchvisionSegmenter("voc", model="lraspp_mobilenet_v3_large", weights="DEFAULT", device="cpu")
    why = task.unavailable_reason()
    assert "lraspp_mobilenet_v3_large-d234d4ea.pth" in why and "TORCH_HOME" in why
    assert "https://download.pytorch.org/models/" in why
    with pytest.raises(TaskUnavailable):
        task.network  # noqa: B018 - loading raises, nothing is downloaded
    assert task.num_classes == 21 and task.class_names[0] == "__background__"

    task = seg.TorchvisionSegmenter(
        "voc", model="lraspp_mobilenet_v3_large", weights=None, num_classes=21, device="cpu", resize=64
    )
    assert task.uses_torch and task.unavailable_reason() is None
    (pred,) = task.predict([half_image(40, 56)])
    assert seg_eval.read_prediction(pred).shape == (40, 56)
    x = torch.rand(1, 3, 40, 56, requires_grad=True)
    task.logits(x).sum().backward()  # differentiable, for adapter training
    assert x.grad is not None and isinstance(task.network, torch.nn.Module)


def test_espnet_architecture_matches_checkpoint_layout() -> None:
    pytest.importorskip("torch")
    net = espnet.build_espnet(20, 2, 8)
    state = net.state_dict()
    assert tuple(state["classifier.weight"].shape) == (20, 20, 2, 2)
    assert tuple(state["conv.conv.weight"].shape) == (20, 36, 3, 3)
    assert sum(1 for k in state if not k.endswith("num_batches_tracked")) == 189


# ---------------------------------------------------------------- real models and data (shared assets)


def cityscapes_assets() -> Cityscapes:
    return Cityscapes(assets_dir() / "cityscapes", split="val")


def config_task(name: str, **overrides):
    """A task from its shipped Hydra config, weights from the assets folder."""
    import os

    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate

    os.environ.setdefault("HMC_BENCH_WEIGHTS", str(assets_dir() / "weights"))
    with initialize_config_module(config_module="bench.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"task={name}", *[f"task.{k}={v}" for k, v in overrides.items()]])
        return instantiate(cfg.task)


@pytest.fixture(scope="module")
def cityscapes_frames():
    ds = cityscapes_assets()
    samples = ds.samples()
    return ds, samples, {s.id: ds.load(s) for s in samples}, ds.targets("segmentation", samples)


@requires_assets
def test_pseudo_cityscapes_label_ids_reproduce_label_train_ids() -> None:
    """mmseg's 256x128 copy of frame 000294 has both files, each downsampled on its own.

    So they disagree on a few boundary pixels (an id-7 pixel next to a car is trainId 13 in one file), which
    no label table can reproduce; everywhere else the table gives exactly the official labelTrainIds.
    """
    root = assets_dir() / "cityscapes" / "pseudo_256x128"
    ds = Cityscapes(root, split="val")
    (sample,) = ds.samples()
    target = ds.targets("segmentation", [sample])[sample.id]
    assert target["encoding"] == "cityscapes-labelIds"
    label_ids = read_label_file(target["path"])
    official = read_label_file(Path(target["path"]).with_name(f"{sample.id.split('/')[-1]}_gtFine_labelTrainIds.png"))
    mapped = seg_eval.read_reference(target)
    for lid in np.unique(label_ids):  # every id maps to what the official file mostly holds for it
        values, counts = np.unique(official[label_ids == lid], return_counts=True)
        assert mapped[label_ids == lid][0] == values[counts.argmax()], lid
    differ = mapped != official
    assert differ.mean() < 0.003  # 77 of 32768 pixels
    padded = np.pad(label_ids, 1, mode="edge")
    h, w = label_ids.shape
    boundary = np.zeros_like(differ)
    for dy in range(3):
        for dx in range(3):
            boundary |= padded[dy : dy + h, dx : dx + w] != label_ids
    padded = np.pad(official, 1, mode="edge")
    for dy in range(3):
        for dx in range(3):
            boundary |= padded[dy : dy + h, dx : dx + w] != official
    assert not (differ & ~boundary).any()  # all on class boundaries


@requires_assets
def test_deeplab_edgetpu_cityscapes_miou(cityscapes_frames) -> None:
    ds, samples, images, refs = cityscapes_frames
    assert len(samples) == 4
    task = config_task("segmentation")  # tile x0.5
    preds = {k: task.predict([img])[0] for k, img in images.items()}
    scores = task.evaluate(preds, refs)
    print(f"\nDeepLab-EdgeTPU Cityscapes, 4 val frames, tile x0.5: {scores}")
    assert scores["mIoU"] == pytest.approx(0.556, abs=0.03)
    assert scores["pixel_acc"] > 0.95
    # fidelity protocol against itself: perfect agreement
    fidelity = {k: task.reference_from_prediction(p) for k, p in preds.items()}
    assert task.evaluate(preds, fidelity) == {"mIoU": 1.0, "pixel_acc": 1.0}
    # the model outputs trainIds: shifting them by one wrecks accuracy (MANIFEST: 0.95 %)
    shifted = {k: label_prediction(seg_eval.read_prediction(p) + 1) for k, p in preds.items()}
    assert task.evaluate(shifted, refs)["pixel_acc"] < 0.05

    stretch = config_task("segmentation", resize="stretch", interpolation="linear")
    scores = stretch.evaluate({k: stretch.predict([img])[0] for k, img in images.items()}, refs)
    print(f"DeepLab-EdgeTPU Cityscapes, 4 val frames, stretch to 513x513: {scores}")
    assert scores["pixel_acc"] == pytest.approx(0.929, abs=0.004)  # MANIFEST: 92.9 %
    assert scores["mIoU"] == pytest.approx(0.385, abs=0.03)


@requires_assets
def test_voc_model_refuses_cityscapes_ground_truth_and_sees_a_bird(cityscapes_frames) -> None:
    from bench.io.images import read_rgb8

    _, samples, _, refs = cityscapes_frames
    task = config_task("deeplabv3-voc")
    assert task.label_space == "voc" and task.num_classes == 21
    fake = {samples[0].id: label_prediction(np.zeros((1024, 2048), np.uint8))}
    with pytest.raises(ValueError, match="fidelity protocol"):
        task.evaluate(fake, refs)
    labels = seg_eval.read_prediction(task.predict([read_rgb8(assets_dir() / "kodak" / "kodim23.png")])[0])
    assert labels.shape == (512, 768)
    assert task.class_names[np.bincount(labels.ravel())[1:].argmax() + 1] == "bird"  # two parrots


@requires_assets
def test_espnet_loads_strictly_and_segments(cityscapes_frames) -> None:
    pytest.importorskip("torch")
    ds, samples, images, refs = cityscapes_frames
    task = seg.ESPNetSegmenter(
        "espnet", assets_dir() / "weights" / "espnet_cityscapes" / "espnet_p_2_q_8.pth", device="cpu"
    )
    assert task.unavailable_reason() is None
    assert sum(p.numel() for p in task.network.parameters()) == 364_569  # + BN running stats = 368,341
    sid = samples[0].id
    scores = task.evaluate({sid: task.predict([images[sid]])[0]}, refs)
    print(f"\nESPNet p=2 q=8 on {sid}: {scores}")
    assert scores["pixel_acc"] > 0.8  # 0.834 on this frame; 0.924 (mIoU 0.448) over the 4 frames
