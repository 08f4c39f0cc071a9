"""Classification: top-k evaluator, label files, TFLite handling, the real MobileNets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import assets_dir, requires_assets
from PIL import Image

from bench.datasets.base import DatasetUnavailable
from bench.datasets.imagenet_folder import ImageNetFolder, LabelFileError
from bench.tasks import classification as cls
from bench.tasks.base import TaskUnavailable
from bench.tasks.runtimes import tflite

# ---------------------------------------------------------------- evaluator


def test_topk_accuracy_by_hand() -> None:
    preds = {
        "a": {"top5": [3, 1, 2, 0, 4], "scores": [0.5, 0.2, 0.1, 0.1, 0.05]},  # label 3: top-1 hit
        "b": {"top5": [1, 3, 2, 0, 4], "scores": [0.5, 0.2, 0.1, 0.1, 0.05]},  # label 4: top-5 hit only
        "c": {"top5": [5, 6, 7, 8, 9], "scores": [0.5, 0.2, 0.1, 0.1, 0.05]},  # label 0: miss
        "d": {"top5": [0, 1, 2, 3, 4], "scores": [0.5, 0.2, 0.1, 0.1, 0.05]},  # label 0: top-1 hit
    }
    labels = {"a": 3, "b": 4, "c": 0, "d": 0}
    task = cls.TFLiteClassifier("c", "unused.tflite", num_classes=10)
    assert task.evaluate(preds, labels) == {"top1": 2 / 4, "top5": 3 / 4}
    assert task.evaluate({}, labels) == {
        "top1": pytest.approx(np.nan, nan_ok=True),
        "top5": pytest.approx(np.nan, nan_ok=True),
    }


def test_fidelity_protocol_is_agreement_with_uncompressed_top1() -> None:
    task = cls.TFLiteClassifier("c", "unused.tflite", num_classes=10)
    uncompressed = {"a": {"top5": [3, 1, 2, 0, 4], "scores": []}, "b": {"top5": [7, 1, 2, 0, 4], "scores": []}}
    refs = {k: task.reference_from_prediction(p) for k, p in uncompressed.items()}
    assert refs == {"a": 3, "b": 7}
    json.dumps(refs)
    assert task.evaluate(uncompressed, refs) == {"top1": 1.0, "top5": 1.0}
    compressed = {"a": {"top5": [1, 3, 2, 0, 4], "scores": []}, "b": {"top5": [0, 1, 2, 5, 4], "scores": []}}
    assert task.evaluate(compressed, refs) == {"top1": 0.0, "top5": 0.5}


def test_evaluator_rejects_labels_outside_the_model() -> None:
    task = cls.TFLiteClassifier("c", "unused.tflite", num_classes=10)
    with pytest.raises(ValueError, match="outside the network's 0..9"):
        task.evaluate({"a": {"top5": [1], "scores": [1.0]}}, {"a": 10})
    with pytest.raises(KeyError):
        task.evaluate({"a": {"top5": [1], "scores": [1.0]}}, {})


def test_top_k_order_and_ties() -> None:
    ids, scores = cls.top_k(np.array([0.1, 0.3, 0.3, 0.0, 0.2, 0.05, 0.05]), 5)
    assert ids == [1, 2, 4, 0, 5] and scores == [0.3, 0.3, 0.2, 0.1, 0.05]


def test_slim_central_crop_matches_tf_arithmetic() -> None:
    img = np.arange(480 * 640 * 3, dtype=np.uint32).reshape(480, 640, 3)
    crop = cls.slim_central_crop(img, 0.875)
    # tf.image.central_crop: start = int((h - h * f) / 2), size = h - 2 * start
    assert crop.shape == (480 - 2 * 30, 640 - 2 * 40, 3)
    assert np.array_equal(crop[0, 0], img[30, 40])


# ---------------------------------------------------------------- ImageNet-style folder


def make_images(root: Path, names: list[str]) -> None:
    rng = np.random.default_rng(0)
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, size=(9, 13, 3)).astype(np.uint8)).save(path)


def test_label_file_formats(tmp_path: Path) -> None:
    make_images(tmp_path, ["b.png", "a.png", "sub/c.png"])
    (tmp_path / "labels.csv").write_text("filename,label\nb.png,7\na.png,0\nsub/c.png,999\n")
    ds = ImageNetFolder(tmp_path, labels="labels.csv")
    samples = ds.samples()
    assert [s.id for s in samples] == ["a.png", "b.png", "sub/c.png"]
    assert ds.targets("classification", samples) == {"a.png": 0, "b.png": 7, "sub/c.png": 999}
    assert ds.load(samples[0]).shape == (9, 13, 3)
    with pytest.raises(KeyError):
        ds.targets("segmentation", samples)

    (tmp_path / "labels.tsv").write_text("a.png\t5\nb.png\t6\n")
    assert ImageNetFolder(tmp_path, labels=tmp_path / "labels.tsv").labels() == {"a.png": 5, "b.png": 6}
    (tmp_path / "val.txt").write_text("a.png 1\nb.png 2\n")  # Caffe's val.txt
    assert ImageNetFolder(tmp_path, labels="val.txt").labels() == {"a.png": 1, "b.png": 2}

    # class names (WordNet ids) through a class list
    (tmp_path / "classes.txt").write_text("n01440764 tench\nn01443537 goldfish\nn01484850 great white shark\n")
    (tmp_path / "named.csv").write_text("a.png,n01443537\nb.png,tench\n")
    ds = ImageNetFolder(tmp_path, labels="named.csv", classes="classes.txt", num_classes=3)
    assert ds.labels() == {"a.png": 1, "b.png": 0}
    # ImageNet names two classes "crane": a name must be unambiguous
    (tmp_path / "cranes.txt").write_text("crane\ngoldfish\ncrane\n")
    (tmp_path / "crane.csv").write_text("a.png,goldfish\nb.png,crane\n")
    with pytest.raises(LabelFileError, match="crane.csv:2: class 'crane' is ambiguous .lines 1 and 3"):
        ImageNetFolder(tmp_path, labels="crane.csv", classes="cranes.txt", num_classes=3).samples()


@pytest.mark.parametrize(
    ("content", "kwargs", "message"),
    [
        ("a.png,1000\n", {}, r"labels.csv:1: class index 1000 is outside 0..999"),
        ("a.png,-1\n", {}, "outside"),
        ("a.png,n09999999\n", {"classes": "classes.txt", "num_classes": 2}, "unknown class 'n09999999'"),
        ("a.png,tench\n", {}, "not a class index"),
        ("a.png,1\na.png,2\n", {}, "labelled twice"),
        ("a.png\n", {}, "expected 'filename,label'"),
        ("a.png,1\n", {"classes": "classes.txt"}, "lists 2 classes but the network has num_classes=1000"),
        ("missing.png,1\n", {}, "missing.png"),
    ],
)
def test_bad_label_files(tmp_path: Path, content: str, kwargs: dict, message: str) -> None:
    make_images(tmp_path, ["a.png"])
    (tmp_path / "classes.txt").write_text("n01440764\nn01443537\n")
    (tmp_path / "labels.csv").write_text(content)
    with pytest.raises(DatasetUnavailable, match=message):
        ImageNetFolder(tmp_path, labels="labels.csv", **kwargs).samples()


def test_class_folder_layout(tmp_path: Path) -> None:
    make_images(tmp_path, ["n01443537/x.png", "n01440764/y.png", "n01440764/z.jpg"])
    (tmp_path / "classes.txt").write_text("n01440764\nn01443537\nn01484850\n")
    ds = ImageNetFolder(tmp_path, classes=tmp_path / "classes.txt", num_classes=3)
    assert ds.labels() == {"n01440764/y.png": 0, "n01440764/z.jpg": 0, "n01443537/x.png": 1}
    # without a class list, sorted folders are the classes only when all are there
    assert ImageNetFolder(tmp_path, num_classes=2).labels()["n01443537/x.png"] == 1
    with pytest.raises(LabelFileError, match="2 class folders .* num_classes=1000"):
        ImageNetFolder(tmp_path).samples()
    make_images(tmp_path, ["n99999999/w.png"])
    with pytest.raises(LabelFileError, match="n99999999"):
        ImageNetFolder(tmp_path, classes=tmp_path / "classes.txt", num_classes=3).samples()
    with pytest.raises(DatasetUnavailable, match="does not exist"):
        ImageNetFolder(tmp_path / "nope").samples()


# ---------------------------------------------------------------- TFLite handling, on a stand-in interpreter


class FakeClassifierInterpreter:
    """A 1001-output uint8 'softmax' as the TF-slim models emit: the class is the mean red level // 64 + 1."""

    size = (8, 8)

    def __init__(self, model_path: str, num_threads=None):
        self.seen = []

    def allocate_tensors(self) -> None:
        pass

    def get_input_details(self):
        return [{"index": 0, "shape": np.array([1, *self.size, 3]), "dtype": np.uint8, "quantization": (1 / 128, 128)}]

    def get_output_details(self):
        return [{"index": 1, "dtype": np.uint8, "quantization": (1 / 256, 0)}]

    def set_tensor(self, index, value):
        self.x = value
        self.seen.append(value.copy())

    def invoke(self) -> None:
        pass

    def get_tensor(self, index):
        out = np.zeros((1, 1001), np.uint8)
        out[0, 0] = 200  # background: never reported
        k = int(self.x[0, :, :, 0].mean()) // 64 + 1
        out[0, k], out[0, k + 1], out[0, k + 2] = 150, 60, 10
        return out


