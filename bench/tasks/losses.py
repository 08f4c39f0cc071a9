"""Differentiable losses through frozen task networks, for training methods against a machine task.

A learned human-machine method is trained with the task's own loss on what it
decodes, ``D(f_φ(x̂), G)``, the task network ``f_φ`` frozen. ``G`` here is
the frozen network's own output on the uncompressed crop (its top-1 class,
its per-pixel labels, its detections above a score threshold): it needs no
labels, so any folder of images trains a method, and it is exactly the
reference of the harness's fidelity protocol. (Papers that train on labelled
data use the dataset's ground truth instead; the loss is the same.)

Each loss has two steps: ``targets(x)`` on the uncompressed batch (no
gradient), then ``loss(x_hat, targets)`` — a scalar, differentiable w.r.t.
``x_hat``. Inputs are ``B x 3 x H x W`` floats in [0, 1].
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from bench.tasks.base import Task


class TaskLoss(abc.ABC):
    """The loss of one task network on decoded images, against its output on the originals."""

    def __init__(self, task: Task):
        self.task = task

    @property
    @abc.abstractmethod
    def network(self) -> torch.nn.Module:
        """The frozen network (so the training loop can verify it is frozen)."""

    @abc.abstractmethod
    def targets(self, x: torch.Tensor) -> Any:
        """What the network predicts on the uncompressed batch (the reference ``G``)."""

    @abc.abstractmethod
    def loss(self, x_hat: torch.Tensor, targets: Any) -> torch.Tensor:
        """Scalar task loss of the decoded batch against ``targets``."""


class ClassificationLoss(TaskLoss):
    """Cross-entropy of the logits on ``x_hat`` against the top-1 class on ``x``."""

    @property
    def network(self) -> torch.nn.Module:
        return self.task.network

    def targets(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        with torch.no_grad():
            return self.task.logits(x).argmax(1)

    def loss(self, x_hat: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        return F.cross_entropy(self.task.logits(x_hat), targets)


class SegmentationLoss(ClassificationLoss):
    """Per-pixel cross-entropy against the label map predicted on ``x``."""


class ESPNetLoss(SegmentationLoss):
    """ESPNet reads pixels in [0, 255] and predicts at its own input size: the loss is taken there."""

    def targets(self, x: torch.Tensor) -> torch.Tensor:
        return super().targets(x * 255.0)

    def loss(self, x_hat: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return super().loss(x_hat * 255.0, targets)


@contextmanager
def _train_mode_with_frozen_norms(net: torch.nn.Module) -> Iterator[None]:
    """torchvision detectors return their losses only in train mode; keep BatchNorm statistics untouched."""
    import torch

    was = net.training
    net.train()
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
    try:
        yield
    finally:
        net.train(was)


class DetectionLoss(TaskLoss):
    """The sum of a torchvision detector's training losses, its detections on ``x`` as the boxes.

    Detections scoring at least ``score_threshold`` are the targets (Mask
    R-CNN: with their masks above 0.5); an image with none is a negative image.
    """

    def __init__(self, task: Task, score_threshold: float = 0.5):
        super().__init__(task)
        self.score_threshold = float(score_threshold)

    @property
    def network(self) -> torch.nn.Module:
        return self.task.network

    def targets(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        import torch

        net = self.network
        was = net.training
        net.eval()
        try:
            with torch.no_grad():
                outputs = net(list(x))
        finally:
            net.train(was)
        targets = []
        for out in outputs:
            keep = out["scores"] >= self.score_threshold
            t = {"boxes": out["boxes"][keep], "labels": out["labels"][keep]}
            if "masks" in out:
                t["masks"] = (out["masks"][keep, 0] > 0.5).to(torch.uint8)
            targets.append(t)
        return targets

    def loss(self, x_hat: torch.Tensor, targets: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        net = self.network
        with _train_mode_with_frozen_norms(net):
            losses = net(list(x_hat), targets)
        return sum(losses.values())


def loss_for(task: Task, **options: Any) -> TaskLoss:
    """The differentiable loss of ``task``'s network; a clear error for a network that has none here."""
    from bench.tasks.classification import TorchvisionClassifier
    from bench.tasks.detection import TorchvisionDetector
    from bench.tasks.segmentation import ESPNetSegmenter, TorchvisionSegmenter

    if isinstance(task, TorchvisionDetector):
        return DetectionLoss(task, **options)
    if isinstance(task, TorchvisionSegmenter):
        return SegmentationLoss(task)
    if isinstance(task, ESPNetSegmenter):
        return ESPNetLoss(task)
    if isinstance(task, TorchvisionClassifier):
        return ClassificationLoss(task)
    raise TypeError(
        f"task {task.name!r} ({type(task).__name__}) has no differentiable network to train against; "
        "use a torchvision task (TorchvisionClassifier, TorchvisionSegmenter, TorchvisionDetector) or ESPNet"
    )
