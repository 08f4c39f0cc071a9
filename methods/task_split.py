"""A torchvision task network cut in two at a named layer: pixels -> features -> prediction.

Methods that code a task network's features (feature streams, latent-space
transforms, heads on a codec's latent) need the network in two halves: the
*front* turns pixels into the features at the split, the *back* finishes the
task from features. Both halves are the task's own frozen modules, so a
prediction made from features is in exactly the format the task's evaluator
reads (``class_prediction`` for classifiers, ``label_prediction`` for
segmenters).

The front works at the image's own geometry: ImageNet normalisation, no
resize or crop. The classifiers' backs pool globally and the segmenters' backs
upsample their logits to the image size, so any feature size works; Choi &
Bajić and Torfason et al. likewise run their task networks at the coded
image's resolution.

Supported: torchvision classifiers with ResNet-style stages (``layer1`` ..
``layer4``) or a ``features`` sequence (MobileNet, EfficientNet, VGG, ...),
split after any of those modules; torchvision DeepLabV3 / FCN segmenters,
split after a backbone module (``backbone.layer2``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.tasks.base import Task

if TYPE_CHECKING:
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SplitError(ValueError):
    """The task network cannot be split as configured; the message says why and what is possible."""


def _named_stages(net: Any, kind: str) -> tuple[list[tuple[str, Any]], str]:
    """The network's trunk as (name, module) in execution order, and the kind of back it has."""
    if kind == "classification":
        if all(hasattr(net, f"layer{i}") for i in range(1, 5)) and hasattr(net, "fc"):
            names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
            return [(n, getattr(net, n)) for n in names], "resnet"
        features = getattr(net, "features", None)
        if features is not None and hasattr(net, "classifier"):
            return [(f"features.{i}", m) for i, m in enumerate(features)], "features"
        raise SplitError(
            f"cannot split classifier {type(net).__name__}: only ResNet-style (layer1..layer4, fc) and "
            "`features` + `classifier` networks (MobileNet, EfficientNet, VGG) are supported"
        )
    if kind == "segmentation":
        backbone = getattr(net, "backbone", None)
        return_layers = getattr(backbone, "return_layers", None)
        if backbone is None or not return_layers or "out" not in return_layers.values():
            raise SplitError(f"cannot split segmenter {type(net).__name__}: expected a DeepLabV3 / FCN network")
        if set(return_layers.values()) - {"out", "aux"}:
            raise SplitError(
                f"cannot split segmenter {type(net).__name__}: its backbone returns {sorted(return_layers.values())} "
                "(LR-ASPP reads two feature levels); only DeepLabV3 / FCN (one 'out' level) are supported"
            )
        return [(f"backbone.{n}", m) for n, m in backbone.named_children()], "segmenter"
    raise SplitError(f"task kind {kind!r} has no split network (classification and segmentation do)")


class SplitTaskNetwork:
    """The ``task``'s network as front (image -> features at ``split``) and back (features -> logits).

    ``task`` is a harness task with a torchvision ``network`` (e.g.
    :class:`bench.tasks.classification.TorchvisionClassifier`); its weights
    are frozen here. ``split`` names the last module of the front. With
    ``network`` (a trainable copy of the task's, e.g. a head's own stages) the
    halves run that module instead and nothing is frozen.
    """

    def __init__(self, task: Task, split: str, network: torch.nn.Module | None = None):
        if not hasattr(task, "network"):
            raise SplitError(f"task {task.name!r} ({type(task).__name__}) has no torchvision network to split")
        if task.kind not in ("classification", "segmentation"):
            raise SplitError(f"task {task.name!r} is {task.kind}; only classification and segmentation split")
        self.task = task
        self.split = split
        self._own_network = network
        self._stages: list[tuple[str, Any]] | None = None
        self._shape: tuple[int, int] | None = None

    # --- structure -----------------------------------------------------------------
    @property
    def network(self) -> torch.nn.Module:
        """The module the halves run: the task's own, frozen and in eval mode, or the one given."""
        if self._own_network is not None:
            return self._own_network
        net = self.task.network
        for p in net.parameters():
            p.requires_grad_(False)
        return net.eval()

    def _trunk(self) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]], str]:
        stages, back_kind = _named_stages(self.network, self.task.kind)
        names = [n for n, _ in stages]
        if self.split not in names:
            raise SplitError(f"task {self.task.name!r}: no module {self.split!r} to split after; choose from {names}")
        cut = names.index(self.split) + 1
        return stages[:cut], stages[cut:], back_kind

    def _probe(self) -> tuple[int, int]:
        """(channels, stride) of the split features, from one small forward pass."""
        if self._shape is None:
            import torch

            size = 256
            with torch.no_grad():
                x = torch.zeros(1, 3, size, size, device=self.device)
                f = self.front(x)
            self._shape = (int(f.shape[1]), size // int(f.shape[-1]))
        return self._shape

    @property
    def channels(self) -> int:
        """Channels of the features at the split."""
        return self._probe()[0]

    @property
    def stride(self) -> int:
        """How many image pixels one feature covers along each side."""
        return self._probe()[1]

    @property
    def device(self) -> Any:
        return next(self.network.parameters()).device

    # --- the two halves --------------------------------------------------------------
    def front(self, x: torch.Tensor) -> torch.Tensor:
        """``N x 3 x H x W`` RGB in [0, 1] -> features at the split (differentiable in ``x``)."""
        from torchvision.transforms.functional import normalize

        front, _, _ = self._trunk()
        f = normalize(x, mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))
        for _, module in front:
            f = module(f)
        return f

    def back(self, features: torch.Tensor, image_hw: Sequence[int]) -> torch.Tensor:
        """Features at the split -> logits (``N x classes``, or ``N x C x H x W`` at ``image_hw``)."""
        import torch
        import torch.nn.functional as F

        _, rest, back_kind = self._trunk()
        net = self.network
        f = features
        if back_kind == "segmenter":
            out_layer = next(k for k, v in net.backbone.return_layers.items() if v == "out")
            for name, module in rest:
                f = module(f)
                if name == f"backbone.{out_layer}":
                    break
            logits = net.classifier(f)
            return F.interpolate(logits, size=tuple(image_hw), mode="bilinear", align_corners=False)
        for _, module in rest:
            f = module(f)
        if back_kind == "resnet":
            return net.fc(torch.flatten(net.avgpool(f), 1))
        pool = getattr(net, "avgpool", None)
        f = pool(f) if pool is not None else F.adaptive_avg_pool2d(f, 1)
        return net.classifier(torch.flatten(f, 1))

    def predictions(self, logits: torch.Tensor) -> list[Any]:
        """JSON predictions in the task's own format, one per batch item."""
        if self.task.kind == "classification":
            from bench.tasks.classification import class_prediction

            probs = logits.float().softmax(1).detach().cpu().numpy()
            return [class_prediction(p) for p in probs]
        import torch

        from bench.tasks.masks import label_prediction

        labels = logits.argmax(1).to(torch.uint8)
        return [label_prediction(np.asarray(m)) for m in labels.cpu().numpy()]

    def predict_images(self, images: Sequence[np.ndarray]) -> list[Any]:
        """Predictions of the split network on whole images (front then back), for references and tests."""
        import torch

        out = []
        with torch.no_grad():
            for img in images:
                x = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)[None].float().div(255)
                x = x.to(self.device)
                out.extend(self.predictions(self.back(self.front(x), img.shape[:2])))
        return out
