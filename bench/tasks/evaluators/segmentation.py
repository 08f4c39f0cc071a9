"""Semantic segmentation scored as Cityscapes scores it: one confusion matrix over every labelled pixel, mIoU over
classes (cityscapesScripts' convention), pixel accuracy, IoU per class.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from bench.tasks.masks import (
    IGNORE_INDEX,
    PNG_KEY,
    LabelMapError,
    decode_label_png,
    read_label_file,
)

SEGMENTATION_METRICS = ("mIoU", "pixel_acc")


#: how a ground-truth target's file is turned into evaluation ids (encoding -> 256-entry LUT factory)
LABEL_ENCODINGS = {
    "trainIds": None,
    "cityscapes-labelIds": ("bench.datasets.cityscapes", "label_id_to_train_id_lut"),
}


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
