"""A task network cut in two: pixels -> features -> prediction.

Methods that code a task network's features (feature streams, latent-space
transforms, heads on a codec's latent) need the network in two halves: the
*front* turns pixels into the features at the cut, the *back* finishes the
task from features. Both halves are the task's own frozen modules (or a
trainable copy of the back, for heads), so a prediction made from features is
in exactly the format the task's evaluator reads: ``class_prediction`` for
classifiers, ``label_prediction`` for segmenters, the detector's own decoded
boxes after NMS in image pixels for ONNX detectors.

Supported networks and cuts (``split``):

- torchvision classifiers with ResNet-style stages (``layer1`` .. ``layer4``)
  or a ``features`` sequence (MobileNet, EfficientNet, VGG, ...), cut after
  any of those modules; DeepLabV3 / FCN segmenters, cut after a backbone
  module (``backbone.layer2``). They run at the image's own geometry
  (ImageNet normalisation, no resize), as Choi & Bajić and Torfason et al.
  run their task networks at the coded image's resolution.
- ONNX detectors (:class:`bench.tasks.detection.OnnxDetector`, e.g.
  YOLOX-Nano) through onnx2torch, cut at a tensor that alone carries
  everything the rest of the graph needs (:func:`bench.tasks.runtimes.onnx_torch.single_tensor_cuts`):
  ``stride<N>`` is the last such tensor at stride N, or give the tensor's
  name. YOLOX-Nano's ``stride8`` is the output of CSPDarknet's dark3 stage
  (64 x 52 x 52 on its 416 x 416 input): dark4, dark5 and the PAFPN read only
  it (the neck reads dark3's output too, which is why no cut exists deeper in
  the backbone).
- ESPNet (:class:`bench.tasks.segmentation.ESPNetSegmenter`). Its encoder
  concatenates downsampled copies of the input image (``inp1`` at stride 2,
  ``inp2`` at stride 4) and its decoder reads the stride-2 output of the
  first layer at the very end, so every cut deeper than the first layer must
  carry stride-2 features. Cuts: ``level1`` (the stride-2 concatenation of
  the first layer's output and ``inp1``, 19 channels: the back recomputes
  ``inp2`` from ``inp1``, exactly as the network pools it, so the back needs
  nothing else), ``level2`` (the stride-4 level-2 output with ``inp2`` inside
  it, plus the first layer's output) and ``level3`` (the encoder's stride-8
  output, plus the decoder's 1x1 projection of the level-2 output, 20
  channels at stride 4, plus the first layer's output). The tensors of a cut
  travel as one: finer ones are space-to-depth packed (``pixel_unshuffle``)
  to the coarsest stride and concatenated along channels (``level3``: 256 +
  20·4 + 16·16 = 592 channels at stride 8).

The detectors and ESPNet read the image through the task's own preprocessing
(YOLOX: letterbox into 416 x 416, BGR, 0..255; ESPNet: its normalisation and
resize to ``input_size``), so their features live on the grid of the
network's input, not of the image. :meth:`SplitTaskNetwork.resample` maps
features made at the image's own geometry (a codec latent's transform) onto
that grid as the preprocessing maps pixels.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.tasks.base import Task

if TYPE_CHECKING:
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: ESPNet's cuts, shallow to deep (see the module docstring)
ESPNET_CUTS = ("level1", "level2", "level3")


class SplitError(ValueError):
    """The task network cannot be split as configured; the message says why and what is possible."""


@dataclass(frozen=True)
class Placement:
    """Where an image lands in the network's input: the input size and the rectangle the resized image fills.

    ``identity``: the network reads the image at its own size, unresized.
    """

    input_hw: tuple[int, int]
    top: int
    left: int
    height: int
    width: int
    identity: bool = False


def pack(tensors: Sequence[tuple[torch.Tensor, int]], stride: int) -> torch.Tensor:
    """Tensors at strides dividing ``stride`` as one tensor at ``stride`` (space-to-depth, then concatenated)."""
    import torch
    import torch.nn.functional as F

    return torch.cat([t if s == stride else F.pixel_unshuffle(t, stride // s) for t, s in tensors], 1)


def unpack(packed: torch.Tensor, layout: Sequence[tuple[int, int]], stride: int) -> list[torch.Tensor]:
    """Inverse of :func:`pack` for tensors of ``(channels, stride)`` in ``layout``."""
    import torch.nn.functional as F

    out, start = [], 0
    for channels, s in layout:
        n = channels * (stride // s) ** 2
        part = packed[:, start : start + n]
        out.append(part if s == stride else F.pixel_shuffle(part, stride // s))
        start += n
    if start != packed.shape[1]:
        raise SplitError(f"features have {packed.shape[1]} channels, the cut's layout {list(layout)} needs {start}")
    return out


# --- torchvision ----------------------------------------------------------------------------------


def torchvision_stages(net: Any, kind: str) -> tuple[list[tuple[str, Any]], str]:
    """A torchvision network's trunk as (name, module) in execution order, and the kind of back it has."""
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


