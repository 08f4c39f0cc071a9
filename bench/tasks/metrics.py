"""The metrics the harness's task evaluators return, declared (unit, direction, aggregation) for BD and reports.

A task's results are ``<task>/<metric>``; these declarations say how each ``<metric>`` reads. Scores that are
shares (mAP, mIoU, accuracies) are fractions in [0, 1]; BD reads them in percentage points. A plugin's task
declares its own metrics with :func:`bench.metrics.registry.register`.
"""

from __future__ import annotations

from bench.metrics.registry import CLIP, IMAGE, Metric, register


def share(name: str, description: str, aggregation: str = "dataset", media: tuple[str, ...] = (IMAGE,)) -> Metric:
    """A higher-is-better share in [0, 1]."""
    return register(
        Metric(name, "", True, media=media, aggregation=aggregation, bd="fraction", low=0.0, high=1.0,
               description=description)
    )  # fmt: skip


for _name in ("AP", "mAP", "mAP50", "mAP75", "mAP_small", "mAP_medium", "mAP_large"):
    share(_name, f"COCO {_name} (pycocotools COCOeval, boxes or masks)")
for _name in ("AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large"):
    share(_name, f"COCO {_name} (pycocotools COCOeval)")
for _name in ("bbox_mAP", "bbox_mAP50", "bbox_mAP75"):
    share(_name, f"COCO box {_name[5:]} of an instance segmenter")
share("mIoU", "mean IoU over classes from one confusion matrix (cityscapesScripts' convention)")
share("IoU", "IoU of the foreground (person) mask")
share("pixel_acc", "share of labelled pixels predicted right")
share("top1", "top-1 accuracy (ground truth) or agreement with the uncompressed prediction (fidelity)", "mean",
      (IMAGE, CLIP))  # fmt: skip
share("top5", "top-5 accuracy", "mean", (IMAGE, CLIP))
share("AP50", "face detection AP at IoU 0.5")
share("recall50", "face detection recall at IoU 0.5")
share("verification_acc", "share of faces verified as the same person (embedding distance under a threshold)", "mean")
share("PCK", "pose keypoints within 0.05 of the image diagonal", "mean")
share("tpr@fpr0.01", "matching: true-match rate at a 1 % false-match rate")
share("tpr", "matching: true-match rate at the inlier threshold")
register(Metric("fpr", "", False, aggregation="dataset", bd="fraction", low=0.0, high=1.0,
                description="matching: false-match rate at the inlier threshold"))  # fmt: skip
register(Metric("NME", "", False, aggregation="mean", low=0.0,
                description="landmark error over the inter-ocular distance (misses capped at 1)"))  # fmt: skip
register(Metric("NKE", "", False, aggregation="mean", low=0.0, description="pose keypoint error"))
register(Metric("cosine_similarity", "", True, aggregation="mean", low=-1.0, high=1.0,
                description="embedding cosine similarity with the uncompressed image's"))  # fmt: skip
register(Metric("inliers", "", True, aggregation="mean", low=0.0,
                description="matching: verified inliers of the true pairs"))  # fmt: skip
register(Metric("database", "", True, aggregation="dataset", description="matching: database size (a count)"))
