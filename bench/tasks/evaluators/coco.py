"""COCO-style scores of detections and instance masks, computed by pycocotools' ``COCOeval``.

Predictions are per sample a list of ``{"bbox": [x, y, w, h], "score",
"category_id"}`` in the image's pixels (plus ``"segmentation"``, a COCO RLE
with ``counts`` as a string, for instance masks). References are either

- ground truth from :class:`bench.datasets.coco.CocoDetection`:
  ``{"annotation_file", "image_id", ...}`` per sample. The file's ``COCO`` is
  loaded once per process and ``COCOeval`` runs with ``params.imgIds`` set to
  the evaluated images, exactly as the official evaluation of a subset; or
- fidelity references (``{"objects": [{"bbox", "category_id",
  "segmentation"?}, ...]}`` per sample, made by
  :func:`reference_from_prediction`): a ground truth is built from them, one
  image per sample, every object ``iscrowd = 0`` with ``area`` = its mask area
  when it has a mask (as COCO's own annotations), else its box area.

Scores pycocotools reports as -1 (no ground truth in any category) become NaN.
A prediction whose category the ground truth does not know is an error, not a
silent miss: pycocotools would just never look at it.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

#: ``COCOeval.stats`` in order, under the names results use
STAT_NAMES: tuple[str, ...] = (
    "mAP",
    "mAP50",
    "mAP75",
    "mAP_small",
    "mAP_medium",
    "mAP_large",
    "AR1",
    "AR10",
    "AR100",
    "AR_small",
    "AR_medium",
    "AR_large",
)
BBOX = "bbox"
SEGM = "segm"


def _nan_if_missing(value: float) -> float:
    return math.nan if value < 0 else float(value)


def _is_fidelity(ref: Any) -> bool:
    return isinstance(ref, Mapping) and "objects" in ref


def _is_ground_truth(ref: Any) -> bool:
    return isinstance(ref, Mapping) and "annotation_file" in ref and "image_id" in ref


def reference_from_prediction(prediction: Sequence[Mapping[str, Any]], score_threshold: float) -> dict[str, Any]:
    """The objects of a prediction on the uncompressed image that count as ground truth (score >= threshold)."""
    objects = []
    for det in prediction or []:
        if float(det["score"]) >= score_threshold:
            obj = {"bbox": list(det["bbox"]), "category_id": int(det["category_id"])}
            if "segmentation" in det:
                obj["segmentation"] = det["segmentation"]
            objects.append(obj)
    return {"objects": objects, "score_threshold": score_threshold}


def _fidelity_ground_truth(
    references: Mapping[str, Any], sample_ids: list[str], categories: Sequence[tuple[int, str]]
) -> tuple[COCO, dict[str, int]]:
    from pycocotools import mask as mask_utils

    from bench.datasets.coco import coco_from_dict

    known = {cid for cid, _ in categories}
    images, annotations = [], []
    image_ids = {sid: i + 1 for i, sid in enumerate(sample_ids)}
    for sid in sample_ids:
        height = width = 0
        for obj in references[sid]["objects"]:
            if obj["category_id"] not in known:
                raise ValueError(
                    f"fidelity reference of {sid!r}: category_id {obj['category_id']} is not a task category"
                )
            ann = {
                "id": len(annotations) + 1,
                "image_id": image_ids[sid],
                "category_id": int(obj["category_id"]),
                "bbox": [float(v) for v in obj["bbox"]],
                "iscrowd": 0,
            }
            if "segmentation" in obj:
                ann["segmentation"] = obj["segmentation"]
                ann["area"] = float(mask_utils.area(obj["segmentation"]))
                height, width = obj["segmentation"]["size"]
            else:
                ann["area"] = ann["bbox"][2] * ann["bbox"][3]
            annotations.append(ann)
        images.append({"id": image_ids[sid], "file_name": sid, "height": height, "width": width})
    cats = [{"id": cid, "name": name} for cid, name in categories]
    return coco_from_dict({"images": images, "annotations": annotations, "categories": cats}), image_ids


def ground_truth(
    references: Mapping[str, Any], sample_ids: list[str], categories: Sequence[tuple[int, str]] | None = None
) -> tuple[COCO, dict[str, int]]:
    """The ``COCO`` ground truth of ``references`` and the COCO image id of each sample."""
    refs = [references[sid] for sid in sample_ids]
    if all(_is_ground_truth(r) for r in refs):
        from bench.datasets.coco import load_annotations

        files = {r["annotation_file"] for r in refs}
        if len(files) > 1:
            raise ValueError(f"references come from {len(files)} annotation files ({sorted(files)[:2]}, ...)")
        coco = load_annotations(files.pop())
        image_ids = {sid: int(references[sid]["image_id"]) for sid in sample_ids}
        unknown = [sid for sid, iid in image_ids.items() if iid not in coco.imgs]
        if unknown:
            raise ValueError(f"image id {image_ids[unknown[0]]} of {unknown[0]!r} is not in the annotation file")
        if len(set(image_ids.values())) != len(image_ids):
            raise ValueError("two samples share one COCO image id")
        return coco, image_ids
    if all(_is_fidelity(r) for r in refs):
        if categories is None:
            raise ValueError("fidelity references need the task's category list")
        return _fidelity_ground_truth(references, sample_ids, categories)
    raise ValueError(
        "references must all be COCO ground truth ({'annotation_file', 'image_id'}) or all fidelity references "
        "({'objects'}); got a mix or something else"
    )


def _detections(
    predictions: Mapping[str, Any], image_ids: Mapping[str, int], known: set[int], iou_type: str
) -> list[dict[str, Any]]:
    """COCO result entries for ``iou_type``, checked: finite numbers, known categories, masks where needed."""
    out = []
    for sid, image_id in image_ids.items():
        prediction = predictions[sid]
        if prediction is None:
            raise ValueError(f"sample {sid!r} has no prediction (None)")
        for k, det in enumerate(prediction):
            where = f"prediction {k} of sample {sid!r}"
            bbox = det.get("bbox")
            if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4):
                raise ValueError(f"{where}: bbox must be [x, y, w, h], not {bbox!r}")
            bbox = [float(v) for v in bbox]
            score = float(det.get("score", math.nan))
            if not all(map(math.isfinite, [*bbox, score])):
                raise ValueError(f"{where}: non-finite bbox or score ({bbox}, {score})")
            cid = det.get("category_id")
            if cid not in known:
                raise ValueError(
                    f"{where}: category_id {cid!r} is not a ground-truth category (wrong label map?); "
                    "pycocotools would silently ignore it"
                )
            entry = {"image_id": image_id, "category_id": int(cid), "score": score}
            if iou_type == SEGM:
                if "segmentation" not in det:
                    raise ValueError(f"{where}: no 'segmentation' (RLE) for mask evaluation")
                # as detectron2 does: without the box, loadRes takes the area (and box) from the mask
                entry["segmentation"] = copy.copy(det["segmentation"])
            else:
                entry["bbox"] = bbox
            out.append(entry)
    return out


def run_cocoeval(gt: COCO, detections: list[dict[str, Any]], image_ids: Sequence[int], iou_type: str) -> COCOeval:
    """``COCOeval`` over ``image_ids`` (evaluated, accumulated, summarised; its printing silenced)."""
    from pycocotools.cocoeval import COCOeval

    from bench.datasets.coco import coco_from_dict

    with contextlib.redirect_stdout(io.StringIO()):
        if detections:
            dt = gt.loadRes(detections)
        else:  # loadRes cannot take an empty list
            dt = coco_from_dict({"images": list(gt.dataset["images"]), "annotations": [], "categories": []})
        evaluator = COCOeval(gt, dt, iou_type)
        evaluator.params.imgIds = sorted(image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def _check_keys(predictions: Mapping[str, Any], references: Mapping[str, Any]) -> list[str]:
    missing = [sid for sid in references if sid not in predictions]
    extra = [sid for sid in predictions if sid not in references]
    if missing or extra:
        raise ValueError(
            f"predictions and references must cover the same samples: {len(missing)} without a prediction "
            f"({missing[:3]}), {len(extra)} without a reference ({extra[:3]})"
        )
    return sorted(references)


def evaluate_coco(
    predictions: Mapping[str, Any],
    references: Mapping[str, Any],
    iou_types: Sequence[str] = (BBOX,),
    categories: Sequence[tuple[int, str]] | None = None,
) -> dict[str, float]:
    """COCO metrics of ``predictions``: the first IoU type's stats under their plain names (``mAP``, ...),
    the others' prefixed (``bbox_mAP``, ...)."""
    sample_ids = _check_keys(predictions, references)
    if not sample_ids:
        return {name: math.nan for name in STAT_NAMES}
    gt, image_ids = ground_truth(references, sample_ids, categories)
    known = set(gt.getCatIds())
    scores: dict[str, float] = {}
    for k, iou_type in enumerate(iou_types):
        evaluator = run_cocoeval(gt, _detections(predictions, image_ids, known, iou_type), image_ids.values(), iou_type)
        prefix = "" if k == 0 else f"{iou_type}_"
        scores.update({prefix + n: _nan_if_missing(v) for n, v in zip(STAT_NAMES, evaluator.stats)})
    return scores


