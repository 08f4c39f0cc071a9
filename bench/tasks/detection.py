"""COCO object detection and instance segmentation: real networks, scored by pycocotools.

Two kinds of network:

- :class:`OnnxDetector` runs an exported one-stage detector in onnxruntime and
  decodes its raw head output here (``decoder: yolox`` or ``nanodet``), so a
  small real detector runs on any CPU without torch;
- :class:`TorchvisionDetector` / :class:`TorchvisionInstanceSegmenter` wrap
  torchvision's COCO models (Faster R-CNN, Mask R-CNN) through its weights
  API; the torch module is exposed as ``.network`` for later training.

A prediction is a list of ``{"bbox": [x, y, w, h], "score", "category_id"}``
in the original image's pixels (plus ``"segmentation"``: a COCO RLE with
string ``counts``, for masks): plain JSON, so rows can store it. Boxes are
rounded to 1/100 px and scores to 1e-5, which keeps rows small and moves AP by
less than 1e-4.

Evaluation is :mod:`bench.tasks.evaluators.coco` (pycocotools ``COCOeval``). Under
the fidelity protocol the reference is the network's own output on the
uncompressed image, keeping objects with ``score >= reference_score_threshold``
(0.5 by default: a confident detection stands in for a labelled object, as
"pseudo ground truth" in the coding-for-machines literature); lower it to
count weaker objects.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from bench.datasets.coco import COCO80, DETECTION, INSTANCE_SEGMENTATION, LABEL_SPACE
from bench.devices import resolve_device
from bench.provenance import installed_versions
from bench.tasks.base import LazyNetwork, Task, TaskUnavailable
from bench.tasks.evaluators import coco as coco_eval
from bench.tasks.networks.detectors import DECODERS, decode_nanodet, decode_yolox, postprocess, read_label_map
from bench.tasks.precision import autocast

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

BOX_METRICS: tuple[str, ...] = coco_eval.STAT_NAMES
MASK_METRICS: tuple[str, ...] = coco_eval.STAT_NAMES + ("bbox_mAP", "bbox_mAP50", "bbox_mAP75")


def _round_detection(x: float, y: float, w: float, h: float, score: float, category_id: int) -> dict[str, Any]:
    return {
        "bbox": [round(float(x), 2), round(float(y), 2), round(float(w), 2), round(float(h), 2)],
        "score": round(float(score), 5),
        "category_id": int(category_id),
    }


class CocoDetectionTask(Task):
    """What every COCO detector shares: the evaluator, per-class AP and the fidelity reference."""

    kind: ClassVar[str] = DETECTION
    metrics: ClassVar[tuple[str, ...]] = BOX_METRICS
    #: predictions carry COCO category ids: a dataset's labels are ground truth only in the same space
    label_space: ClassVar[str] = LABEL_SPACE
    #: IoU types evaluated, the first giving the plain metric names
    iou_types: ClassVar[tuple[str, ...]] = (coco_eval.BBOX,)
    #: detections with a NaN/inf box or score are dropped before NMS and counted per image
    counters: ClassVar[tuple[str, ...]] = ("dropped_nonfinite",)

    def __init__(self, name: str, batch_size: int = 1, reference_score_threshold: float = 0.5, **options: Any):
        super().__init__(name, batch_size=batch_size, **options)
        #: fidelity protocol: detections on the uncompressed image with at least this score are the reference
        self.reference_score_threshold = float(reference_score_threshold)
        #: detections dropped because the network gave a NaN/inf box or score (counted, logged)
        self.dropped_nonfinite = 0
        #: per-image drop counts of the ``predict`` call in progress (see ``predict_with_counts``)
        self._dropped_per_image: list[int] | None = None

    def categories(self) -> list[tuple[int, str]]:
        """(COCO category id, name) of every class the network predicts."""
        return list(COCO80)

    def evaluate(self, predictions: Mapping[str, Any], references: Mapping[str, Any]) -> dict[str, float]:
        return coco_eval.evaluate_coco(predictions, references, self.iou_types, self.categories())

    def per_class(
        self, predictions: Mapping[str, Any], references: Mapping[str, Any], iou_type: str | None = None
    ) -> dict[str, dict[str, float]]:
        """Per category name: AP, AP50, AP75 and the ground-truth count (headline IoU type by default)."""
        return coco_eval.per_class_ap(predictions, references, iou_type or self.iou_types[0], self.categories())

    def per_class_scores(self, predictions: Mapping[str, Any], references: Mapping[str, Any]) -> dict[str, float]:
        return {name: row["AP"] for name, row in self.per_class(predictions, references).items()}

    def reference_from_prediction(self, prediction: Any) -> Any:
        return coco_eval.reference_from_prediction(prediction, self.reference_score_threshold)

    def predict_with_counts(self, images: Sequence[np.ndarray]) -> tuple[list[Any], list[dict[str, int]]]:
        """Predictions and, per image, how many detections were dropped for a non-finite box or score.

        Every detector calls ``_count_nonfinite`` once per image, in input order.
        """
        self._dropped_per_image = []
        try:
            predictions = self.predict(images)
            dropped = self._dropped_per_image
        finally:
            self._dropped_per_image = None
        if len(dropped) != len(predictions):
            raise RuntimeError(
                f"task {self.name!r} counted non-finite detections for {len(dropped)} of {len(images)} images"
            )
        return predictions, [{"dropped_nonfinite": n} for n in dropped]

    def _count_nonfinite(self, n: int) -> None:
        if self._dropped_per_image is not None:
            self._dropped_per_image.append(int(n))
        if n:
            self.dropped_nonfinite += n
            log.warning("%s: dropped %d detections with a non-finite box or score", self.name, n)


# --- decoding one-stage detector heads (numpy, no torch) -----------------------------------------


# --- label maps ---------------------------------------------------------------------------------


# --- ONNX detectors -------------------------------------------------------------------------------


class OnnxDetector(CocoDetectionTask):
    """A one-stage COCO detector exported to ONNX (batch 1 or dynamic), run by onnxruntime.

    Preprocessing: ``channel_order`` (``bgr``/``rgb``) of the array fed,
    ``resize`` = ``letterbox`` (keep aspect, scale r = min(H/h, W/w), paste at
    ``letterbox_position`` top-left or centre on a ``pad_value`` canvas) or
    ``stretch`` (plain resize to W x H), bilinear (OpenCV); then
    ``(x - mean) / std`` per channel in the order fed (none when null).
    Boxes are mapped back to the original image and clipped to it.
    ``device``: ``cpu``, ``cuda`` (CUDA execution provider, error when absent)
    or ``auto``.
    """

    def __init__(
        self,
        name: str,
        model: str | os.PathLike,
        decoder: str,
        input_size: int | Sequence[int],
        channel_order: str = "bgr",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        resize: str = "letterbox",
        letterbox_position: str = "top-left",
        pad_value: float = 114.0,
        strides: Sequence[int] = (8, 16, 32),
        reg_max: int = 7,
        score_threshold: float = 0.01,
        nms_iou: float = 0.65,
        max_detections: int = 100,
        multi_label: bool = False,
        labels: str | os.PathLike | Sequence[Any] | None = None,
        device: str = "cpu",
        threads: int | None = None,
        source: str = "",
        description: str = "",
        batch_size: int = 1,
        reference_score_threshold: float = 0.5,
    ):
        super().__init__(name, batch_size=batch_size, reference_score_threshold=reference_score_threshold)
        if decoder not in DECODERS:
            raise ValueError(f"task {name!r}: decoder must be one of {DECODERS}, not {decoder!r}")
        if channel_order not in ("bgr", "rgb"):
            raise ValueError(f"task {name!r}: channel_order must be 'bgr' or 'rgb', not {channel_order!r}")
        if resize not in ("letterbox", "stretch"):
            raise ValueError(f"task {name!r}: resize must be 'letterbox' or 'stretch', not {resize!r}")
        if letterbox_position not in ("top-left", "center"):
            raise ValueError(f"task {name!r}: letterbox_position must be 'top-left' or 'center'")
        if (mean is None) != (std is None):
            raise ValueError(f"task {name!r}: give both mean and std, or neither")
        self.model = Path(os.path.expanduser(str(model)))
        self.decoder = decoder
        size = [int(input_size)] * 2 if isinstance(input_size, (int, float)) else [int(v) for v in input_size]
        if len(size) != 2:
            raise ValueError(f"task {name!r}: input_size must be S or [H, W], not {input_size!r}")
        self.input_hw: tuple[int, int] = (size[0], size[1])
        self.channel_order = channel_order
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float32)
        self.std = None if std is None else np.asarray(std, dtype=np.float32)
        self.resize = resize
        self.letterbox_position = letterbox_position
        self.pad_value = float(pad_value)
        self.strides = tuple(int(s) for s in strides)
        self.reg_max = int(reg_max)
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self.max_detections = int(max_detections)
        self.multi_label = bool(multi_label)
        self.labels_option = labels
        self.device = device
        self.threads = threads
        self.source = source
        self.description = description
        self._labels: list[tuple[int, str]] | None = None
        self._session: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_session"] = None  # an onnxruntime session does not pickle: each process opens its own
        return state

    # --- availability and loading ---
    def _missing_model_message(self) -> str:
        where = f"; get it from {self.source}" if self.source else ""
        return (
            f"model file {self.model} not found{where}. Set task.model to the file, or HMC_BENCH_WEIGHTS to a "
            f"folder holding {self.model.parent.name}/{self.model.name}"
        )

    def unavailable_reason(self) -> str | None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "onnxruntime is not installed: pip install onnxruntime (or onnxruntime-gpu)"
        if not self.model.is_file():
            return self._missing_model_message()
        try:
            self.categories()
        except (TaskUnavailable, ValueError) as exc:
            return str(exc)
        return None

    def categories(self) -> list[tuple[int, str]]:
        if self._labels is None:
            self._labels = read_label_map(self.labels_option)
        return self._labels

    def providers(self) -> list[str]:
        import onnxruntime as ort

        available = ort.get_available_providers()
        if self.device == "cpu":
            return ["CPUExecutionProvider"]
        if self.device in ("cuda", "auto") and "CUDAExecutionProvider" in available:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        if self.device == "auto":
            return ["CPUExecutionProvider"]
        raise TaskUnavailable(
            f"task {self.name!r}: device {self.device!r} asked, but onnxruntime offers only {available} "
            "(install onnxruntime-gpu for CUDA, or set task.device=cpu)"
        )

    def session(self) -> Any:
        """The onnxruntime session, opened on first use (and checked against the configured input size)."""
        if self._session is None:
            why = self.unavailable_reason()
            if why:
                raise TaskUnavailable(f"task {self.name!r}: {why}")
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.log_severity_level = 3  # old exporters list initializers as inputs: warnings, not errors
            if self.threads:
                opts.intra_op_num_threads = int(self.threads)
            session = ort.InferenceSession(str(self.model), sess_options=opts, providers=self.providers())
            shape = session.get_inputs()[0].shape
            if len(shape) != 4 or any(isinstance(d, int) and d != v for d, v in zip(shape[1:], (3, *self.input_hw))):
                raise ValueError(
                    f"task {self.name!r}: {self.model.name} takes input {shape}, configured input_size is "
                    f"{list(self.input_hw)}"
                )
            self._session = session
        return self._session

    def _batch_limit(self) -> int:
        dim = self.session().get_inputs()[0].shape[0]
        return dim if isinstance(dim, int) and dim > 0 else max(1, self.batch_size)

    # --- preprocessing ---
    def placement(self, height: int, width: int) -> tuple[tuple[int, int, int, int], tuple[float, float, float, float]]:
        """Where an image of this size lands in the network input: (top, left, rows, columns) of the resized
        image, and (scale x, scale y, offset x, offset y) from image to input pixels (what boxes are mapped back by).
        """
        H, W = self.input_hw
        if self.resize == "stretch":
            return (0, 0, H, W), (W / width, H / height, 0.0, 0.0)
        r = min(H / height, W / width)
        nh, nw = max(1, int(height * r)), max(1, int(width * r))
        dy, dx = ((H - nh) // 2, (W - nw) // 2) if self.letterbox_position == "center" else (0, 0)
        return (dy, dx, nh, nw), (r, r, float(dx), float(dy))

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float, float]]:
        """CHW float32 network input, and (scale x, scale y, offset x, offset y) from image to input pixels."""
        import cv2

        H, W = self.input_hw
        img = image[:, :, ::-1] if self.channel_order == "bgr" else image
        (dy, dx, nh, nw), geometry = self.placement(*image.shape[:2])
        if self.resize == "stretch":
            canvas = cv2.resize(np.ascontiguousarray(img), (W, H), interpolation=cv2.INTER_LINEAR)
        else:
            resized = cv2.resize(np.ascontiguousarray(img), (nw, nh), interpolation=cv2.INTER_LINEAR)
            canvas = np.full((H, W, 3), self.pad_value, dtype=np.float32)
            canvas[dy : dy + nh, dx : dx + nw] = resized
        x = canvas.astype(np.float32)
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return np.ascontiguousarray(x.transpose(2, 0, 1)), geometry

    # --- inference ---
    def decode(self, outputs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Raw outputs of one image -> xyxy boxes in input pixels, scores [N, C]."""
        if self.decoder == "yolox":
            return decode_yolox(outputs[0], self.input_hw, self.strides)
        return decode_nanodet(outputs, self.input_hw, self.strides, self.reg_max)

    def prediction_from_outputs(self, outputs: Sequence[np.ndarray], image_hw: tuple[int, int]) -> list[dict]:
        """One image's raw network outputs (numpy, no batch dim) -> its detections in image pixels, as ``predict``."""
        _, geometry = self.placement(*image_hw)
        return self._to_prediction(outputs, geometry, image_hw)

    def _to_prediction(self, outputs: Sequence[np.ndarray], geometry, image_hw: tuple[int, int]) -> list[dict]:
        boxes, scores = self.decode(outputs)
        labels = self.categories()
        if scores.shape[1] != len(labels):
            raise ValueError(
                f"task {self.name!r}: the network scores {scores.shape[1]} classes, the label map has {len(labels)}"
            )
        boxes, scores, classes, dropped = postprocess(
            boxes, scores, self.score_threshold, self.nms_iou, self.max_detections, self.multi_label
        )
        self._count_nonfinite(dropped)
        sx, sy, dx, dy = geometry
        h, w = image_hw
        x1 = np.clip((boxes[:, 0] - dx) / sx, 0, w)
        y1 = np.clip((boxes[:, 1] - dy) / sy, 0, h)
        x2 = np.clip((boxes[:, 2] - dx) / sx, 0, w)
        y2 = np.clip((boxes[:, 3] - dy) / sy, 0, h)
        return [
            _round_detection(x1[i], y1[i], x2[i] - x1[i], y2[i] - y1[i], scores[i], labels[classes[i]][0])
            for i in range(len(scores))
        ]

    def predict(self, images: Sequence[np.ndarray]) -> list[Any]:
        session = self.session()
        input_name = session.get_inputs()[0].name
        limit = self._batch_limit()
        out: list[Any] = []
        for start in range(0, len(images), limit):
            chunk = images[start : start + limit]
            prepared = [self.preprocess(img) for img in chunk]
            raw = session.run(None, {input_name: np.stack([p[0] for p in prepared])})
            for k, (img, (_, geometry)) in enumerate(zip(chunk, prepared)):
                # outputs with a leading batch dim are sliced; NanoDet-320's [N, C] ones belong to the one image
                per_image = [r[k] if r.ndim == 3 else r for r in raw]
                out.append(self._to_prediction(per_image, geometry, img.shape[:2]))
        return out

    # --- the same network in torch, differentiable (training through it) ---
    def torch_network(self) -> torch.nn.Module:
        """The ONNX file converted by onnx2torch (:mod:`bench.tasks.runtimes.onnx_torch`): frozen, eval mode, cached."""
        if not self.model.is_file():
            raise TaskUnavailable(f"task {self.name!r}: {self._missing_model_message()}")
        from bench.tasks.runtimes.onnx_torch import load_onnx_module

        return load_onnx_module(self.model)

    def torch_preprocess(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[float, float, float, float]]:
        """:meth:`preprocess` in torch ops: ``B x 3 x h x w`` RGB in [0, 1] -> the network input, and the geometry.

        Bilinear resizing with half-pixel centres, as OpenCV's; it works on
        floats, where :meth:`preprocess` resizes 8-bit pixels (differences up to
        half a grey level).
        """
        import torch.nn.functional as F

        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"task {self.name!r}: torch input must be B x 3 x H x W (RGB), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        H, W = self.input_hw
        img = x * 255.0
        if self.channel_order == "bgr":
            img = img.flip(1)
        (dy, dx, nh, nw), geometry = self.placement(h, w)
        if (nh, nw) != (h, w):
            img = F.interpolate(img, size=(nh, nw), mode="bilinear", align_corners=False, antialias=False)
        if self.resize == "letterbox":
            img = F.pad(img, (dx, W - nw - dx, dy, H - nh - dy), value=self.pad_value)
        if self.mean is not None:
            mean = img.new_tensor(self.mean).view(1, 3, 1, 1)
            std = img.new_tensor(self.std).view(1, 3, 1, 1)
            img = (img - mean) / std
        return img, geometry

    def torch_outputs(self, x: torch.Tensor) -> tuple[list[torch.Tensor], tuple[float, float, float, float]]:
        """The raw head outputs (``[B, N, C]`` each, as onnxruntime's) on ``B x 3 x h x w`` RGB in [0, 1]."""
        net = self.torch_network().to(x.device)
        inputs, geometry = self.torch_preprocess(x)
        return net(inputs), geometry

    def torch_predict(self, images: Sequence[np.ndarray]) -> list[Any]:
        """:meth:`predict` with the torch network in place of onnxruntime, same pre- and postprocessing.

        A check of the conversion: both give the same detections.
        """
        import torch

        net = self.torch_network()
        device = next(net.parameters()).device
        out: list[Any] = []
        for img in images:
            x, geometry = self.preprocess(img)
            with torch.no_grad():
                raw = net(torch.from_numpy(x[None]).to(device))
            out.append(self._to_prediction([r[0].float().cpu().numpy() for r in raw], geometry, img.shape[:2]))
        return out

    def describe(self) -> str:
        return self.description or f"{self.name} ({self.decoder} decoder, ONNX {self.model.name})"

    def versions(self) -> dict[str, str]:
        out = {}
        try:
            out["onnxruntime"] = importlib.metadata.version("onnxruntime")
        except importlib.metadata.PackageNotFoundError:  # pragma: no cover - e.g. onnxruntime-gpu
            pass
        if self.model.is_file():
            out["model_sha256"] = hashlib.sha256(self.model.read_bytes()).hexdigest()[:16]
        return out

    def weight_files(self) -> dict[str, Path]:
        return {"network": self.model}

    def torch_probe(self) -> Any:
        """The ONNX graph run as torch (the same network, see :meth:`torch_predict`): its operations count."""
        return self.torch_predict


