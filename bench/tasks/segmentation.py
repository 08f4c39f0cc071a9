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

import functools
import hashlib
import importlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench.tasks.base import Task, TaskUnavailable
from bench.tasks.masks import (
    IGNORE_INDEX,
    PNG_KEY,
    LabelMapError,
    decode_label_png,
    label_prediction,
    read_label_file,
)
from bench.tasks.precision import autocast

SEGMENTATION_METRICS = ("mIoU", "pixel_acc")

#: how a ground-truth target's file is turned into evaluation ids (encoding -> 256-entry LUT factory)
LABEL_ENCODINGS = {
    "trainIds": None,
    "cityscapes-labelIds": ("bench.datasets.cityscapes", "label_id_to_train_id_lut"),
}

# ------------------------------------------------------------------ evaluator


def confusion_matrix(
    gt: np.ndarray, pred: np.ndarray, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> np.ndarray:
    """C x (C+1) pixel counts: row = ground-truth class, column = predicted class, last column = any other id.

    Ground-truth pixels equal to ``ignore_index`` are skipped; any other
    ground-truth id outside 0..C-1 is an error (e.g. labelIds passed as trainIds).
    """
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth shape {gt.shape}")
    gt = gt.astype(np.int64, copy=False).ravel()
    pred = pred.astype(np.int64, copy=False).ravel()
    valid = gt != ignore_index
    gt = gt[valid]
    pred = pred[valid]
    if gt.size and (gt.min() < 0 or gt.max() >= num_classes):
        bad = np.unique(gt[(gt < 0) | (gt >= num_classes)])
        raise ValueError(
            f"ground truth holds ids {bad[:10].tolist()} outside 0..{num_classes - 1} and not the ignore index "
            f"{ignore_index} (labelIds given where trainIds are expected?)"
        )
    pred = np.where((pred < 0) | (pred >= num_classes), num_classes, pred)
    counts = np.bincount(gt * (num_classes + 1) + pred, minlength=num_classes * (num_classes + 1))
    return counts.reshape(num_classes, num_classes + 1)


def per_class_iou(cm: np.ndarray) -> np.ndarray:
    """IoU of each class from a :func:`confusion_matrix`; NaN for a class absent from ground truth and prediction."""
    c = cm.shape[0]
    tp = np.diag(cm[:, :c]).astype(np.float64)
    fp = cm[:, :c].sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    denom = tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, tp / np.maximum(denom, 1), np.nan)


def scores_from_confusion(cm: np.ndarray) -> dict[str, float]:
    """mIoU (over classes present in ground truth or prediction) and pixel accuracy."""
    iou = per_class_iou(cm)
    total = cm.sum()
    c = cm.shape[0]
    miou = float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")
    acc = float(np.trace(cm[:, :c]) / total) if total else float("nan")
    return {"mIoU": miou, "pixel_acc": acc}


def read_prediction(prediction: Any) -> np.ndarray:
    """The label map of a segmentation prediction (JSON dict or an array, for convenience)."""
    if isinstance(prediction, Mapping) and PNG_KEY in prediction:
        return decode_label_png(prediction[PNG_KEY])
    if isinstance(prediction, np.ndarray):
        return prediction
    raise ValueError(f"not a segmentation prediction: {type(prediction).__name__} (expected a dict with {PNG_KEY!r})")


def read_reference(reference: Any) -> np.ndarray:
    """A ground-truth or fidelity reference as an H x W map of evaluation ids.

    Accepts a dataset target ``{"path", "encoding"}`` (labelIds mapped to
    trainIds), a path to a label PNG, or a prediction (fidelity protocol).
    """
    if isinstance(reference, Mapping) and "path" in reference:
        labels = read_label_file(reference["path"])
        encoding = reference.get("encoding", "trainIds")
        if encoding not in LABEL_ENCODINGS:
            raise LabelMapError(f"{reference['path']}: unknown label encoding {encoding!r}")
        lut_from = LABEL_ENCODINGS[encoding]
        if lut_from is not None:
            module, func = lut_from
            labels = getattr(importlib.import_module(module), func)()[labels]
        return labels
    if isinstance(reference, (str, os.PathLike)):
        return read_label_file(reference)
    return read_prediction(reference)