def test_tflite_classifier_offset_and_dequantisation(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tflite, "interpreter_class", lambda: FakeClassifierInterpreter)
    model = tmp_path / "toy.tflite"
    model.write_bytes(b"stand-in")
    task = cls.TFLiteClassifier("c", model)
    assert task.unavailable_reason() is None
    img = np.full((30, 40, 3), 130, np.uint8)  # red 130 -> output 3 -> class 2
    (pred,) = json.loads(json.dumps(task.predict([img])))
    assert pred["top5"][:3] == [2, 3, 4]
    assert pred["scores"][:3] == pytest.approx([150 / 256, 60 / 256, 10 / 256], abs=1e-6)
    assert len(pred["top5"]) == 5
    seen = task.model.interpreter.seen[0]
    assert seen.shape == (1, 8, 8, 3) and (seen == 130).all()  # raw pixels: the model's own quantisation
    with pytest.raises(TaskUnavailable, match="not num_classes"):
        cls.TFLiteClassifier("c", model, label_offset=0).predict([img])


def test_classifier_missing_model_message(tmp_path: Path) -> None:
    why = cls.TFLiteClassifier("c", tmp_path / "mobilenet_v2_1.0_224_quant.tflite").unavailable_reason()
    assert "mobilenet_v2_1.0_224_quant.tflite" in why and "HMC_BENCH_WEIGHTS" in why
    assert "github.com/google-coral/test_data" in why