def _torch_modules() -> Any:
    """The halves' module classes, built on first use so that importing this module needs no torch."""
    global _MODULES
    if _MODULES is not None:
        return _MODULES
    import torch
    import torch.nn.functional as F
    from torch import nn

    class TorchvisionFront(nn.Module):
        """The stages of a torchvision network up to the cut."""

        def __init__(self, stages: Sequence[tuple[str, nn.Module]]):
            super().__init__()
            self.stages = nn.ModuleList([m for _, m in stages])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for module in self.stages:
                x = module(x)
            return x

    class TorchvisionBack(nn.Module):
        """The stages after the cut and the head: classifier logits, or segmenter logits at the image size."""

        def __init__(self, net: nn.Module, rest: Sequence[str], back_kind: str):
            super().__init__()
            self.net = net
            self.rest = list(rest)
            self.back_kind = back_kind

        def forward(self, features: torch.Tensor, image_hw: Sequence[int]) -> torch.Tensor:
            net, f = self.net, features
            if self.back_kind == "segmenter":
                out_layer = next(k for k, v in net.backbone.return_layers.items() if v == "out")
                for name in self.rest:
                    f = net.get_submodule(name)(f)
                    if name == f"backbone.{out_layer}":
                        break
                logits = net.classifier(f)
                return F.interpolate(logits, size=tuple(image_hw), mode="bilinear", align_corners=False)
            for name in self.rest:
                f = net.get_submodule(name)(f)
            if self.back_kind == "resnet":
                return net.fc(torch.flatten(net.avgpool(f), 1))
            pool = getattr(net, "avgpool", None)
            f = pool(f) if pool is not None else F.adaptive_avg_pool2d(f, 1)
            return net.classifier(torch.flatten(f, 1))

    class OnnxFront(nn.Module):
        """The front graph of an ONNX cut; its one output."""

        def __init__(self, graph: nn.Module):
            super().__init__()
            self.graph = graph

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.graph(x)[0]

    class OnnxBack(nn.Module):
        """The back graph of an ONNX cut: every raw output of the network (the image size is not needed)."""

        def __init__(self, graph: nn.Module):
            super().__init__()
            self.graph = graph

        def forward(self, features: torch.Tensor, image_hw: Sequence[int] | None = None) -> list[torch.Tensor]:
            return self.graph(features)

    class ESPNetFront(nn.Module):
        """ESPNet from its input to a cut (:data:`ESPNET_CUTS`), the cut's tensors packed."""

        def __init__(self, net: nn.Module, cut: str):
            super().__init__()
            self.encoder = net.encoder
            self.level3_C = net.level3_C
            self.cut = cut

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            e = self.encoder
            out0 = e.level1(x)
            inp1 = e.sample1(x)
            if self.cut == "level1":
                return torch.cat([out0, inp1], 1)
            out0_cat = e.b1(torch.cat([out0, inp1], 1))
            out1_0 = e.level2_0(out0_cat)
            out1 = out1_0
            for layer in e.level2:
                out1 = layer(out1)
            out1_cat = e.b2(torch.cat([out1, out1_0, e.sample2(x)], 1))
            if self.cut == "level2":
                return pack([(out1_cat, 4), (out0, 2)], 4)
            out2_0 = e.level3_0(out1_cat)
            out2 = out2_0
            for layer in e.level3:
                out2 = layer(out2)
            out2_cat = e.b3(torch.cat([out2_0, out2], 1))
            return pack([(out2_cat, 8), (self.level3_C(out1_cat), 4), (out0, 2)], 8)

    class ESPNetBack(nn.Module):
        """ESPNet from a cut to its logits at the input size; holds only the modules after the cut."""

        def __init__(self, net: nn.Module, cut: str, layout: Sequence[tuple[int, int]], stride: int):
            super().__init__()
            self.cut, self.layout, self.stride = cut, list(layout), stride
            e = net.encoder
            if cut == "level1":
                self.b1, self.level2_0, self.level2 = e.b1, e.level2_0, e.level2
                self.pool2 = e.sample2.pool[-1]  # inp2 = this pool of inp1, as sample2 pools the input twice
                self.b2 = e.b2
            if cut in ("level1", "level2"):
                self.level3_0, self.level3, self.b3 = e.level3_0, e.level3, e.b3
                self.level3_C = net.level3_C
            self.encoder_classifier = e.classifier
            for name in ("br", "up_l3", "combine_l2_l3", "up_l2", "conv", "classifier"):
                setattr(self, name, getattr(net, name))

        def forward(self, features: torch.Tensor, image_hw: Sequence[int] | None = None) -> torch.Tensor:
            if self.cut == "level1":
                out0, inp1 = features[:, :16], features[:, 16:]
                out1_0 = self.level2_0(self.b1(features))
                out1 = out1_0
                for layer in self.level2:
                    out1 = layer(out1)
                out1_cat = self.b2(torch.cat([out1, out1_0, self.pool2(inp1)], 1))
            elif self.cut == "level2":
                out1_cat, out0 = unpack(features, self.layout, self.stride)
            if self.cut == "level3":
                out2_cat, out1_c, out0 = unpack(features, self.layout, self.stride)
            else:
                out2_0 = self.level3_0(out1_cat)
                out2 = out2_0
                for layer in self.level3:
                    out2 = layer(out2)
                out2_cat = self.b3(torch.cat([out2_0, out2], 1))
                out1_c = self.level3_C(out1_cat)
            out2_c = self.up_l3(self.br(self.encoder_classifier(out2_cat)))
            comb = self.up_l2(self.combine_l2_l3(torch.cat([out1_c, out2_c], 1)))
            return self.classifier(self.conv(torch.cat([comb, out0], 1)))

    _MODULES = {
        "TorchvisionFront": TorchvisionFront,
        "TorchvisionBack": TorchvisionBack,
        "OnnxFront": OnnxFront,
        "OnnxBack": OnnxBack,
        "ESPNetFront": ESPNetFront,
        "ESPNetBack": ESPNetBack,
    }
    return _MODULES