def evaluate_segmentation(
    predictions: Mapping[str, Any],
    references: Mapping[str, Any],
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    label_space: str | None = None,
) -> tuple[dict[str, float], np.ndarray]:
    """Dataset-level mIoU and pixel accuracy, and the confusion matrix they come from.

    ``label_space``: the ids the predictions are in; a ground-truth target in
    another label space (VOC predictions against Cityscapes labels) is refused.
    """
    cm = np.zeros((num_classes, num_classes + 1), dtype=np.int64)
    for sample_id, prediction in predictions.items():
        if sample_id not in references:
            raise KeyError(f"no reference for sample {sample_id!r}")
        ref = references[sample_id]
        ref_space = ref.get("label_space") if isinstance(ref, Mapping) else None
        if label_space and ref_space and ref_space != label_space:
            raise ValueError(
                f"the network predicts {label_space} classes but the dataset's labels are {ref_space} classes: "
                "its mIoU against this ground truth is meaningless; use the fidelity protocol on this dataset"
            )
        pred = read_prediction(prediction)
        gt = read_reference(ref)
        try:
            cm += confusion_matrix(gt, pred, num_classes, ignore_index)
        except ValueError as exc:
            raise ValueError(f"sample {sample_id!r}: {exc}") from exc
    return scores_from_confusion(cm), cm


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


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


INTERPOLATION = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "cubic": cv2.INTER_CUBIC}


def resize_labels(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a label map (pixel-centre sampling)."""
    if labels.shape == (height, width):
        return labels
    return cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)


# ------------------------------------------------------------------ TFLite


def _interpreter_class() -> Any:
    """The TFLite interpreter class from ai-edge-litert, else tflite-runtime, else TensorFlow."""
    for module in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter"):
        try:
            return importlib.import_module(module).Interpreter
        except ImportError:
            continue
    try:
        import tensorflow as tf  # noqa: F401

        return tf.lite.Interpreter
    except ImportError:
        return None


def litert_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("ai-edge-litert", "tflite-runtime", "tensorflow"):
        try:
            return f"{dist} {version(dist)}"
        except PackageNotFoundError:
            continue
    return "none"


TFLITE_HINT = "pip install ai-edge-litert"
#: where the Coral test models the configs name can be downloaded (CPU builds, not the *_edgetpu ones)
CORAL_TEST_DATA = "https://github.com/google-coral/test_data/raw/master/"


class TFLiteModel:
    """One TFLite model with one image input: quantises the input, dequantises outputs.

    The network's real-valued input is ``(pixel - input_mean) / input_std``;
    for a quantised input tensor it is stored as ``round(real / scale + zero_point)``
    with the model's own scale and zero point. The TF-slim / DeepLab uint8
    models here declare scale 1/128, zero point 128, so the defaults
    (mean 128, std 128) feed them the raw pixels exactly, as the reference
    implementations (Coral's demos) do.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        self.path = Path(path).expanduser()
        self.threads = threads
        self._interpreter = None

    def unavailable_reason(self, get_hint: str = "") -> str | None:
        if _interpreter_class() is None:
            return f"no TFLite interpreter is installed ({TFLITE_HINT})"
        if not self.path.is_file():
            return f"TFLite model not found: {self.path}" + (f" ({get_hint})" if get_hint else "")
        return None

    @property
    def interpreter(self) -> Any:
        if self._interpreter is None:
            why = self.unavailable_reason()
            if why:
                raise TaskUnavailable(why)
            interpreter = _interpreter_class()(model_path=str(self.path), num_threads=self.threads)
            interpreter.allocate_tensors()
            inputs = interpreter.get_input_details()
            if len(inputs) != 1 or len(inputs[0]["shape"]) != 4 or inputs[0]["shape"][3] != 3:
                shapes = [list(d["shape"]) for d in inputs]
                raise TaskUnavailable(f"{self.path}: expected one NHWC RGB image input, got inputs {shapes}")
            self._interpreter = interpreter
        return self._interpreter

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_interpreter"] = None  # not picklable: rebuilt in each worker process
        return state

    @property
    def input_details(self) -> dict[str, Any]:
        return self.interpreter.get_input_details()[0]

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) the model takes."""
        shape = self.input_details["shape"]
        return int(shape[1]), int(shape[2])

    def quantize(self, pixels: np.ndarray, mean: float, std: float) -> np.ndarray:
        """H x W x 3 pixel values (uint8 or float, 0..255) -> the input tensor's dtype."""
        d = self.input_details
        dtype = np.dtype(d["dtype"])
        scale, zero_point = d["quantization"]
        if dtype.kind == "f":
            return ((pixels.astype(np.float32) - mean) / std).astype(dtype)
        if not scale:
            raise TaskUnavailable(f"{self.path}: integer input without quantisation parameters")
        if dtype == np.uint8 and pixels.dtype == np.uint8 and zero_point == mean and scale * std == 1.0:
            return pixels  # exactly the raw pixels (the common case): skip the float round trip
        real = (pixels.astype(np.float64) - mean) / std
        info = np.iinfo(dtype)
        return np.clip(np.rint(real / scale + zero_point), info.min, info.max).astype(dtype)

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        """One forward pass of a 1 x H x W x 3 input; outputs dequantised when quantised and not integer ids."""
        it = self.interpreter
        it.set_tensor(self.input_details["index"], tensor[None] if tensor.ndim == 3 else tensor)
        it.invoke()
        outs = []
        for d in it.get_output_details():
            out = it.get_tensor(d["index"])
            scale, zero_point = d["quantization"]
            if scale and np.dtype(d["dtype"]).kind in "iu":
                out = (out.astype(np.float32) - zero_point) * scale
            outs.append(out)
        return outs

    def sha256(self) -> str:
        return _file_sha256(self.path)


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


def _windows(length: int, size: int) -> list[tuple[int, tuple[int, int]]]:
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
        ys, xs = _windows(ph, h), _windows(pw, w)
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


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def torchvision_weights(arch: str, weights: str | None) -> Any:
    """The torchvision weights enum member for ``arch`` ("DEFAULT", "COCO_WITH_VOC_LABELS_V1" or a full name)."""
    if weights is None:
        return None
    from torchvision.models import get_model_weights

    enum = get_model_weights(arch)
    name = weights.split(".")[-1]
    try:
        return enum[name]
    except KeyError:
        raise ValueError(f"{arch}: no weights {weights!r}; known: {[w.name for w in enum]}") from None


def torchvision_weights_problem(arch: str, weights: Any, checkpoint: str | os.PathLike | None) -> str | None:
    """Why the weights cannot be loaded offline (file missing), naming the file, TORCH_HOME and the URL."""
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        return None if path.is_file() else f"{arch}: checkpoint file not found: {path}"
    if weights is None:
        return None
    import torch.hub

    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    if cached.is_file():
        return None
    return (
        f"{arch}: torchvision weights {type(weights).__name__}.{weights.name} are not in the torch hub cache: "
        f"{cached} is missing (the cache is $TORCH_HOME/hub, TORCH_HOME={os.environ.get('TORCH_HOME', 'unset')}). "
        f"Download {weights.url} where there is internet and put it there, or set the task's checkpoint "
        "to a local state_dict file"
    )


def torchvision_weight_files(weights: Any, checkpoint: str | os.PathLike | None) -> dict[str, Path]:
    """The file a torchvision network's weights come from: the local checkpoint, or the hub cache's file."""
    if checkpoint is not None:
        return {"network": Path(checkpoint).expanduser()}
    if weights is None:
        return {}
    import torch.hub

    return {"network": Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)}