def _mean_precision(p: np.ndarray) -> float:
    """AP from a slice of ``COCOeval.eval["precision"]`` (-1 marks 'no ground truth'), NaN when empty."""
    p = p[p > -1]
    return float(p.mean()) if p.size else math.nan


def per_category(evaluator: COCOeval, gt: COCO) -> dict[str, dict[str, float]]:
    """AP, AP50, AP75 (area all, 100 detections) and the ground-truth count of every category."""
    precision = evaluator.eval["precision"]  # [IoU thresholds, recall points, categories, areas, max dets]
    iou = evaluator.params.iouThrs
    counted = set(evaluator.params.imgIds)
    out = {}
    for k, cid in enumerate(evaluator.params.catIds):
        p = precision[:, :, k, 0, -1]
        anns = gt.loadAnns(gt.getAnnIds(catIds=[cid]))
        out[gt.cats[cid]["name"]] = {
            "category_id": cid,
            "AP": _mean_precision(p),
            "AP50": _mean_precision(p[np.isclose(iou, 0.5)]),
            "AP75": _mean_precision(p[np.isclose(iou, 0.75)]),
            "gt": sum(1 for a in anns if a["image_id"] in counted and not a.get("iscrowd")),
        }
    return out


def per_class_ap(
    predictions: Mapping[str, Any],
    references: Mapping[str, Any],
    iou_type: str = BBOX,
    categories: Sequence[tuple[int, str]] | None = None,
) -> dict[str, dict[str, float]]:
    """Per category name: ``{"category_id", "AP", "AP50", "AP75", "gt"}`` (AP NaN where it has no ground truth)."""
    sample_ids = _check_keys(predictions, references)
    gt, image_ids = ground_truth(references, sample_ids, categories)
    evaluator = run_cocoeval(
        gt, _detections(predictions, image_ids, set(gt.getCatIds()), iou_type), image_ids.values(), iou_type
    )
    return per_category(evaluator, gt)