# --- torchvision detectors -----------------------------------------------------------------------

_NOT_A_CLASS = ("__background__", "N/A")


class TorchvisionDetector(LazyNetwork, CocoDetectionTask):
    """A torchvision COCO detector (Faster R-CNN R50-FPN by default) with its published weights.

    ``weights``: a member of the model's weights enum (``DEFAULT``,
    ``COCO_V1``) or a full name (``FasterRCNN_ResNet50_FPN_Weights.COCO_V1``);
    null builds the network untrained (tests, training from scratch). The file
    is read from the torch hub cache (``$TORCH_HOME/hub/checkpoints``); a
    missing file is reported, never downloaded here (``fetch_weights`` does it).
    torchvision labels are COCO category ids already (its 91-entry list has
    ``N/A`` at the ids COCO skips); predictions of ``N/A`` classes are dropped.
    """

    uses_torch: ClassVar[bool] = True
    default_model: ClassVar[str] = "fasterrcnn_resnet50_fpn"

    def __init__(
        self,
        name: str,
        model: str | None = None,
        weights: str | None = "DEFAULT",
        device: str = "auto",
        score_threshold: float = 0.05,
        nms_iou: float = 0.5,
        max_detections: int = 100,
        min_size: int | None = None,
        max_size: int | None = None,
        mask_threshold: float = 0.5,
        description: str = "",
        batch_size: int = 2,
        reference_score_threshold: float = 0.5,
        autocast: bool = False,
    ):
        super().__init__(name, batch_size=batch_size, reference_score_threshold=reference_score_threshold)
        self.model = model or self.default_model
        #: run the network under torch.autocast (bf16 on CPU, fp16 on CUDA; see bench.tasks.precision)
        self.autocast = bool(autocast)
        self.weights = weights
        self.device = device
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self.max_detections = int(max_detections)
        self.min_size = min_size
        self.max_size = max_size
        self.mask_threshold = float(mask_threshold)
        self.description = description
        #: detections of a class torchvision marks N/A, dropped
        self.dropped_not_a_class = 0
        self._network: torch.nn.Module | None = None

    # --- weights ---
    def weights_enum(self) -> Any:
        """The torchvision weights entry (``None`` when untrained)."""
        if self.weights is None:
            return None
        try:
            import torchvision.models as tvm
        except ImportError as exc:
            raise TaskUnavailable("torchvision is not installed: pip install torchvision") from exc
        try:
            if "." in self.weights:
                return tvm.get_weight(self.weights)
            return tvm.get_model_weights(self.model)[self.weights]
        except (KeyError, ValueError) as exc:
            raise TaskUnavailable(
                f"task {self.name!r}: torchvision has no weights {self.weights!r} for model {self.model!r} ({exc})"
            ) from exc

    def weights_file(self) -> Path | None:
        """Where torch hub keeps (or would keep) the weight file."""
        w = self.weights_enum()
        if w is None:
            return None
        import torch.hub

        return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(w.url)

    def fetch_weights(self) -> Path | None:
        """Download the weights into the torch hub cache (checked against the hash in the file name)."""
        w, target = self.weights_enum(), self.weights_file()
        if w is None or target is None or target.is_file():
            return target
        import torch.hub

        target.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(w.url, str(target), hash_prefix=target.stem.split("-")[-1])
        return target

    def weight_files(self) -> dict[str, Path]:
        target = self.weights_file()
        return {} if target is None else {"network": target}

    def unavailable_reason(self) -> str | None:
        try:
            import torchvision.models as tvm
        except ImportError:
            return "torchvision is not installed: pip install torch torchvision"
        if self.model not in tvm.list_models(module=tvm.detection):
            return f"torchvision has no detection model {self.model!r} (it has {tvm.list_models(module=tvm.detection)})"
        try:
            target = self.weights_file()
        except TaskUnavailable as exc:
            return str(exc)
        if target is not None and not target.is_file():
            return (
                f"the weights of {self.model} ({self.weights_enum()}) are not in the torch hub cache: {target} is "
                f"missing (TORCH_HOME={os.environ.get('TORCH_HOME', '<unset: ~/.cache/torch>')}). Download "
                f"{self.weights_enum().url} into {target.parent}, or set TORCH_HOME to a folder holding "
                f"hub/checkpoints/{target.name}"
            )
        return None

    def categories(self) -> list[tuple[int, str]]:
        w = self.weights_enum()
        if w is None:
            return list(COCO80)
        return [(i, n) for i, n in enumerate(w.meta["categories"]) if n not in _NOT_A_CLASS]

    # --- the network ---
    def resolved_device(self) -> str:
        return resolve_device(self.device)

    def build_network(self) -> torch.nn.Module:
        """The torch module on ``device``: differentiable, trainable as usual."""
        import torchvision.models as tvm

        kwargs: dict[str, Any] = {
            "box_score_thresh": self.score_threshold,
            "box_nms_thresh": self.nms_iou,
            "box_detections_per_img": self.max_detections,
        }
        if self.min_size is not None:
            kwargs["min_size"] = int(self.min_size)
        if self.max_size is not None:
            kwargs["max_size"] = int(self.max_size)
        w = self.weights_enum()
        if w is None:
            kwargs.update(weights_backbone=None, num_classes=91)
        # with the file in the hub cache, torchvision loads it without touching the network
        net = tvm.get_model(self.model, weights=w, **kwargs)
        return net.to(self.resolved_device()).eval()

    def to_tensor(self, image: np.ndarray) -> torch.Tensor:
        import torch

        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div(255.0)

    def _detections(self, out: Mapping[str, Any], names: Mapping[int, str]) -> tuple[list[dict], list[int]]:
        boxes = out["boxes"].detach().float().cpu().numpy()
        scores = out["scores"].detach().float().cpu().numpy()
        labels = out["labels"].detach().cpu().numpy()
        finite = np.isfinite(boxes).all(axis=1) & np.isfinite(scores)
        self._count_nonfinite(int((~finite).sum()))
        known = np.array([int(c) in names for c in labels], dtype=bool)
        self.dropped_not_a_class += int((finite & ~known).sum())
        kept = np.nonzero(finite & known)[0]
        dets = [
            _round_detection(
                boxes[i, 0], boxes[i, 1], boxes[i, 2] - boxes[i, 0], boxes[i, 3] - boxes[i, 1], scores[i], labels[i]
            )
            for i in kept
        ]
        return dets, [int(i) for i in kept]

    def _run(self, images: Sequence[np.ndarray]) -> list[Mapping[str, Any]]:
        import torch

        net = self.network
        device = next(net.parameters()).device
        was_training = net.training
        net.eval()
        try:
            with torch.inference_mode(), autocast(device, self.autocast):
                return net([self.to_tensor(img).to(device) for img in images])
        finally:
            net.train(was_training)

    def predict(self, images: Sequence[np.ndarray]) -> list[Any]:
        names = dict(self.categories())
        out: list[Any] = []
        step = max(1, self.batch_size)
        for start in range(0, len(images), step):
            for result in self._run(images[start : start + step]):
                out.append(self._detections(result, names)[0])
        return out

    def describe(self) -> str:
        return self.description or f"{self.name} (torchvision {self.model}, weights {self.weights})"

    def versions(self) -> dict[str, str]:
        out = installed_versions("torch", "torchvision")
        if self.weights is not None:
            try:
                out["weights"] = str(self.weights_enum())
            except TaskUnavailable:
                pass
        return out