_MODULES: dict[str, type] | None = None


def _frozen(module: Any) -> Any:
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


def _trainable_copy(module: Any) -> Any:
    out = copy.deepcopy(module)
    for p in out.parameters():
        p.requires_grad_(True)
    return out.train()


# --- the halves per kind of network ----------------------------------------------------------------


class _Halves:
    """What a kind of network provides: preprocessing, the two halves, predictions."""

    network: Any
    stride: int
    channels: int | None = None

    def net_input(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def net_input_image(self, image: np.ndarray) -> torch.Tensor:
        raise NotImplementedError

    def placement(self, image_hw: Sequence[int]) -> Placement:
        h, w = int(image_hw[0]), int(image_hw[1])
        return Placement((h, w), 0, 0, h, w, identity=True)

    def predictions(self, raw: Any, image_hw: Sequence[int]) -> list[Any]:
        raise NotImplementedError

    def distillation(self, student: Any, teacher: Any, temperature: float) -> torch.Tensor:
        from bench.methods.learned.losses import distillation

        return distillation(student, teacher, temperature)


class _TorchvisionHalves(_Halves):
    def __init__(self, task: Task, split: str):
        if task.kind not in ("classification", "segmentation"):
            raise SplitError(f"task {task.name!r} is {task.kind}; only classification and segmentation split")
        self.task = task
        net = _frozen(task.network)
        stages, back_kind = torchvision_stages(net, task.kind)
        names = [n for n, _ in stages]
        if split not in names:
            raise SplitError(f"task {task.name!r}: no module {split!r} to split after; choose from {names}")
        cut = names.index(split) + 1
        modules = _torch_modules()
        self.network = net
        self.front_names = names[:cut]
        self.front = modules["TorchvisionFront"](stages[:cut])
        self.back = modules["TorchvisionBack"](net, names[cut:], back_kind)
        self._probe: tuple[int, int] | None = None

    def net_input(self, x: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms.functional import normalize

        return normalize(x, mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))

    def net_input_image(self, image: np.ndarray) -> torch.Tensor:
        import torch

        return self.net_input(torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)[None].float() / 255)

    def shape(self, device: Any) -> tuple[int, int]:
        """(channels, stride) of the features at the cut, from one small forward pass."""
        if self._probe is None:
            import torch

            size = 256
            with torch.no_grad():
                f = self.front(self.net_input(torch.zeros(1, 3, size, size, device=device)))
            self._probe = (int(f.shape[1]), size // int(f.shape[-1]))
        return self._probe

    def trainable_back(self) -> Any:
        """A trainable copy of the network whose front stages are dropped (identities), run as the back."""
        from torch import nn

        net = copy.deepcopy(self.network)
        for name in self.front_names:  # the front is not part of a head: drop its weights
            parent, _, child = name.rpartition(".")
            setattr(net.get_submodule(parent) if parent else net, child, nn.Identity())
        return _trainable_copy(_torch_modules()["TorchvisionBack"](net, self.back.rest, self.back.back_kind))

    def predictions(self, raw: Any, image_hw: Sequence[int]) -> list[Any]:
        if self.task.kind == "classification":
            from bench.tasks.classification import class_prediction

            probs = raw.float().softmax(1).detach().cpu().numpy()
            return [class_prediction(p) for p in probs]
        import torch

        from bench.tasks.masks import label_prediction

        labels = raw.argmax(1).to(torch.uint8)
        return [label_prediction(np.asarray(m)) for m in labels.cpu().numpy()]


class _OnnxHalves(_Halves):
    def __init__(self, task: Any, split: str):
        from torch import nn

        from bench.tasks.runtimes.onnx_torch import OnnxConversionError, load_onnx_split

        self.task = task
        try:
            front, back, cut = load_onnx_split(task.model, split)
        except (FileNotFoundError, OnnxConversionError) as exc:
            raise SplitError(f"task {task.name!r}: {exc}") from exc
        if cut.stride is None or len(cut.shape) != 4:
            raise SplitError(f"task {task.name!r}: cut {cut.describe()} is not a feature map of whole stride")
        modules = _torch_modules()
        self.cut = cut
        self.stride = int(cut.stride)
        self.channels = int(cut.shape[1])
        self.front = modules["OnnxFront"](front)
        self.back = modules["OnnxBack"](back)
        self.network = nn.ModuleDict({"front": front, "back": back})

    def net_input(self, x: torch.Tensor) -> torch.Tensor:
        return self.task.torch_preprocess(x)[0]

    def net_input_image(self, image: np.ndarray) -> torch.Tensor:
        import torch

        return torch.from_numpy(self.task.preprocess(image)[0])[None]

    def placement(self, image_hw: Sequence[int]) -> Placement:
        (top, left, height, width), _ = self.task.placement(int(image_hw[0]), int(image_hw[1]))
        return Placement(tuple(self.task.input_hw), top, left, height, width)

    def trainable_back(self) -> Any:
        return _trainable_copy(self.back)

    def predictions(self, raw: Any, image_hw: Sequence[int]) -> list[Any]:
        hw = (int(image_hw[0]), int(image_hw[1]))
        return [
            self.task.prediction_from_outputs([r[i].detach().float().cpu().numpy() for r in raw], hw)
            for i in range(raw[0].shape[0])
        ]

    def distillation(self, student: Any, teacher: Any, temperature: float) -> torch.Tensor:
        """The raw-head distillation of :mod:`bench.tasks.losses` (scores + boxes; no temperature)."""
        from bench.tasks.losses import raw_head_terms

        terms = raw_head_terms(self.task, student, [t.detach() for t in teacher])
        return terms["scores"] + terms["boxes"]


class _ESPNetHalves(_Halves):
    def __init__(self, task: Any, split: str):
        if split not in ESPNET_CUTS:
            raise SplitError(f"task {task.name!r} (ESPNet): no cut {split!r}; cuts: {list(ESPNET_CUTS)}")
        h, w = task.input_size
        if h % 8 or w % 8:
            raise SplitError(f"task {task.name!r}: ESPNet needs an input_size divisible by 8, got {[h, w]}")
        self.task = task
        net = _frozen(task.network)
        classes = int(net.level3_C.conv.out_channels)
        self.layout = {
            "level1": [(16 + 3, 2)],
            "level2": [(128 + 3, 4), (16, 2)],
            "level3": [(256, 8), (classes, 4), (16, 2)],
        }[split]
        self.stride = max(s for _, s in self.layout)
        self.channels = sum(c * (self.stride // s) ** 2 for c, s in self.layout)
        modules = _torch_modules()
        self.network = net
        self.front = modules["ESPNetFront"](net, split)
        self.back = modules["ESPNetBack"](net, split, self.layout, self.stride)

    def net_input(self, x: torch.Tensor) -> torch.Tensor:
        return self.task.network_input(x * 255.0)

    def net_input_image(self, image: np.ndarray) -> torch.Tensor:
        import torch

        return self.task.network_input(torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)[None].float())

    def placement(self, image_hw: Sequence[int]) -> Placement:
        h, w = self.task.input_size
        return Placement((h, w), 0, 0, h, w)

    def trainable_back(self) -> Any:
        return _trainable_copy(self.back)

    def predictions(self, raw: Any, image_hw: Sequence[int]) -> list[Any]:
        return [self.task.prediction_from_logits(raw[i].detach(), image_hw) for i in range(raw.shape[0])]


def default_split(task: Task) -> str:
    """The cut a method uses when it names none: YOLOX/ONNX detectors ``stride8``, ESPNet ``level3``."""
    from bench.tasks.detection import OnnxDetector
    from bench.tasks.segmentation import ESPNetSegmenter

    if isinstance(task, OnnxDetector):
        return "stride8"
    if isinstance(task, ESPNetSegmenter):
        return "level3"
    raise SplitError(
        f"task {task.name!r} ({type(task).__name__}) has no default cut: name the module to cut after "
        "(method.split=layer2 for a ResNet, features.<i> for MobileNet, backbone.<m> for DeepLabV3)"
    )


class SplitTaskNetwork:
    """The ``task``'s network as front (image -> features at ``split``) and back (features -> raw outputs).

    ``task``: a torchvision classifier or segmenter (a ``network`` attribute),
    an :class:`~bench.tasks.detection.OnnxDetector` or an
    :class:`~bench.tasks.segmentation.ESPNetSegmenter`; its weights are frozen
    here. ``split``: the cut (see the module docstring; None = :func:`default_split`).
    ``back``: a module made by :meth:`trainable_back` (a head's own copy) that
    runs instead of the frozen back half.
    """

    def __init__(self, task: Task, split: str | None = None, back: torch.nn.Module | None = None):
        self.task = task
        #: the cut (None until the halves are built: then the network's default)
        self.split = split
        self._own_back = back
        self._halves: _Halves | None = None

    @property
    def halves(self) -> _Halves:
        """The network's halves, built on first use (loads or converts the network)."""
        return self.build()

    def unavailable_reason(self) -> str | None:
        """Why the network cannot be cut as configured, or None (builds the halves)."""
        from bench.tasks.base import TaskUnavailable

        try:
            self.build()
        except (SplitError, TaskUnavailable) as exc:
            return str(exc)
        return None

    def build(self) -> _Halves:
        """Build the halves for the task's kind of network (once)."""
        if self._halves is None:
            from bench.tasks.detection import OnnxDetector
            from bench.tasks.segmentation import ESPNetSegmenter

            if self.split is None:
                self.split = default_split(self.task)
            if isinstance(self.task, OnnxDetector):
                self._halves = _OnnxHalves(self.task, self.split)
            elif isinstance(self.task, ESPNetSegmenter):
                self._halves = _ESPNetHalves(self.task, self.split)
            elif hasattr(self.task, "network"):
                self._halves = _TorchvisionHalves(self.task, self.split)
            else:
                raise SplitError(
                    f"task {self.task.name!r} ({type(self.task).__name__}) has no network to split: torchvision "
                    "classifiers and segmenters, ONNX detectors (OnnxDetector) and ESPNet split"
                )
        return self._halves

    # --- structure -----------------------------------------------------------------
    @property
    def network(self) -> torch.nn.Module:
        """Every frozen module the halves run (eval mode): to verify it stays unchanged and to move it."""
        return self.halves.network

    @property
    def channels(self) -> int:
        """Channels of the features at the cut (packed, for a cut of several tensors)."""
        halves = self.halves
        if isinstance(halves, _TorchvisionHalves):
            return halves.shape(self.device)[0]
        return int(halves.channels)

    @property
    def stride(self) -> int:
        """How many pixels of the network's input one feature covers along each side."""
        halves = self.halves
        if isinstance(halves, _TorchvisionHalves):
            return halves.shape(self.device)[1]
        return int(halves.stride)

    @property
    def device(self) -> Any:
        return next(self.network.parameters()).device

    def placement(self, image_hw: Sequence[int]) -> Placement:
        """Where an image of this size lands in the network's input (the task's own preprocessing)."""
        return self.halves.placement(image_hw)

    # --- the two halves --------------------------------------------------------------
    def front(self, x: torch.Tensor) -> torch.Tensor:
        """``N x 3 x H x W`` RGB in [0, 1] -> features at the cut (differentiable in ``x``).

        The task's preprocessing in torch ops (the ONNX detectors resize floats
        where their own preprocessing resizes 8-bit pixels; see
        :meth:`front_image`).
        """
        return self.halves.front(self.halves.net_input(x))

    def front_image(self, image: np.ndarray) -> torch.Tensor:
        """An ``H x W x 3`` uint8 image -> its features, through exactly the task's own preprocessing."""
        return self.halves.front(self.halves.net_input_image(image).to(self.device))

    def back(self, features: torch.Tensor, image_hw: Sequence[int]) -> Any:
        """Features at the cut -> the network's raw outputs: logits (torchvision segmenters: at ``image_hw``;
        ESPNet: at its input size) or an ONNX detector's raw head outputs (a list)."""
        module = self._own_back if self._own_back is not None else self.halves.back
        return module(features, tuple(int(v) for v in image_hw))

    def trainable_back(self) -> torch.nn.Module:
        """A trainable copy of the back half (a head's own layers): ``module(features, image_hw)`` -> raw outputs."""
        return self.halves.trainable_back()

    def predictions(self, raw: Any, image_hw: Sequence[int]) -> list[Any]:
        """JSON predictions in the task's own format (what its ``predict`` returns), one per batch item."""
        return self.halves.predictions(raw, image_hw)

    def predict_images(self, images: Sequence[np.ndarray]) -> list[Any]:
        """Predictions of the split network on whole images (front then back), for references and tests."""
        import torch

        out = []
        with torch.no_grad():
            for img in images:
                out.extend(self.predictions(self.back(self.front_image(img), img.shape[:2]), img.shape[:2]))
        return out

    def distillation(self, student: Any, teacher: Any, temperature: float = 1.0) -> torch.Tensor:
        """Distillation of raw outputs: KL of the class distributions (classifiers, segmenters), or the
        raw-head distillation of :mod:`bench.tasks.losses` (ONNX detectors)."""
        return self.halves.distillation(student, teacher, temperature)

    # --- features made elsewhere -------------------------------------------------------
    def grid_hw(self, image_hw: Sequence[int]) -> tuple[int, int]:
        """The feature grid of the network's input for an image of this size."""
        p = self.placement(image_hw)
        return math.ceil(p.input_hw[0] / self.stride), math.ceil(p.input_hw[1] / self.stride)

    def resample(self, features: torch.Tensor, image_hw: Sequence[int], stride: int) -> torch.Tensor:
        """Features over the image at ``stride`` image pixels -> the same on the network input's feature grid.

        As the task's preprocessing resamples pixels (bilinear, half-pixel
        centres; letterbox padding is zero here). The identity for networks
        that read the image at its own size.
        """
        import torch
        import torch.nn.functional as F

        p = self.placement(image_hw)
        if p.identity:
            return features
        h, w = int(image_hw[0]), int(image_hw[1])
        gh, gw = self.grid_hw(image_hw)
        s = self.stride
        opts = {"device": features.device, "dtype": features.dtype}
        # a grid cell's centre in input pixels (+ 0.5), back to image pixels (+ 0.5), then to [-1, 1] of the features
        ys = ((torch.arange(gh, **opts) + 0.5) * s - p.top) * (h / p.height)
        xs = ((torch.arange(gw, **opts) + 0.5) * s - p.left) * (w / p.width)
        gy = 2 * ys / (features.shape[-2] * stride) - 1
        gx = 2 * xs / (features.shape[-1] * stride) - 1
        grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], -1)
        grid = grid[None].expand(features.shape[0], -1, -1, -1)
        return F.grid_sample(features, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
