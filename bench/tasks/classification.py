"""Image classification: ImageNet-1k networks (TFLite MobileNets, torchvision) and top-k accuracy.

Class indices are torchvision's ImageNet-1k order (0 = tench ... 999 =
toilet tissue) everywhere: predictions, ground truth, results.

The TF-slim MobileNets have 1001 outputs: index 0 is a "background" class
and index k (1..1000) is torchvision class k - 1 (the first synonym of each
line of Coral's ``imagenet_labels.txt`` is the same name as the line before it
in pytorch/hub's ``imagenet_classes.txt``, for all 1000; see
:func:`label_offset_from_files`). ``label_offset: 1`` drops the background
output before ranking, so top-5 is over the 1000 real classes.

A prediction is ``{"top5": [class ids, best first], "scores": [probabilities]}``.

Metrics:

- ground truth protocol: top-1 / top-5 accuracy against the dataset's labels;
- fidelity protocol (no labels): the reference is the top-1 class predicted on
  the uncompressed image; ``top1`` is the share of images whose top-1 is still
  that class, ``top5`` the share where it is still among the top 5.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench.tasks.base import Task, TaskUnavailable
from bench.tasks.precision import autocast
from bench.tasks.runtimes.tflite import CORAL_TEST_DATA, TFLiteModel, litert_version
from bench.tasks.runtimes.torchvision import TorchvisionNetwork, torchvision_weights
from bench.tasks.segmentation import INTERPOLATION

CLASSIFICATION_METRICS = ("top1", "top5")
TOP_K = 5


def top_k(scores: np.ndarray, k: int = TOP_K) -> tuple[list[int], list[float]]:
    """Indices and scores of the ``k`` best classes, best first; ties go to the lower index."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    order = np.argsort(-scores, kind="stable")[:k]
    return [int(i) for i in order], [round(float(scores[i]), 6) for i in order]


def class_prediction(scores: np.ndarray, k: int = TOP_K) -> dict[str, Any]:
    """The JSON prediction for one image's class scores."""
    ids, values = top_k(scores, k)
    return {"top5": ids, "scores": values}


def _reference_label(reference: Any) -> int:
    if isinstance(reference, Mapping):
        if "label" in reference:
            return int(reference["label"])
        if "top5" in reference:  # a prediction given as the reference: its top-1
            return int(reference["top5"][0])
    if isinstance(reference, (int, np.integer)):
        return int(reference)
    raise ValueError(f"not a classification reference: {reference!r} (expected a class index)")


def evaluate_topk(
    predictions: Mapping[str, Any], references: Mapping[str, Any], num_classes: int | None = None
) -> dict[str, float]:
    """Top-1 / top-5 accuracy of ``predictions`` against reference class indices."""
    hits1 = hits5 = n = 0
    for sample_id, prediction in predictions.items():
        if sample_id not in references:
            raise KeyError(f"no reference for sample {sample_id!r}")
        label = _reference_label(references[sample_id])
        if num_classes is not None and not 0 <= label < num_classes:
            raise ValueError(
                f"sample {sample_id!r}: reference class {label} is outside the network's 0..{num_classes - 1} "
                "(a label file for another class list?)"
            )
        ranked = [int(c) for c in prediction["top5"]]
        if not ranked:
            raise ValueError(f"sample {sample_id!r}: empty prediction")
        hits1 += ranked[0] == label
        hits5 += label in ranked[:TOP_K]
        n += 1
    if n == 0:
        return {"top1": float("nan"), "top5": float("nan")}
    return {"top1": hits1 / n, "top5": hits5 / n}