def _without_backbone_weights(arch: str) -> dict[str, Any]:
    """``weights_backbone=None`` for builders that take it (detection, segmentation); classifiers reject it."""
    import inspect

    import torchvision

    builder = torchvision.models.get_model_builder(arch)
    return {"weights_backbone": None} if "weights_backbone" in inspect.signature(builder).parameters else {}


def load_torchvision(arch: str, weights: Any, checkpoint: str | os.PathLike | None, **kwargs: Any) -> Any:
    """Build a torchvision model and load its weights, never downloading anything."""
    import torch
    import torchvision

    why = torchvision_weights_problem(arch, weights, checkpoint)
    if why:
        raise TaskUnavailable(why)
    if checkpoint is not None:
        if weights is not None:
            kwargs.setdefault("num_classes", len(weights.meta["categories"]))
        state = torch.load(Path(checkpoint).expanduser(), map_location="cpu", weights_only=True)
        for key in ("state_dict", "model"):  # training checkpoints wrap the state_dict
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
        if any(k.startswith("aux_classifier.") for k in state):
            kwargs.setdefault("aux_loss", True)
        net = torchvision.models.get_model(arch, weights=None, **_without_backbone_weights(arch), **kwargs)
        net.load_state_dict(state, strict=True)
        return net
    if weights is None:
        return torchvision.models.get_model(arch, weights=None, **_without_backbone_weights(arch), **kwargs)
    try:
        return torchvision.models.get_model(arch, weights=weights, **kwargs)
    except Exception as exc:  # a corrupt or truncated cached file
        raise TaskUnavailable(f"{arch}: cannot load weights {weights.name} ({type(exc).__name__}: {exc})") from exc


