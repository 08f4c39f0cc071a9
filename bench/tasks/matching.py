"""Local-descriptor matching: the machine task a compact descriptor stream (CDVS-like) is measured by.

Visual search in the spirit of MPEG CDVS (survey 000 [49]) matches the local
descriptors of a query against those of a database image and verifies the
matches geometrically. Here the database image is the uncompressed one
(fidelity protocol): the reference is the descriptors OpenCV extracts from
it, the prediction is the descriptors of what a target received (extracted
from a decoded image, or decoded from a descriptor stream).

Per image, the query's descriptors are matched to the reference's (nearest
neighbour with Lowe's ratio test; Hamming distance for binary ORB, L2 for
SIFT), a homography is fitted with RANSAC, and the pair counts as *matched*
when at least ``min_inliers`` matches agree with it and it moves the image's
corners by at most ``corner_tolerance`` pixels (the images share one
geometry, so the true homography is the identity). Metrics:

- ``match_success``: share of images matched (the headline);
- ``inlier_ratio``: mean of inliers / query keypoints;
- ``inliers``: mean number of inlier matches.

A prediction is ``{"detector", "height", "width", "points": [[x, y], ...],
"descriptors": base64 of the N x D uint8 array}``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import cv2
import numpy as np

from bench.tasks.base import Task

#: descriptor length in bytes and whether it is binary (Hamming distance)
DETECTORS: dict[str, tuple[int, bool]] = {"orb": (32, True), "sift": (128, False)}


@dataclass
class LocalFeatures:
    """Keypoint positions (N x 2 float, x then y, in pixels) and their N x D uint8 descriptors."""

    detector: str
    height: int
    width: int
    points: np.ndarray
    descriptors: np.ndarray

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ValueError(f"unknown detector {self.detector!r}; known: {sorted(DETECTORS)}")
        dim = DETECTORS[self.detector][0]
        self.points = np.asarray(self.points, dtype=np.float32).reshape(-1, 2)
        self.descriptors = np.asarray(self.descriptors, dtype=np.uint8).reshape(-1, dim)
        if len(self.points) != len(self.descriptors):
            raise ValueError(f"{len(self.points)} keypoints but {len(self.descriptors)} descriptors")

    def to_json(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "height": int(self.height),
            "width": int(self.width),
            "points": [[round(float(x), 3), round(float(y), 3)] for x, y in self.points],
            "descriptors": base64.b64encode(self.descriptors.tobytes()).decode("ascii"),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LocalFeatures:
        try:
            detector = data["detector"]
            raw = np.frombuffer(base64.b64decode(data["descriptors"], validate=True), dtype=np.uint8)
            return cls(detector, int(data["height"]), int(data["width"]), np.array(data["points"]), raw)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a matching prediction ({type(exc).__name__}: {exc})") from exc


def extract(image: np.ndarray, detector: str = "orb", max_keypoints: int = 1000) -> LocalFeatures:
    """The strongest ``max_keypoints`` keypoints of an RGB uint8 image, best first, with uint8 descriptors.

    SIFT's float descriptors are rounded to uint8 (OpenCV's own values are
    integers in 0..255 already, so this loses nothing).
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 image, got {image.shape} {image.dtype}")
    if max_keypoints < 1:
        raise ValueError(f"max_keypoints must be at least 1, got {max_keypoints}")
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if detector == "orb":
        extractor = cv2.ORB_create(nfeatures=max_keypoints)
    elif detector == "sift":
        extractor = cv2.SIFT_create(nfeatures=max_keypoints)
    else:
        raise ValueError(f"unknown detector {detector!r}; known: {sorted(DETECTORS)}")
    keypoints, descriptors = extractor.detectAndCompute(gray, None)
    dim = DETECTORS[detector][0]
    if descriptors is None or not keypoints:
        return LocalFeatures(detector, *image.shape[:2], np.zeros((0, 2)), np.zeros((0, dim), np.uint8))
    order = sorted(range(len(keypoints)), key=lambda i: -keypoints[i].response)[:max_keypoints]
    points = np.array([keypoints[i].pt for i in order], dtype=np.float32)
    desc = np.clip(np.rint(descriptors[order]), 0, 255).astype(np.uint8)
    return LocalFeatures(detector, image.shape[0], image.shape[1], points, desc)