def read_class_names(path: str | os.PathLike) -> list[str]:
    """One class per line; for synonym lists (``tench, Tinca tinca``) the first synonym."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.split(",")[0].strip() for line in lines if line.strip()]


def label_offset_from_files(model_labels: str | os.PathLike, reference_labels: str | os.PathLike) -> int:
    """How many leading model outputs to drop so that output ``i + offset`` is reference class ``i``.

    Checks every class name: raises ValueError if no offset makes the lists agree.
    """
    model = read_class_names(model_labels)
    ref = read_class_names(reference_labels)
    for offset in range(0, max(1, len(model) - len(ref) + 1)):
        if model[offset : offset + len(ref)] == ref:
            return offset
    raise ValueError(f"{model_labels} and {reference_labels} do not list the same classes in the same order")


class ClassificationTask(Task):
    """What all classifiers share: the top-k evaluator and the fidelity reference."""

    kind = "classification"
    metrics = CLASSIFICATION_METRICS

    def __init__(self, name: str, num_classes: int = 1000, batch_size: int = 8, **options: Any):
        super().__init__(name, batch_size=batch_size, **options)
        self.num_classes = int(num_classes)

    def evaluate(self, predictions: Mapping[str, Any], references: Mapping[str, Any]) -> dict[str, float]:
        return evaluate_topk(predictions, references, self.num_classes)

    def reference_from_prediction(self, prediction: Any) -> Any:
        """The top-1 class on the uncompressed image."""
        return int(prediction["top5"][0])


def slim_central_crop(image: np.ndarray, fraction: float) -> np.ndarray:
    """``tf.image.central_crop``: keep the central ``fraction`` of height and of width."""
    h, w = image.shape[:2]
    top = int((h - h * fraction) / 2)
    left = int((w - w * fraction) / 2)
    return image[top : h - top, left : w - left]


class TFLiteClassifier(ClassificationTask):
    """An ImageNet TFLite classifier (the uint8 TF-slim MobileNets from Coral's test data).

    Preprocessing (``crop``):

    - ``slim`` (default): TF-slim's evaluation preprocessing for Inception-style
      nets, which these MobileNets were evaluated with: central crop of
      ``central_fraction`` (87.5 %) of height and width, then bilinear resize
      to the model's square input (the aspect ratio is not kept);
    - ``shorter``: resize the shorter side to ``size / central_fraction`` and
      centre-crop ``size`` x ``size`` (the torchvision / VGG convention).

    Input size comes from the model. ``label_offset`` output entries are
    dropped first (1 for the 1001-class TF models: background at 0).
    """

    def __init__(
        self,
        name: str,
        model: str | os.PathLike,
        num_classes: int = 1000,
        label_offset: int = 1,
        crop: str = "slim",
        central_fraction: float = 0.875,
        interpolation: str = "linear",
        input_mean: float = 128.0,
        input_std: float = 128.0,
        threads: int | None = None,
        batch_size: int = 8,
        **options: Any,
    ):
        super().__init__(name, num_classes, batch_size=batch_size, **options)
        if crop not in ("slim", "shorter"):
            raise ValueError(f"{name}: crop must be 'slim' or 'shorter', not {crop!r}")
        if interpolation not in INTERPOLATION:
            raise ValueError(f"{name}: interpolation must be one of {sorted(INTERPOLATION)}")
        if not 0 < central_fraction <= 1:
            raise ValueError(f"{name}: central_fraction must be in (0, 1]")
        self.model = TFLiteModel(model, threads)
        self.label_offset = int(label_offset)
        self.crop = crop
        self.central_fraction = float(central_fraction)
        self.interpolation = interpolation
        self.input_mean = float(input_mean)
        self.input_std = float(input_std)

    def unavailable_reason(self) -> str | None:
        return self.model.unavailable_reason(
            f"set HMC_BENCH_WEIGHTS to the weights folder, or task.model; the file is "
            f"{CORAL_TEST_DATA}{self.model.path.name}"
        )

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """The model-sized uint8 RGB crop of ``image``."""
        h, w = self.model.input_size
        interp = INTERPOLATION[self.interpolation]
        if self.crop == "slim":
            return cv2.resize(slim_central_crop(image, self.central_fraction), (w, h), interpolation=interp)
        short = min(image.shape[:2])
        r = (min(h, w) / self.central_fraction) / short
        nh, nw = max(h, round(image.shape[0] * r)), max(w, round(image.shape[1] * r))
        resized = cv2.resize(image, (nw, nh), interpolation=interp)
        top, left = (nh - h) // 2, (nw - w) // 2
        return resized[top : top + h, left : left + w]

    def scores(self, image: np.ndarray) -> np.ndarray:
        """Class probabilities (torchvision order) for one RGB image."""
        x = self.model.quantize(self.preprocess(image), self.input_mean, self.input_std)
        out = np.asarray(self.model.run(x)[0], dtype=np.float64).reshape(-1)
        out = out[self.label_offset :]
        if out.size != self.num_classes:
            raise TaskUnavailable(
                f"{self.model.path.name}: {out.size + self.label_offset} outputs minus label_offset "
                f"{self.label_offset} is {out.size} classes, not num_classes={self.num_classes}"
            )
        return out

    def predict(self, images: Sequence[np.ndarray]) -> list[Any]:
        return [class_prediction(self.scores(img)) for img in images]

    def describe(self) -> str:
        return f"{self.name} (TFLite {self.model.path.name}, {self.crop} crop {self.central_fraction:g})"

    def weight_files(self) -> dict[str, Path]:
        return {"network": self.model.path}

    def versions(self) -> dict[str, str]:
        v = {"runtime": litert_version()}
        if self.model.path.is_file():
            v["model"] = f"{self.model.path.name} sha256:{self.model.sha256()[:16]}"
        return v


class TorchvisionClassifier(TorchvisionNetwork, ClassificationTask):
    """ImageNet classifiers from torchvision's weights API (ResNet-50, MobileNetV3, ...).

    Preprocessing is the weights' own (e.g. ResNet50 V2: shorter side 232,
    centre crop 224, ImageNet mean/std, antialiased bilinear). ``network`` is
    the plain ``nn.Module``; :meth:`logits` is differentiable (adapter
    training). ``weights: null`` builds a randomly initialised network.
    """

    uses_torch = True

    def __init__(
        self,
        name: str,
        model: str = "resnet50",
        weights: str | None = "DEFAULT",
        checkpoint: str | os.PathLike | None = None,
        num_classes: int = 1000,
        device: str = "auto",
        batch_size: int = 8,
        autocast: bool = False,
        **options: Any,
    ):
        super().__init__(name, num_classes, batch_size=batch_size, **options)
        self.arch = model
        self.weights = torchvision_weights(model, weights)
        self.checkpoint = checkpoint
        self.device_name = device
        #: run the network under torch.autocast (bf16 on CPU, fp16 on CUDA; see bench.tasks.precision)
        self.autocast = bool(autocast)
        preset = self.weights.transforms() if self.weights is not None else None
        self.resize_size = int(preset.resize_size[0]) if preset is not None else 256
        self.crop_size = int(preset.crop_size[0]) if preset is not None else 224
        self._network = None

    def logits(self, x: Any) -> Any:
        """N x 3 x H x W float RGB in [0, 1] -> N x classes logits (differentiable)."""
        from torchvision.transforms.functional import center_crop, normalize, resize

        x = resize(x, [self.resize_size], antialias=True)
        x = center_crop(x, [self.crop_size])
        x = normalize(x, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
        return self.network(x)

    def predict(self, images: Sequence[np.ndarray]) -> list[Any]:
        import torch

        preds = []
        with torch.no_grad():  # not inference_mode: a network built here must stay trainable
            for img in images:  # sizes differ: one at a time
                x = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)[None].to(self.device)
                with autocast(self.device, self.autocast):
                    logits = self.logits(x.float() / 255.0)
                probs = logits.float().softmax(1)[0].cpu().numpy()
                preds.append(class_prediction(probs))
        return preds