class TorchvisionInstanceSegmenter(TorchvisionDetector):
    """torchvision Mask R-CNN: masks (headline ``mAP`` = mask AP) and boxes (``bbox_mAP``...).

    Masks are the mask head's probabilities at the image size thresholded at
    ``mask_threshold`` (0.5, as torchvision's reference evaluation), stored as COCO RLE.
    """

    kind: ClassVar[str] = INSTANCE_SEGMENTATION
    metrics: ClassVar[tuple[str, ...]] = MASK_METRICS
    iou_types: ClassVar[tuple[str, ...]] = (coco_eval.SEGM, coco_eval.BBOX)
    default_model: ClassVar[str] = "maskrcnn_resnet50_fpn"

    def evaluate(self, predictions: Mapping[str, Any], references: Mapping[str, Any]) -> dict[str, float]:
        scores = super().evaluate(predictions, references)
        return {k: v for k, v in scores.items() if k in self.metrics}

    def predict(self, images: Sequence[np.ndarray]) -> list[Any]:
        from pycocotools import mask as mask_utils

        names = dict(self.categories())
        out: list[Any] = []
        step = max(1, self.batch_size)
        for start in range(0, len(images), step):
            for result in self._run(images[start : start + step]):
                if "masks" not in result:
                    raise ValueError(f"task {self.name!r}: {self.model} gives no masks (use a Mask R-CNN model)")
                dets, kept = self._detections(result, names)
                masks = (result["masks"][kept, 0] > self.mask_threshold).cpu().numpy()
                if len(kept):
                    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
                    for det, rle in zip(dets, rles):
                        det["segmentation"] = {
                            "size": [int(v) for v in rle["size"]],
                            "counts": rle["counts"].decode("ascii"),
                        }
                out.append(dets)
        return out