@dataclass
class MatchResult:
    """What matching one query against one reference found."""

    matches: int
    inliers: int
    matched: bool


def match(
    query: LocalFeatures,
    reference: LocalFeatures,
    ratio: float = 0.8,
    ransac_threshold: float = 3.0,
    min_inliers: int = 15,
    corner_tolerance: float = 5.0,
) -> MatchResult:
    """Ratio-test matches, RANSAC homography, and whether it verifies (see the module docstring)."""
    if query.detector != reference.detector:
        raise ValueError(f"cannot match {query.detector} descriptors against {reference.detector} ones")
    if len(query.points) < 2 or len(reference.points) < 2:
        return MatchResult(0, 0, False)
    binary = DETECTORS[query.detector][1]
    norm = cv2.NORM_HAMMING if binary else cv2.NORM_L2
    qd = query.descriptors if binary else query.descriptors.astype(np.float32)
    rd = reference.descriptors if binary else reference.descriptors.astype(np.float32)
    pairs = cv2.BFMatcher(norm).knnMatch(qd, rd, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < ratio * p[1].distance]
    if len(good) < 4:
        return MatchResult(len(good), 0, False)
    src = query.points[[m.queryIdx for m in good]].reshape(-1, 1, 2)
    dst = reference.points[[m.trainIdx for m in good]].reshape(-1, 1, 2)
    homography, mask = cv2.findHomography(src, dst, cv2.RANSAC, ransac_threshold)
    if homography is None:
        return MatchResult(len(good), 0, False)
    inliers = int(mask.sum())
    h, w = reference.height, reference.width
    corners = np.array([[[0, 0]], [[w - 1, 0]], [[w - 1, h - 1]], [[0, h - 1]]], dtype=np.float64)
    moved = cv2.perspectiveTransform(corners, homography)
    shift = float(np.max(np.linalg.norm(moved - corners, axis=2)))
    return MatchResult(len(good), inliers, inliers >= min_inliers and shift <= corner_tolerance)


class DescriptorMatching(Task):
    """Match the local descriptors of what a target received against the uncompressed image's (fidelity)."""

    kind = "matching"
    metrics: ClassVar[tuple[str, ...]] = ("match_success", "inlier_ratio", "inliers")

    def __init__(
        self,
        name: str = "matching",
        detector: str = "orb",
        max_keypoints: int = 1000,
        ratio: float = 0.8,
        ransac_threshold: float = 3.0,
        min_inliers: int = 15,
        corner_tolerance: float = 5.0,
        batch_size: int = 8,
        **options: Any,
    ):
        super().__init__(name, batch_size=batch_size, **options)
        if detector not in DETECTORS:
            raise ValueError(f"task {name!r}: unknown detector {detector!r}; known: {sorted(DETECTORS)}")
        self.detector = detector
        self.max_keypoints = int(max_keypoints)
        self.ratio = float(ratio)
        self.ransac_threshold = float(ransac_threshold)
        self.min_inliers = int(min_inliers)
        self.corner_tolerance = float(corner_tolerance)

    def predict(self, images: Sequence[np.ndarray]) -> list[Any]:
        return [extract(img, self.detector, self.max_keypoints).to_json() for img in images]

    def evaluate(self, predictions: Mapping[str, Any], references: Mapping[str, Any]) -> dict[str, float]:
        results, ratios = [], []
        for sample_id, prediction in predictions.items():
            if sample_id not in references:
                raise KeyError(f"no reference for sample {sample_id!r}")
            query = LocalFeatures.from_json(prediction)
            ref = LocalFeatures.from_json(references[sample_id])
            r = match(query, ref, self.ratio, self.ransac_threshold, self.min_inliers, self.corner_tolerance)
            results.append(r)
            ratios.append(r.inliers / max(1, len(query.points)))
        if not results:
            return {m: float("nan") for m in self.metrics}
        return {
            "match_success": float(np.mean([r.matched for r in results])),
            "inlier_ratio": float(np.mean(ratios)),
            "inliers": float(np.mean([r.inliers for r in results])),
        }

    def describe(self) -> str:
        return f"{self.name} ({self.detector.upper()}, {self.max_keypoints} keypoints, ratio {self.ratio:g})"

    def versions(self) -> dict[str, str]:
        return {"opencv": cv2.__version__}
