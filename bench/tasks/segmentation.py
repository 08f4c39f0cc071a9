"""Semantic segmentation: real networks (TFLite, torchvision, ESPNet) and the mIoU evaluator.

Predictions are label maps at the input image's size, carried as JSON
(``{"label_png": <base64 8-bit PNG>, "height", "width"}``, see
:mod:`bench.tasks.masks`).

The evaluator accumulates one confusion matrix over the whole dataset (the
Cityscapes / PASCAL VOC convention, not a mean of per-image IoUs):

- pixels whose ground truth is the ignore index (255) are left out;
- IoU_c = TP / (TP + FP + FN); a class absent from both the ground truth and
  the predictions (TP + FP + FN = 0) has no IoU and is left out of the mean,
  as in cityscapesScripts; a class predicted but absent from the ground truth
  counts with IoU 0;
- a predicted id outside 0..C-1 (e.g. 255, "no class") is a miss for the
  ground-truth class (FN) and a false positive for no class, as cityscapesScripts
  counts void predictions;
- pixel accuracy = correctly labelled pixels / non-ignored pixels.

Under the fidelity protocol the reference is the network's own label map on
the uncompressed image, so mIoU measures agreement with it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench.devices import resolve_device
from bench.io.digests import file_sha256
from bench.tasks.base import LazyNetwork, Task
from bench.tasks.evaluators.segmentation import SEGMENTATION_METRICS, evaluate_segmentation, per_class_iou
from bench.tasks.masks import (
    IGNORE_INDEX,
    label_prediction,
)
from bench.tasks.networks.espnet import ESPNET_MEAN_BGR, ESPNET_STD_BGR, ESPNET_URL, build_espnet
from bench.tasks.precision import autocast
from bench.tasks.runtimes.tflite import CORAL_TEST_DATA, TFLiteModel, litert_version
from bench.tasks.runtimes.torchvision import TorchvisionNetwork, torch_versions, torchvision_weights

# ------------------------------------------------------------------ evaluator


class SegmentationTask(Task):
    """What all segmenters share: label space, class count, the evaluator, label maps as JSON."""

    kind = "segmentation"
    metrics = SEGMENTATION_METRICS

    def __init__(
        self,
        name: str,
        num_classes: int,
        label_space: str | None = None,
        class_names: Sequence[str] | None = None,
        ignore_index: int = IGNORE_INDEX,
        batch_size: int = 1,
        **options: Any,
    ):
        super().__init__(name, batch_size=batch_size, **options)
        if not 0 < int(num_classes) < 255:
            raise ValueError(f"{name}: num_classes must be 1..254 (8-bit label maps, 255 = ignore)")
        self.num_classes = int(num_classes)
        self.label_space = label_space
        self.class_names = list(class_names) if class_names is not None else None
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ValueError(f"{name}: {len(self.class_names)} class names for {self.num_classes} classes")
        self.ignore_index = ignore_index

    def evaluate(self, predictions: Mapping[str, Any], references: Mapping[str, Any]) -> dict[str, float]:
        scores, _ = evaluate_segmentation(
            predictions, references, self.num_classes, self.ignore_index, label_space=self.label_space
        )
        return scores

    def per_class_scores(self, predictions: Mapping[str, Any], references: Mapping[str, Any]) -> dict[str, float]:
        return self.per_class_iou(predictions, references)

    def per_class_iou(self, predictions: Mapping[str, Any], references: Mapping[str, Any]) -> dict[str, float]:
        """IoU per class name (NaN where the class is absent from both), for reports."""
        _, cm = evaluate_segmentation(predictions, references, self.num_classes, self.ignore_index, self.label_space)
        names = self.class_names or [str(i) for i in range(self.num_classes)]
        return dict(zip(names, per_class_iou(cm).tolist()))


INTERPOLATION = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "cubic": cv2.INTER_CUBIC}


def resize_labels(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a label map (pixel-centre sampling)."""
    if labels.shape == (height, width):
        return labels
    return cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)


# ------------------------------------------------------------------ TFLite


def labels_from_output(out: np.ndarray) -> np.ndarray:
    """A network output for one image -> H x W class ids: argmax maps pass, N x H x W x C logits are argmaxed."""
    out = np.asarray(out)
    if out.ndim == 4 and out.shape[0] == 1:
        out = out[0]
    if out.ndim == 3 and out.shape[0] == 1:
        out = out[0]
    if out.ndim == 2:  # already an argmax map (the DeepLab TFLite models end in ArgMax)
        return out.astype(np.int64)
    if out.ndim == 3:  # H x W x C scores (NHWC, as TFLite)
        return np.argmax(out, axis=-1)
    raise ValueError(f"cannot read a label map from an output of shape {out.shape}")