def torch_versions() -> dict[str, str]:
    import torch
    import torchvision

    return {"torch": torch.__version__, "torchvision": torchvision.__version__}


class TorchvisionNetwork:
    """A task whose network comes from torchvision's weights API (or a local state dict), loaded lazily.

    Subclasses set ``arch``, ``weights``, ``checkpoint``, ``num_classes``,
    ``device_name`` and ``_network = None``. The module is dropped when the
    task is pickled to a worker process and loaded again there on first use.
    """

    arch: str
    weights: Any
    checkpoint: str | os.PathLike | None
    num_classes: int
    device_name: str
    name: str
    _network: Any

    def unavailable_reason(self) -> str | None:
        try:
            import torchvision  # noqa: F401
        except ImportError:
            return "torchvision is not installed (pip install 'hmc-bench[learned]')"
        return torchvision_weights_problem(self.arch, self.weights, self.checkpoint)

    @property
    def device(self) -> str:
        return resolve_device(self.device_name)

    @property
    def network(self) -> Any:
        """The torch module (eval mode), loaded on first use."""
        if self._network is None:
            kwargs = {} if self.weights is not None else {"num_classes": self.num_classes}
            self._network = load_torchvision(self.arch, self.weights, self.checkpoint, **kwargs).eval().to(self.device)
        return self._network

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_network"] = None
        return state

    def describe(self) -> str:
        w = self.weights.name if self.weights is not None else (self.checkpoint or "random init")
        return f"{self.name} (torchvision {self.arch}, {w})"

    def versions(self) -> dict[str, str]:
        return torch_versions()

    def weight_files(self) -> dict[str, Path]:
        return torchvision_weight_files(self.weights, self.checkpoint)


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