def test_shorter_side_crop(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tflite, "interpreter_class", lambda: FakeClassifierInterpreter)
    model = tmp_path / "toy.tflite"
    model.write_bytes(b"stand-in")
    img = np.zeros((40, 100, 3), np.uint8)
    img[:, 50:] = 255
    task = cls.TFLiteClassifier("c", model, crop="shorter", central_fraction=0.5)
    x = task.preprocess(img)  # shorter side 40 -> 16, width 40; centre 8 x 8
    assert x.shape == (8, 8, 3) and (x[:, :3] == 0).all() and (x[:, 5:] == 255).all()


# ---------------------------------------------------------------- torchvision (no weights needed)


def test_torchvision_classifier_offline_and_random_init(tmp_path: Path, monkeypatch) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    task = cls.TorchvisionClassifier("r50", model="resnet50", weights="IMAGENET1K_V2", device="cpu")
    why = task.unavailable_reason()
    assert "resnet50-11ad3fa6.pth" in why and "TORCH_HOME" in why and "download.pytorch.org" in why
    assert (task.resize_size, task.crop_size) == (232, 224)
    with pytest.raises(TaskUnavailable):
        task.network  # noqa: B018 - nothing is downloaded

    task = cls.TorchvisionClassifier("mnv3", model="mobilenet_v3_small", weights=None, device="cpu")
    assert task.uses_torch and task.unavailable_reason() is None
    preds = task.predict([np.zeros((50, 70, 3), np.uint8), np.full((300, 200, 3), 90, np.uint8)])
    assert all(len(p["top5"]) == 5 and all(0 <= c < 1000 for c in p["top5"]) for p in preds)
    x = torch.rand(2, 3, 64, 80, requires_grad=True)
    task.logits(x).sum().backward()
    assert x.grad is not None

    # ResNet builders take no weights_backbone: random init and local state dicts must still build
    task = cls.TorchvisionClassifier("r18", model="resnet18", weights=None, device="cpu")
    assert len(task.predict([np.zeros((40, 40, 3), np.uint8)])[0]["top5"]) == 5
    torch.save(task.network.state_dict(), tmp_path / "r18.pt")
    local = cls.TorchvisionClassifier(
        "r18", model="resnet18", weights=None, checkpoint=tmp_path / "r18.pt", device="cpu"
    )
    assert torch.equal(local.network.fc.weight, task.network.fc.weight)