def tile_windows(length: int, size: int) -> list[tuple[int, tuple[int, int]]]:
    """Evenly spread windows of ``size`` covering ``length``: (start, (own_from, own_to)) each.

    Where windows overlap, each pixel goes to the window whose centre is nearer
    (the overlap is split at its midpoint), away from window borders.
    """
    n = 1 if length <= size else -(-(length - size) // size) + 1
    starts = [round(i * (length - size) / (n - 1)) for i in range(n)] if n > 1 else [0]
    bounds = [0] + [(starts[i] + size + starts[i + 1]) // 2 for i in range(n - 1)] + [length]
    return [(starts[i], (bounds[i], bounds[i + 1])) for i in range(n)]


class TFLiteSegmenter(SegmentationTask):
    """A TFLite semantic segmenter (the DeepLab uint8 models from Coral's test data).

    How the image meets the fixed model input (``resize``):

    - ``stretch``: the whole image resized to the input (Coral's demo; a 2:1
      Cityscapes frame is squashed 4x across, 2x down);
    - ``pad``: resized to fit, aspect kept, padded bottom/right with ``pad_value``;
    - ``tile``: resized by ``scale``, padded up to the input size if smaller,
      and covered by overlapping input-sized windows (each pixel labelled by
      the window whose centre is nearest). With ``scale: 1.0`` this is
      DeepLab's own VOC evaluation for images up to 513 px (pad, no resize).

    The label map is resized back to the image with nearest neighbour.
    ``interpolation`` resizes the image (``area`` anti-aliases downscaling).

    ``class_map``: model output id -> evaluation id (a list indexed by output
    id, 255 = not evaluated), for models whose ids are not the dataset's
    (e.g. a background class first). The Cityscapes DeepLab-EdgeTPU model
    outputs the 19 trainIds directly (no map); the VOC models output the 21
    VOC classes, which only the fidelity protocol can score on non-VOC data
    (``label_space`` lets the evaluator refuse a mismatched ground truth).
    """

    def __init__(
        self,
        name: str,
        model: str | os.PathLike,
        num_classes: int,
        label_space: str | None = None,
        class_names: Sequence[str] | None = None,
        class_map: Sequence[int] | None = None,
        resize: str = "stretch",
        scale: float = 1.0,
        interpolation: str = "area",
        pad_value: int = 128,
        input_mean: float = 128.0,
        input_std: float = 128.0,
        threads: int | None = None,
        batch_size: int = 1,
        **options: Any,
    ):
        super().__init__(name, num_classes, label_space, class_names, batch_size=batch_size, **options)
        if resize not in ("stretch", "pad", "tile"):
            raise ValueError(f"{name}: resize must be 'stretch', 'pad' or 'tile', not {resize!r}")
        if interpolation not in INTERPOLATION:
            raise ValueError(f"{name}: interpolation must be one of {sorted(INTERPOLATION)}")
        if not scale > 0:
            raise ValueError(f"{name}: scale must be positive")
        self.model = TFLiteModel(model, threads)
        self.resize = resize
        self.scale = float(scale)
        self.interpolation = interpolation
        self.pad_value = pad_value
        self.input_mean = float(input_mean)
        self.input_std = float(input_std)
        self.class_map = None
        if class_map is not None:
            ids = [int(c) for c in class_map]
            if len(ids) > 256 or any(not 0 <= c <= 255 for c in ids):
                raise ValueError(f"{name}: class_map must list at most 256 ids in 0..255")
            lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
            lut[: len(ids)] = ids
            self.class_map = lut

    def unavailable_reason(self) -> str | None:
        return self.model.unavailable_reason(
            f"set HMC_BENCH_WEIGHTS to the weights folder, or task.model; the file is "
            f"{CORAL_TEST_DATA}{self.model.path.name}"
        )

    def _run_window(self, x: np.ndarray) -> np.ndarray:
        """Class ids (int64) for one model-sized RGB window."""
        out = self.model.run(self.model.quantize(x, self.input_mean, self.input_std))[0]
        return labels_from_output(out)

    def _model_ids(self, image: np.ndarray) -> np.ndarray:
        """The model's class ids over the (resized) image; the caller resizes back."""
        h, w = self.model.input_size
        interp = INTERPOLATION[self.interpolation]
        if self.resize == "stretch":
            return self._run_window(cv2.resize(image, (w, h), interpolation=interp))
        r = min(h / image.shape[0], w / image.shape[1]) if self.resize == "pad" else self.scale
        nh, nw = max(1, round(image.shape[0] * r)), max(1, round(image.shape[1] * r))
        scaled = image if (nh, nw) == image.shape[:2] else cv2.resize(image, (nw, nh), interpolation=interp)
        ph, pw = max(nh, h), max(nw, w)
        canvas = np.full((ph, pw, 3), self.pad_value, dtype=np.uint8)
        canvas[:nh, :nw] = scaled
        ids = np.empty((ph, pw), dtype=np.int64)
        ys, xs = tile_windows(ph, h), tile_windows(pw, w)
        for y0, (ya, yb) in ys:
            for x0, (xa, xb) in xs:
                window = self._run_window(canvas[y0 : y0 + h, x0 : x0 + w])
                ids[ya:yb, xa:xb] = window[ya - y0 : yb - y0, xa - x0 : xb - x0]
        return ids[:nh, :nw]

    def predict_labels(self, image: np.ndarray) -> np.ndarray:
        """H x W uint8 evaluation ids for one RGB image."""
        ids = self._model_ids(image)
        if self.class_map is not None:
            ids = np.where((ids >= 0) & (ids < 256), self.class_map[np.clip(ids, 0, 255)], IGNORE_INDEX)
        labels = np.where((ids < 0) | (ids > 255), IGNORE_INDEX, ids).astype(np.uint8)
        return resize_labels(labels, image.shape[0], image.shape[1])

    def predict(self, images: Sequence[np.ndarray]) -> list[Any]:
        return [label_prediction(self.predict_labels(img)) for img in images]

    def describe(self) -> str:
        how = f"tile x{self.scale:g}" if self.resize == "tile" else self.resize
        return f"{self.name} (TFLite {self.model.path.name}, {how})"

    def weight_files(self) -> dict[str, Path]:
        return {"network": self.model.path}

    def versions(self) -> dict[str, str]:
        v = {"runtime": litert_version()}
        if self.model.path.is_file():
            v["model"] = f"{self.model.path.name} sha256:{self.model.sha256()[:16]}"
        return v


# ------------------------------------------------------------------ torch helpers


class TorchvisionSegmenter(TorchvisionNetwork, SegmentationTask):
    """DeepLabV3 / LR-ASPP / FCN from torchvision's weights API (21 VOC classes for the published weights).

    Preprocessing is the weights' own (shorter side resized to 520, ImageNet
    mean/std); logits are upsampled bilinearly to the image size before the
    argmax. ``network`` is the plain ``nn.Module`` and :meth:`logits` is
    differentiable, for training task adapters later. ``weights: null``
    builds the architecture with random weights (tests, training from scratch).
    """

    uses_torch = True

    def __init__(
        self,
        name: str,
        model: str = "deeplabv3_mobilenet_v3_large",
        weights: str | None = "DEFAULT",
        checkpoint: str | os.PathLike | None = None,
        num_classes: int | None = None,
        label_space: str | None = "voc",
        class_names: Sequence[str] | None = None,
        resize: int | None = 520,
        device: str = "auto",
        batch_size: int = 1,
        autocast: bool = False,
        **options: Any,
    ):
        self.arch = model
        self.weights = torchvision_weights(model, weights)
        self.checkpoint = checkpoint
        if self.weights is not None:
            categories = list(self.weights.meta["categories"])
            num_classes = num_classes or len(categories)
            class_names = class_names or (categories if len(categories) == num_classes else None)
        super().__init__(name, num_classes or 21, label_space, class_names, batch_size=batch_size, **options)
        self.resize = resize
        self.device_name = device
        #: run the network under torch.autocast (bf16 on CPU, fp16 on CUDA; see bench.tasks.precision)
        self.autocast = bool(autocast)
        self._network = None

    def logits(self, x: Any) -> Any:
        """N x 3 x H x W float RGB in [0, 1] -> N x C x H x W logits (differentiable)."""
        import torch.nn.functional as F
        from torchvision.transforms.functional import normalize, resize

        h, w = x.shape[-2:]
        if self.resize:
            x = resize(x, [self.resize], antialias=True)
        x = normalize(x, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
        out = self.network(x)["out"]
        return F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)

    def predict(self, images: Sequence[np.ndarray]) -> list[Any]:
        import torch

        preds = []
        with torch.no_grad():  # not inference_mode: a network built here must stay trainable
            for img in images:
                x = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)[None].to(self.device)
                with autocast(self.device, self.autocast):
                    logits = self.logits(x.float() / 255.0)
                labels = logits.float().argmax(1)[0].to(torch.uint8).cpu().numpy()
                preds.append(label_prediction(labels))
        return preds


# ------------------------------------------------------------------ ESPNet


class ESPNetSegmenter(LazyNetwork, SegmentationTask):
    """ESPNet (p=2, q=8) trained on Cityscapes: 19 trainIds + an ignore class (output 19 -> 255, a miss).

    Preprocessing as the ESPNet repo's ``VisualizeResults.py``: BGR,
    ``(x - mean) / std`` per channel with its Cityscapes statistics, resized
    to 1024 x 512 (bilinear), then divided by 255 (its training loader's
    ``ToTensor`` divides after normalising, so the network expects that).
    """

    uses_torch = True

    def __init__(
        self,
        name: str,
        checkpoint: str | os.PathLike,
        p: int = 2,
        q: int = 8,
        input_size: Sequence[int] = (512, 1024),
        label_space: str | None = "cityscapes",
        class_names: Sequence[str] | None = None,
        device: str = "auto",
        batch_size: int = 1,
        autocast: bool = False,
        **options: Any,
    ):
        super().__init__(name, 19, label_space, class_names, batch_size=batch_size, **options)
        self.checkpoint = Path(checkpoint).expanduser()
        self.p, self.q = p, q
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.device_name = device
        #: run the network under torch.autocast (bf16 on CPU, fp16 on CUDA; see bench.tasks.precision)
        self.autocast = bool(autocast)
        self._network = None

    def unavailable_reason(self) -> str | None:
        try:
            import torch  # noqa: F401
        except ImportError:
            return "torch is not installed (pip install 'hmc-bench[learned]')"
        if not self.checkpoint.is_file():
            return (
                f"ESPNet checkpoint not found: {self.checkpoint} (set HMC_BENCH_WEIGHTS or task.checkpoint; "
                f"the file is {ESPNET_URL})"
            )
        return None

    @property
    def device(self) -> str:
        return resolve_device(self.device_name)

    def build_network(self) -> Any:
        """ESPNet with the authors' state dict, loaded strictly with ``weights_only=True``."""
        import torch

        net = build_espnet(20, self.p, self.q)
        state = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
        return net.eval().to(self.device)

    def network_input(self, x: Any) -> Any:
        """N x 3 x H x W float RGB in [0, 255] -> what the network reads: normalised, resized, BGR, / 255."""
        import torch
        import torch.nn.functional as F

        mean = torch.tensor(ESPNET_MEAN_BGR[::-1], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(ESPNET_STD_BGR[::-1], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        x = (x - mean) / std
        x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
        return x[:, [2, 1, 0]] / 255.0

    def logits(self, x: Any) -> Any:
        """N x 3 x H x W float RGB in [0, 255] -> N x 20 x h x w logits at the network's input size."""
        return self.network(self.network_input(x))

    def prediction_from_logits(self, logits: Any, image_hw: Sequence[int]) -> dict[str, Any]:
        """One image's ``20 x h x w`` logits -> its label map at ``image_hw`` as JSON (the 20th class -> 255)."""
        import torch

        labels = logits.float().argmax(0).to(torch.uint8).cpu().numpy()
        labels[labels >= self.num_classes] = IGNORE_INDEX
        return label_prediction(resize_labels(labels, int(image_hw[0]), int(image_hw[1])))

    def predict(self, images: Sequence[np.ndarray]) -> list[Any]:
        import torch

        preds = []
        with torch.no_grad():  # not inference_mode: a network built here must stay trainable
            for img in images:
                x = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)[None].float().to(self.device)
                with autocast(self.device, self.autocast):
                    logits = self.logits(x)
                preds.append(self.prediction_from_logits(logits[0], img.shape[:2]))
        return preds

    def describe(self) -> str:
        return f"{self.name} (ESPNet p={self.p} q={self.q}, {self.checkpoint.name})"

    def weight_files(self) -> dict[str, Path]:
        return {"network": self.checkpoint}

    def versions(self) -> dict[str, str]:
        v = torch_versions()
        if self.checkpoint.is_file():
            v["checkpoint"] = f"{self.checkpoint.name} sha256:{file_sha256(self.checkpoint)[:16]}"
        return v