@functools.lru_cache(maxsize=1)
def _espnet_classes() -> Any:
    """ESPNet (Mehta et al., ECCV 2018; sacmehta/ESPNet ``Model.py``), written to load its state_dicts strictly.

    Built on first use so that importing this module does not need torch.
    """
    import torch
    from torch import nn

    class CBR(nn.Module):
        def __init__(self, n_in: int, n_out: int, k: int, stride: int = 1):
            super().__init__()
            self.conv = nn.Conv2d(n_in, n_out, k, stride=stride, padding=(k - 1) // 2, bias=False)
            self.bn = nn.BatchNorm2d(n_out, eps=1e-3)
            self.act = nn.PReLU(n_out)

        def forward(self, x):
            return self.act(self.bn(self.conv(x)))

    class BR(nn.Module):
        def __init__(self, n_out: int):
            super().__init__()
            self.bn = nn.BatchNorm2d(n_out, eps=1e-3)
            self.act = nn.PReLU(n_out)

        def forward(self, x):
            return self.act(self.bn(x))

    class C(nn.Module):
        def __init__(self, n_in: int, n_out: int, k: int, stride: int = 1, dilation: int = 1):
            super().__init__()
            pad = ((k - 1) // 2) * dilation
            self.conv = nn.Conv2d(n_in, n_out, k, stride=stride, padding=pad, bias=False, dilation=dilation)

        def forward(self, x):
            return self.conv(x)

    class ESPBlock(nn.Module):
        """Reduce, split, transform with dilations 1/2/4/8/16, hierarchical feature fusion, merge."""

        def __init__(self, n_in: int, n_out: int, add: bool = True, down: bool = False):
            super().__init__()
            n = n_out // 5
            n1 = n_out - 4 * n
            self.c1 = C(n_in, n, 3, 2) if down else C(n_in, n, 1, 1)
            self.d1 = C(n, n1, 3, 1, 1)
            self.d2 = C(n, n, 3, 1, 2)
            self.d4 = C(n, n, 3, 1, 4)
            self.d8 = C(n, n, 3, 1, 8)
            self.d16 = C(n, n, 3, 1, 16)
            self.down = down
            self.add = add and not down
            if down:  # DownSamplerB: bn and act directly on the block
                self.bn = nn.BatchNorm2d(n_out, eps=1e-3)
                self.act = nn.PReLU(n_out)
            else:  # DilatedParllelResidualBlockB: a BR module named bn
                self.bn = BR(n_out)

        def forward(self, x):
            o = self.c1(x)
            d1, d2, d4, d8, d16 = self.d1(o), self.d2(o), self.d4(o), self.d8(o), self.d16(o)
            a1 = d2
            a2 = a1 + d4
            a3 = a2 + d8
            a4 = a3 + d16
            out = torch.cat([d1, a1, a2, a3, a4], 1)
            if self.down:
                return self.act(self.bn(out))
            if self.add:
                out = x + out
            return self.bn(out)

    class InputProjection(nn.Module):
        def __init__(self, times: int):
            super().__init__()
            self.pool = nn.ModuleList([nn.AvgPool2d(3, stride=2, padding=1) for _ in range(times)])

        def forward(self, x):
            for pool in self.pool:
                x = pool(x)
            return x

    class Encoder(nn.Module):
        def __init__(self, classes: int, p: int, q: int):
            super().__init__()
            self.level1 = CBR(3, 16, 3, 2)
            self.sample1 = InputProjection(1)
            self.sample2 = InputProjection(2)
            self.b1 = BR(16 + 3)
            self.level2_0 = ESPBlock(16 + 3, 64, down=True)
            self.level2 = nn.ModuleList([ESPBlock(64, 64) for _ in range(p)])
            self.b2 = BR(128 + 3)
            self.level3_0 = ESPBlock(128 + 3, 128, down=True)
            self.level3 = nn.ModuleList([ESPBlock(128, 128) for _ in range(q)])
            self.b3 = BR(256)
            self.classifier = C(256, classes, 1, 1)

    class ESPNet(nn.Module):
        """ESPNet with its light decoder; ``classes`` includes the extra ignore/background class."""

        def __init__(self, classes: int = 20, p: int = 2, q: int = 8):
            super().__init__()
            self.encoder = Encoder(classes, p, q)
            self.level3_C = C(128 + 3, classes, 1, 1)
            self.br = nn.BatchNorm2d(classes, eps=1e-3)
            self.conv = CBR(16 + classes, classes, 3, 1)
            self.up_l3 = nn.Sequential(nn.ConvTranspose2d(classes, classes, 2, stride=2, padding=0, bias=False))
            self.combine_l2_l3 = nn.Sequential(BR(2 * classes), ESPBlock(2 * classes, classes, add=False))
            self.up_l2 = nn.Sequential(
                nn.ConvTranspose2d(classes, classes, 2, stride=2, padding=0, bias=False), BR(classes)
            )
            self.classifier = nn.ConvTranspose2d(classes, classes, 2, stride=2, padding=0, bias=False)

        def forward(self, x):
            e = self.encoder
            out0 = e.level1(x)
            inp1 = e.sample1(x)
            inp2 = e.sample2(x)
            out0_cat = e.b1(torch.cat([out0, inp1], 1))
            out1_0 = e.level2_0(out0_cat)
            out1 = out1_0
            for layer in e.level2:
                out1 = layer(out1)
            out1_cat = e.b2(torch.cat([out1, out1_0, inp2], 1))
            out2_0 = e.level3_0(out1_cat)
            out2 = out2_0
            for layer in e.level3:
                out2 = layer(out2)
            out2_cat = e.b3(torch.cat([out2_0, out2], 1))
            out2_c = self.up_l3(self.br(e.classifier(out2_cat)))
            out1_c = self.level3_C(out1_cat)
            comb = self.up_l2(self.combine_l2_l3(torch.cat([out1_c, out2_c], 1)))
            feats = self.conv(torch.cat([comb, out0], 1))
            return self.classifier(feats)

    return ESPNet


def build_espnet(classes: int = 20, p: int = 2, q: int = 8) -> Any:
    """An ESPNet (encoder + light decoder) torch module with random weights."""
    return _espnet_classes()(classes, p, q)


#: ESPNet's Cityscapes input statistics, in OpenCV's BGR channel order (sacmehta/ESPNet VisualizeResults.py)
ESPNET_MEAN_BGR = (72.3923111, 82.90893555, 73.15840149)
ESPNET_STD_BGR = (45.3192215, 46.15289307, 44.91483307)
ESPNET_URL = "https://github.com/sacmehta/ESPNet/raw/master/pretrained/decoder/espnet_p_2_q_8.pth"


class ESPNetSegmenter(SegmentationTask):
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

    @property
    def network(self) -> Any:
        if self._network is None:
            import torch

            why = self.unavailable_reason()
            if why:
                raise TaskUnavailable(why)
            net = build_espnet(20, self.p, self.q)
            state = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
            net.load_state_dict(state, strict=True)
            self._network = net.eval().to(self.device)
        return self._network

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_network"] = None
        return state

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
            v["checkpoint"] = f"{self.checkpoint.name} sha256:{_file_sha256(self.checkpoint)[:16]}"
        return v
