"""Machine tasks on video clips: action recognition, and frame-level classification fidelity.

Both take clips (``T x H x W x 3`` uint8 RGB, :mod:`bench.io.video`) and predict
``{"top5": [class ids], "scores": [probabilities]}`` per clip, scored with the
top-1 / top-5 evaluator of :mod:`bench.tasks.classification`.

- :class:`VideoClassifier`: torchvision's video networks (``r3d_18``,
  ``mc3_18``, ``r2plus1d_18``, ``s3d``, ``mvit_v1_b``, ``mvit_v2_s``,
  ``swin3d_t``) through its weights API, preprocessing from the weights
  (``VideoClassification``: resize, centre crop, Kinetics mean/std). The
  network sees ``clip_len`` consecutive frames from the centre of the clip
  (fewer: the last frame repeated). torchvision's published video weights are
  **Kinetics-400** (``label_space: kinetics400``): against UCF101 labels they
  give the fidelity protocol only (agreement with the network's prediction on
  the uncompressed clip). UCF101 top-1 / top-5 accuracy needs a network
  fine-tuned on UCF101: ``weights: null``, ``checkpoint: <state_dict>``
  (read with ``torch.load(weights_only=True)``), ``num_classes: 101``,
  ``label_space: ucf101``; the preprocessing stays that of ``transforms_from``.
- :class:`FrameFidelity`: an image classifier (e.g. the ImageNet MobileNet
  TFLite of ``task=classification``) run on ``segments`` frames of the clip,
  one from the centre of each of ``segments`` equal parts (TSN's test-time
  sampling), its class probabilities averaged over those frames. No dataset
  has labels of its kind, so it is always the fidelity protocol: top-1 / top-5
  agreement with the same network on the uncompressed clip. It is a
  frame-level ImageNet classifier's fidelity, not action recognition accuracy.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.tasks.base import Task
from bench.tasks.classification import ClassificationTask, class_prediction, evaluate_topk
from bench.tasks.runtimes.torchvision import TorchvisionNetwork, torchvision_weights

ACTION = "action"
FRAME_CLASSIFICATION = "frame-classification"


def _as_clip(x: np.ndarray, task: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"task {task}: expects video clips (T x H x W x 3), got an input of shape {arr.shape}")
    return arr


def centre_window(frames: int, length: int) -> list[int]:
    """``length`` consecutive frame indices centred in ``frames``; the last frame repeated when too few."""
    first = max(0, (frames - length) // 2)
    picked = list(range(first, min(frames, first + length)))
    return picked + [picked[-1]] * (length - len(picked))


def segment_centres(frames: int, segments: int) -> list[int]:
    """The centre frame of each of ``segments`` equal parts of ``frames`` (TSN test-time sampling)."""
    return [min(frames - 1, int((k + 0.5) * frames / segments)) for k in range(segments)]


class VideoClassifier(TorchvisionNetwork, ClassificationTask):
    """A torchvision video classifier (see the module docstring); ``kind`` is ``action``."""

    kind = ACTION
    uses_torch = True

    def __init__(
        self,
        name: str,
        model: str = "r3d_18",
        weights: str | None = "DEFAULT",
        checkpoint: str | os.PathLike | None = None,
        num_classes: int | None = None,
        label_space: str = "kinetics400",
        transforms_from: str = "DEFAULT",
        clip_len: int = 16,
        device: str = "auto",
        batch_size: int = 4,
        **options: Any,
    ):
        self.arch = model
        self.weights = torchvision_weights(model, weights)
        if num_classes is None:
            num_classes = len(self.weights.meta["categories"]) if self.weights is not None else 400
        super().__init__(name, num_classes, batch_size=batch_size, **options)
        if int(clip_len) < 1:
            raise ValueError(f"task {name!r}: clip_len must be at least 1")
        self.checkpoint = checkpoint
        self.label_space = label_space
        self.clip_len = int(clip_len)
        self.preset = (self.weights or torchvision_weights(model, transforms_from)).transforms()
        self.device_name = device
        self._network = None

    def logits(self, clips: Any) -> Any:
        """N x T x 3 x H x W uint8 (or float in [0, 1]) -> N x classes logits, via the weights' preprocessing."""
        return self.network(self.preset(clips))

    def predict(self, images: Sequence[np.ndarray]) -> list[Any]:
        import torch

        batch = []
        for clip in images:
            clip = _as_clip(clip, self.name)
            window = clip[centre_window(len(clip), self.clip_len)]
            batch.append(torch.from_numpy(np.ascontiguousarray(window)).permute(0, 3, 1, 2))  # T x C x H x W
        with torch.no_grad():
            probs = self.logits(torch.stack(batch).to(self.device)).softmax(1).cpu().numpy()
        return [class_prediction(p) for p in probs]

    def describe(self) -> str:
        base = super().describe()
        if self.label_space == "kinetics400":
            return f"{base}; Kinetics-400 classes: on UCF101 the fidelity protocol only"
        return f"{base}; {self.num_classes} {self.label_space} classes"


class FrameFidelity(Task):
    """Fidelity of a frame-level image classifier on clips (see the module docstring)."""

    kind = FRAME_CLASSIFICATION
    metrics = ("top1", "top5")

    def __init__(self, name: str, classifier: Task, segments: int = 8, batch_size: int = 4, **options: Any):
        super().__init__(name, batch_size=batch_size, **options)
        if int(segments) < 1:
            raise ValueError(f"task {name!r}: segments must be at least 1")
        if not (hasattr(classifier, "scores") or hasattr(classifier, "logits")):
            raise ValueError(f"task {name!r}: {type(classifier).__name__} gives no class scores of a frame")
        self.classifier = classifier
        self.segments = int(segments)
        self.uses_torch = bool(getattr(classifier, "uses_torch", False))

    def frame_scores(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities of each frame (frames x classes)."""
        if hasattr(self.classifier, "scores"):  # TFLite classifiers
            return np.stack([self.classifier.scores(f) for f in frames])
        import torch

        out = []
        with torch.no_grad():
            for f in frames:
                x = torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1)[None].to(self.classifier.device)
                out.append(self.classifier.logits(x.float() / 255.0).softmax(1)[0].cpu().numpy())
        return np.stack(out)

    def predict(self, images: Sequence[np.ndarray]) -> list[Any]:
        preds = []
        for clip in images:
            clip = _as_clip(clip, self.name)
            frames = [clip[i] for i in segment_centres(len(clip), self.segments)]
            preds.append(class_prediction(self.frame_scores(frames).mean(axis=0)))
        return preds

    def evaluate(self, predictions: Any, references: Any) -> dict[str, float]:
        return evaluate_topk(predictions, references, getattr(self.classifier, "num_classes", None))

    def reference_from_prediction(self, prediction: Any) -> Any:
        return int(prediction["top5"][0])

    def unavailable_reason(self) -> str | None:
        return self.classifier.unavailable_reason()

    def describe(self) -> str:
        return (
            f"{self.name}: fidelity of a frame-level ImageNet classifier ({self.classifier.describe()}) on "
            f"{self.segments} frames per clip, probabilities averaged; agreement with its prediction on the "
            "uncompressed clip, not action recognition accuracy"
        )

    def versions(self) -> dict[str, str]:
        return self.classifier.versions()

    def weight_files(self) -> dict[str, Path]:
        return self.classifier.weight_files()
