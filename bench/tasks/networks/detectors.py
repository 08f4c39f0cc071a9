"""One-stage detectors' raw heads decoded here (YOLOX, NanoDet), class-aware NMS and postprocessing, and label maps:
what turns an ONNX detector's outputs into COCO detections.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.datasets.coco import COCO80
from bench.tasks.base import TaskUnavailable


def grid_points(input_hw: tuple[int, int], strides: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cell column, row and stride of every output row: strides in order, each grid row-major."""
    xs, ys, ss = [], [], []
    for s in strides:
        h, w = math.ceil(input_hw[0] / s), math.ceil(input_hw[1] / s)
        yy, xx = np.mgrid[0:h, 0:w]
        xs.append(xx.ravel())
        ys.append(yy.ravel())
        ss.append(np.full(h * w, s))
    return (np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.float32), np.concatenate(ss))


def decode_yolox(output: np.ndarray, input_hw: tuple[int, int], strides: Sequence[int] = (8, 16, 32)):
    """YOLOX raw head ``[N, 5 + C]`` (tx, ty, tw, th, obj, cls...; obj/cls sigmoid-ed) -> xyxy boxes, scores [N, C].

    Centre = (t + cell) * stride, size = exp(t) * stride, in input pixels; score = obj * cls.
    """
    out = np.asarray(output, dtype=np.float32)
    out = out.reshape(-1, out.shape[-1])
    x, y, s = grid_points(input_hw, strides)
    if len(x) != len(out):
        raise ValueError(
            f"YOLOX output has {len(out)} rows; input {input_hw} with strides {tuple(strides)} gives {len(x)}"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        cx = (out[:, 0] + x) * s
        cy = (out[:, 1] + y) * s
        w = np.exp(out[:, 2]) * s
        h = np.exp(out[:, 3]) * s
        scores = out[:, 4:5] * out[:, 5:]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    return boxes, scores


def nanodet_output_roles(
    shapes: Sequence[Sequence[int]], input_hw: tuple[int, int], strides: Sequence[int], num_bins: int
) -> tuple[list[int], list[int]]:
    """Indices of the class-score and box-distribution outputs per stride, from per-image ``[N, C]`` shapes."""
    cls, reg = [], []
    for s in strides:
        n = math.ceil(input_hw[0] / s) * math.ceil(input_hw[1] / s)
        box = [i for i, sh in enumerate(shapes) if tuple(sh) == (n, 4 * num_bins)]
        score = [i for i, sh in enumerate(shapes) if len(sh) == 2 and sh[0] == n and sh[1] != 4 * num_bins]
        if len(box) != 1 or len(score) != 1:
            raise ValueError(
                f"NanoDet outputs {[tuple(sh) for sh in shapes]}: expected one [{n}, C] and one "
                f"[{n}, {4 * num_bins}] for stride {s}"
            )
        cls.append(score[0])
        reg.append(box[0])
    return cls, reg


def split_nanodet_outputs(
    outputs: Sequence[np.ndarray], input_hw: tuple[int, int], strides: Sequence[int], num_bins: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Class-score and box-distribution tensors per stride, found by shape (export names are unreliable)."""
    arrays = [np.asarray(o, dtype=np.float32) for o in outputs]
    arrays = [a[0] if a.ndim == 3 and a.shape[0] == 1 else a for a in arrays]
    cls, reg = nanodet_output_roles([a.shape for a in arrays], input_hw, strides, num_bins)
    return [arrays[i] for i in cls], [arrays[i] for i in reg]


def decode_nanodet(
    outputs: Sequence[np.ndarray], input_hw: tuple[int, int], strides: Sequence[int] = (8, 16, 32), reg_max: int = 7
):
    """NanoDet (GFL head) -> xyxy boxes, scores [N, C].

    Distances (left, top, right, bottom) = stride * E[k] under the softmax over
    ``reg_max + 1`` bins, from the point (x * s + (s - 1) / 2, y * s + (s - 1) / 2).
    """
    bins = reg_max + 1
    cls, reg = split_nanodet_outputs(outputs, input_hw, strides, bins)
    x, y, s = grid_points(input_hw, strides)
    scores = np.concatenate(cls, axis=0)
    logits = np.concatenate(reg, axis=0).reshape(-1, 4, bins)
    with np.errstate(over="ignore", invalid="ignore"):
        logits = logits - logits.max(axis=2, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=2, keepdims=True)
        dist = (p * np.arange(bins, dtype=np.float32)).sum(axis=2) * s[:, None]
    cx = x * s + (s - 1) / 2
    cy = y * s + (s - 1) / 2
    boxes = np.stack([cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]], axis=1)
    return boxes, scores


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_keep: int | None = None) -> np.ndarray:
    """Greedy NMS (torchvision's rule: drop boxes with IoU > threshold); indices kept, best first.

    Boxes are picked in score order, so stopping after ``max_keep`` gives the
    same first ``max_keep`` as running to the end.
    """
    x1, y1, x2, y2 = boxes.T
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size and (max_keep is None or len(keep) < max_keep):
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        union = areas[i] + areas[rest] - inter
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(
    boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou_threshold: float, max_keep: int | None = None
) -> np.ndarray:
    """Class-wise NMS: boxes of different labels never suppress each other."""
    if boxes.size == 0:
        return np.zeros(0, dtype=np.int64)
    # shift each class to its own disjoint range (wider than all boxes, negative coordinates included)
    offset = labels.astype(np.float64)[:, None] * (float(boxes.max()) - float(boxes.min()) + 1.0)
    return nms(boxes.astype(np.float64) + offset, scores, iou_threshold, max_keep)


def postprocess(
    boxes: np.ndarray,
    scores: np.ndarray,
    score_threshold: float,
    nms_iou: float,
    max_detections: int,
    multi_label: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Threshold, class-wise NMS, top ``max_detections``: boxes, scores, class indices, and the non-finite count.

    ``multi_label``: every class above the threshold is a candidate (NanoDet's
    and mmdet's rule); else only each box's best class (YOLOX's own eval).
    """
    finite = np.isfinite(boxes).all(axis=1) & np.isfinite(scores).all(axis=1)
    dropped = int((~finite).sum())
    boxes, scores = boxes[finite], scores[finite]
    if multi_label:
        rows, labels = np.nonzero(scores > score_threshold)
        cand_scores = scores[rows, labels]
    else:
        labels = scores.argmax(axis=1) if len(scores) else np.zeros(0, dtype=np.int64)
        cand_scores = scores[np.arange(len(scores)), labels]
        rows = np.nonzero(cand_scores > score_threshold)[0]
        labels, cand_scores = labels[rows], cand_scores[rows]
    cand_boxes = boxes[rows]
    keep = batched_nms(cand_boxes, cand_scores, labels, nms_iou, max_detections)
    return cand_boxes[keep], cand_scores[keep], labels[keep], dropped


def read_label_map(labels: str | os.PathLike | Sequence[Any] | None) -> list[tuple[int, str]]:
    """Class index -> (COCO category id, name).

    ``None``: the 80 COCO categories in ascending id order (YOLOX, NanoDet,
    YOLOv5...). A path: a TSV with a header naming ``index``, a category id
    column (``coco_category_id`` or ``category_id``) and ``name`` (as the assets'
    ``labels/coco80_classes.tsv``). A list: category ids (names from COCO) or
    ``[id, name]`` pairs.
    """
    if labels is None:
        return list(COCO80)
    names = dict(COCO80)
    if isinstance(labels, (str, os.PathLike)):
        path = Path(labels).expanduser()
        if not path.is_file():
            raise TaskUnavailable(f"label map {path} not found")
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if not rows:
            raise ValueError(f"label map {path}: no rows")
        id_key = next((k for k in ("coco_category_id", "category_id") if k in rows[0]), None)
        if id_key is None or "index" not in rows[0]:
            raise ValueError(f"label map {path}: needs columns index, coco_category_id (or category_id), name")
        try:
            by_index = {int(r["index"]): (int(r[id_key]), r.get("name") or names.get(int(r[id_key]), "")) for r in rows}
        except (TypeError, ValueError) as exc:
            raise ValueError(f"label map {path}: {exc}") from exc
        if sorted(by_index) != list(range(len(by_index))):
            raise ValueError(f"label map {path}: indices must be 0..{len(by_index) - 1}")
        return [by_index[i] for i in range(len(by_index))]
    out = []
    for item in labels:
        if isinstance(item, (list, tuple)):
            out.append((int(item[0]), str(item[1])))
        else:
            out.append((int(item), names.get(int(item), str(item))))
    return out


DECODERS = ("yolox", "nanodet")