# ---------------------------------------------------------------- real models (shared assets)


def mobilenet(name: str = "mobilenet_v2_1.0_224_quant.tflite", **kw) -> cls.TFLiteClassifier:
    return cls.TFLiteClassifier("mnv2", assets_dir() / "weights" / "mobilenet_imagenet_tflite" / name, **kw)


@requires_assets
def test_tf_labels_are_torchvision_order_after_background() -> None:
    labels = assets_dir() / "labels"
    assert cls.label_offset_from_files(labels / "imagenet_labels_1001_tf.txt", labels / "imagenet_classes.txt") == 1
    names = cls.read_class_names(labels / "imagenet_classes.txt")
    assert len(names) == 1000 and names[88] == "macaw"


@requires_assets
@pytest.mark.parametrize(
    "model",
    [
        "mobilenet_v2_1.0_224_quant.tflite",
        "mobilenet_v1_0.25_128_quant.tflite",
        "mobilenet_v1_0.5_160_quant.tflite",
        "mobilenet_v1_0.75_192_quant.tflite",
    ],
)
def test_mobilenets_see_a_macaw(model: str) -> None:
    from bench.io.images import read_rgb8

    task = mobilenet(model)
    assert task.model.input_size[0] == int(model.split("_")[-2])
    (pred,) = task.predict([read_rgb8(assets_dir() / "kodak" / "kodim23.png")])
    assert pred["top5"][0] == 88  # macaw, torchvision index


@requires_assets
def test_mobilenet_v2_fidelity_with_itself_on_coco() -> None:
    from bench.datasets.folder import ImageFolder

    ds = ImageFolder(assets_dir() / "coco" / "val2017", limit=24)
    samples = ds.samples()
    task = mobilenet()
    preds = {s.id: task.predict([ds.load(s)])[0] for s in samples}
    refs = {k: task.reference_from_prediction(p) for k, p in preds.items()}
    scores = task.evaluate(preds, refs)
    print(f"\nMobileNetV2 fidelity with itself on {len(samples)} COCO images: {scores}")
    assert scores == {"top1": 1.0, "top5": 1.0}
    # a coarse JPEG of the same images lowers agreement, but not to chance
    import io

    def jpeg(img: np.ndarray) -> np.ndarray:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=5)
        return np.asarray(Image.open(buf).convert("RGB"))

    degraded = {s.id: task.predict([jpeg(ds.load(s))])[0] for s in samples}
    scores = task.evaluate(degraded, refs)
    print(f"MobileNetV2 agreement after JPEG q=5: {scores}")
    assert 0.1 < scores["top1"] < 1.0 and scores["top5"] >= scores["top1"]
