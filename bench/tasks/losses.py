"""Differentiable losses through frozen task networks, for training methods against a machine task.

A learned human-machine method is trained with the task's own loss on what it
decodes, ``D(f_φ(x̂), G)``, the task network ``f_φ`` frozen. ``G`` here is
the frozen network's own output on the uncompressed crop (its top-1 class,
its per-pixel labels, its detections above a score threshold, the raw head
of a one-stage ONNX detector): it needs no labels, so any folder of images
trains a method, and it is exactly the reference of the harness's fidelity
protocol. (Papers that train on labelled data use the dataset's ground truth
instead; the loss is the same.)

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


def _bernoulli_kl(p: torch.Tensor, q: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """KL(Bern(p) || Bern(q)) element-wise, for probabilities (sigmoid outputs): zero where q = p."""
    p, q = p.clamp(eps, 1 - eps), q.clamp(eps, 1 - eps)
    return p * (p.log() - q.log()) + (1 - p) * ((1 - p).log() - (1 - q).log())


class RawHeadDistillationLoss(TaskLoss):
    """A one-stage ONNX detector (YOLOX, NanoDet) made torch: its raw head on ``x_hat`` against its head on ``x``.

    Dense distillation, no decoding nor NMS (so every anchor gives a gradient):
    scores by the Bernoulli KL of the sigmoid outputs (YOLOX objectness on all
    anchors, classes weighted by the reference objectness; NanoDet classes on
    all anchors), boxes weighted by the reference confidence (YOLOX: L1 of
    ``tx, ty, tw, th``; NanoDet: KL of each side's bin distribution, as
    localisation distillation). Sums are divided by the reference's total
    confidence (at least 1), as YOLOX divides by its foreground count. Exactly
    zero when ``x_hat`` gives the reference outputs.
    """

    def __init__(self, task: Task, box_weight: float = 1.0, score_weight: float = 1.0):
        super().__init__(task)
        self.box_weight = float(box_weight)
        self.score_weight = float(score_weight)

    @property
    def network(self) -> torch.nn.Module:
        return self.task.torch_network()

    def targets(self, x: torch.Tensor) -> list[torch.Tensor]:
        import torch

        with torch.no_grad():
            return self.task.torch_outputs(x)[0]

    def terms(self, x_hat: torch.Tensor, targets: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """The score and box terms (each already normalised)."""
        return raw_head_terms(self.task, self.task.torch_outputs(x_hat)[0], targets)

    def loss(self, x_hat: torch.Tensor, targets: list[torch.Tensor]) -> torch.Tensor:
        t = self.terms(x_hat, targets)
        return self.score_weight * t["scores"] + self.box_weight * t["boxes"]


def raw_head_terms(task: Task, outputs: list[torch.Tensor], targets: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """:class:`RawHeadDistillationLoss`'s normalised score and box terms of raw head ``outputs`` against ``targets``.

    Both are ``task``'s (an ONNX detector's) raw outputs as its torch network
    gives them; a split network's back half gives the same, so heads trained on
    features distil with the same terms.
    """
    if task.decoder == "yolox":
        out, ref = outputs[0], targets[0]
        weight = ref[..., 4]
        norm = weight.sum().clamp(min=1.0)
        scores = _bernoulli_kl(ref[..., 4], out[..., 4]).sum()
        scores = scores + (weight * _bernoulli_kl(ref[..., 5:], out[..., 5:]).sum(-1)).sum()
        boxes = (weight * (out[..., :4] - ref[..., :4]).abs().sum(-1)).sum()
        return {"scores": scores / norm, "boxes": boxes / norm}
    from bench.tasks.networks.detectors import nanodet_output_roles

    bins = task.reg_max + 1
    cls, reg = nanodet_output_roles([t.shape[1:] for t in targets], task.input_hw, task.strides, bins)
    ref_cls = _cat_anchors([targets[i] for i in cls])
    weight = ref_cls.max(-1).values
    norm = weight.sum().clamp(min=1.0)
    scores = _bernoulli_kl(ref_cls, _cat_anchors([outputs[i] for i in cls])).sum()
    ref_log = _cat_anchors([targets[i] for i in reg]).unflatten(-1, (4, bins)).log_softmax(-1)
    out_log = _cat_anchors([outputs[i] for i in reg]).unflatten(-1, (4, bins)).log_softmax(-1)
    boxes = (weight * (ref_log.exp() * (ref_log - out_log)).sum((-1, -2))).sum()
    return {"scores": scores / norm, "boxes": boxes / norm}


def _cat_anchors(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Per-stride ``[B, N_s, C]`` outputs as one ``[B, N, C]``."""
    import torch

    return torch.cat(tensors, dim=1)


def loss_for(task: Task, **options: Any) -> TaskLoss:
    """The differentiable loss of ``task``'s network; a clear error for a network that has none here."""
    from bench.tasks.classification import TorchvisionClassifier
    from bench.tasks.detection import OnnxDetector, TorchvisionDetector
    from bench.tasks.segmentation import ESPNetSegmenter, TorchvisionSegmenter

    if isinstance(task, TorchvisionDetector):
        return DetectionLoss(task, **options)
    if isinstance(task, OnnxDetector):
        return RawHeadDistillationLoss(task, **options)
    if isinstance(task, TorchvisionSegmenter):
        return SegmentationLoss(task)
    if isinstance(task, ESPNetSegmenter):
        return ESPNetLoss(task)
    if isinstance(task, TorchvisionClassifier):
        return ClassificationLoss(task)
    raise TypeError(
        f"task {task.name!r} ({type(task).__name__}) has no differentiable network to train against; "
        "use a torchvision task (TorchvisionClassifier, TorchvisionSegmenter, TorchvisionDetector), ESPNet or an "
        "ONNX detector (OnnxDetector)"
    )
