"""Local-descriptor retrieval and verification: the task a compact descriptor stream (CDVS-like) is measured by.

Visual search in the spirit of MPEG CDVS (ISO/IEC 15938-13; survey 000 [49])
asks two questions of a query's local descriptors: which database image shows
the same scene (retrieval), and does a given pair show the same scene (pair
verification). This task asks both, as a user of the decoded data would:

- **Query**: the descriptors a target received. For an image codec (SBAR) the
  task extracts them from the decoded image; a descriptor stream
  (``feature-stream-cdvs``) decodes them from its own bytes. Either way they
  are the prediction, ``{"detector", "height", "width", "points": [[x, y],
  ...], "descriptors": base64 of the N x D uint8 array}`` (format unchanged
  since the first version of this task).
- **Database**: the task's descriptors of the *uncompressed* image of every
  evaluated sample (the runner computes them once and caches them as the
  references), plus ``distractors``: photographs and textures that
  scikit-image ships (no download). A distractor that duplicates a database
  image (verified inliers >= half the smaller keypoint set) is left out, so
  exactly one entry is relevant to each query: the uncompressed image of the
  query's own sample. Every other sample's image is a distractor too.
- **Score** of a (query, entry) pair: the number of inliers of a RANSAC
  homography fitted to the nearest-neighbour matches that pass Lowe's ratio
  test (Hamming distance for binary ORB, L2 for SIFT); 0 with fewer than 4
  such matches. No pose is assumed: a query may show its scene moved, scaled or
  seen from elsewhere.

Metrics (definitions as in the CDVS evaluation framework, MPEG N12202, 2011,
and Duan et al., "Overview of the MPEG-CDVS standard", IEEE TIP 25(1), 2016:
retrieval by mAP and precision at 1, pair matching by the true-positive rate
at a false-positive rate of 1 %):

- ``mAP`` (headline): mean over queries of the average precision of the
  database ranked by score (Manning et al., Introduction to Information
  Retrieval, 8.4). With one relevant entry AP = 1 / its rank; ties rank it
  after every entry scoring as high (pessimistic, as scikit-learn's
  ``average_precision_score``), so an unmatched query scores 1 / database size.
- ``top1``: share of queries whose relevant entry ranks first, alone
  (precision at 1, which equals recall at 1 here).
- ``tpr@fpr0.01``: pair verification over every (query, entry) pair; matching
  pairs are (query i, image i), the rest non-matching. A pair is accepted when
  its score exceeds the lowest threshold that accepts at most 1 % of the
  non-matching pairs (the ROC operating point at FPR <= 1 %); the share of
  matching pairs accepted.
- ``tpr``, ``fpr``: the same rates at the fixed decision score >= ``min_inliers``.
- ``inliers``: mean score of the matching pairs.
- ``database``: entries ranked per query (evaluated samples + distractors kept).

The runner records the protocol as ``fidelity`` because the database comes
from this task's own extraction on the uncompressed images; the retrieval
ground truth is the samples' identity, not the task's output.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import cv2
import numpy as np

from bench.tasks.base import Task

#: descriptor length in bytes and whether it is binary (Hamming distance)
DETECTORS: dict[str, tuple[int, bool]] = {"orb": (32, True), "sift": (128, False)}

#: scikit-image sample images inside its wheel (no download), usable as distractors
SHIPPED_IMAGES: tuple[str, ...] = (
    "astronaut", "brick", "camera", "checkerboard", "chelsea", "coffee", "coins", "grass", "gravel",
    "hubble_deep_field", "immunohistochemistry", "logo", "moon", "page", "rocket", "text",
)  # fmt: skip

#: the default distractors: photographs, textures and one graphic (the synthetic checkerboard left out)
DEFAULT_DISTRACTORS: tuple[str, ...] = tuple(name for name in SHIPPED_IMAGES if name != "checkerboard")

#: a distractor matching a database image with at least this share of the smaller keypoint set is a duplicate
DUPLICATE_SHARE = 0.5

#: the false-positive rate of the ``tpr@fpr`` operating point
FPR_TARGET = 0.01


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

    def digest(self) -> bytes:
        """SHA-256 of the detector, size, points and descriptors (what identifies a database entry)."""
        h = hashlib.sha256(f"{self.detector}:{self.height}x{self.width}:{len(self.points)}".encode())
        h.update(self.points.tobytes())
        h.update(self.descriptors.tobytes())
        return h.digest()


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
    """What matching one query against one database entry found: ratio-test matches and RANSAC inliers."""

    matches: int
    inliers: int


def match(
    query: LocalFeatures, reference: LocalFeatures, ratio: float = 0.8, ransac_threshold: float = 3.0
) -> MatchResult:
    """Ratio-test matches from ``query`` to ``reference`` and the inliers of a RANSAC homography through them."""
    if query.detector != reference.detector:
        raise ValueError(f"cannot match {query.detector} descriptors against {reference.detector} ones")
    if len(query.points) < 2 or len(reference.points) < 2:
        return MatchResult(0, 0)
    binary = DETECTORS[query.detector][1]
    norm = cv2.NORM_HAMMING if binary else cv2.NORM_L2
    qd = query.descriptors if binary else query.descriptors.astype(np.float32)
    rd = reference.descriptors if binary else reference.descriptors.astype(np.float32)
    pairs = cv2.BFMatcher(norm).knnMatch(qd, rd, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < ratio * p[1].distance]
    if len(good) < 4:
        return MatchResult(len(good), 0)
    src = query.points[[m.queryIdx for m in good]].reshape(-1, 1, 2)
    dst = reference.points[[m.trainIdx for m in good]].reshape(-1, 1, 2)
    homography, mask = cv2.findHomography(src, dst, cv2.RANSAC, ransac_threshold)
    if homography is None:
        return MatchResult(len(good), 0)
    return MatchResult(len(good), int(mask.sum()))


def retrieval_metrics(scores: np.ndarray, relevant: Sequence[int], min_inliers: int) -> dict[str, float]:
    """Retrieval and verification metrics of a Q x D score matrix (module docstring), query q's entry ``relevant[q]``.

    Scores are verified inliers (higher: more similar).
    """
    scores = np.asarray(scores, dtype=np.float64)
    rel = np.asarray(relevant, dtype=np.int64)
    if scores.ndim != 2 or len(rel) != scores.shape[0]:
        raise ValueError(
            f"need a queries x database score matrix and one relevant entry per query; got {scores.shape}, {len(rel)}"
        )
    queries, size = scores.shape
    if queries == 0 or size == 0:
        raise ValueError("no queries or an empty database")
    if np.any((rel < 0) | (rel >= size)):
        raise ValueError(f"relevant entries {rel.tolist()} outside a database of {size}")
    rows = np.arange(queries)
    positive = scores[rows, rel]
    others = np.ones_like(scores, dtype=bool)
    others[rows, rel] = False
    # pessimistic ties: every other entry scoring at least as high ranks before the relevant one
    ranks = 1 + np.sum(others & (scores >= positive[:, None]), axis=1)
    negative = scores[others]
    if len(negative):
        allowed = int(np.floor(FPR_TARGET * len(negative) + 1e-9))
        ordered = np.sort(negative)[::-1]
        threshold = ordered[allowed] if allowed < len(ordered) else -np.inf
        tpr_at_fpr = float(np.mean(positive > threshold))
        fpr = float(np.mean(negative >= min_inliers))
    else:  # a database of one: nothing to confuse the query with
        tpr_at_fpr, fpr = float(np.mean(positive > 0)), 0.0
    return {
        "mAP": float(np.mean(1.0 / ranks)),
        "top1": float(np.mean(ranks == 1)),
        f"tpr@fpr{FPR_TARGET:g}": tpr_at_fpr,
        "tpr": float(np.mean(positive >= min_inliers)),
        "fpr": fpr,
        "inliers": float(np.mean(positive)),
        "database": float(size),
    }


def load_distractor(name: str) -> np.ndarray:
    """A scikit-image sample image (one of ``SHIPPED_IMAGES``) as H x W x 3 uint8 RGB."""
    if name not in SHIPPED_IMAGES:
        raise ValueError(f"unknown distractor {name!r}: choose scikit-image sample images from {list(SHIPPED_IMAGES)}")
    import skimage.data

    from bench.io.images import as_rgb8

    return as_rgb8(getattr(skimage.data, name)(), name=f"skimage.data.{name}")


class DescriptorMatching(Task):
    """Retrieve each query's uncompressed image among all evaluated images and distractors; verify pairs."""

    kind = "matching"
    metrics: ClassVar[tuple[str, ...]] = (
        "mAP", "top1", f"tpr@fpr{FPR_TARGET:g}", "tpr", "fpr", "inliers", "database",
    )  # fmt: skip
    #: ``evaluate`` wants every evaluated sample's reference, not only those with a query at this rate point:
    #: they form the database, which must not shrink when a query fails
    reference_database: ClassVar[bool] = True

    def __init__(
        self,
        name: str = "matching",
        detector: str = "orb",
        max_keypoints: int = 1000,
        ratio: float = 0.8,
        ransac_threshold: float = 3.0,
        min_inliers: int = 15,
        distractors: Sequence[str] = DEFAULT_DISTRACTORS,
        batch_size: int = 8,
        **options: Any,
    ):
        super().__init__(name, batch_size=batch_size, **options)
        if detector not in DETECTORS:
            raise ValueError(f"task {name!r}: unknown detector {detector!r}; known: {sorted(DETECTORS)}")
        unknown = [d for d in distractors if d not in SHIPPED_IMAGES]
        if unknown:
            raise ValueError(
                f"task {name!r}: unknown distractors {unknown}; choose scikit-image sample images from "
                f"{list(SHIPPED_IMAGES)}"
            )
        self.detector = detector
        self.max_keypoints = int(max_keypoints)
        self.ratio = float(ratio)
        self.ransac_threshold = float(ransac_threshold)
        self.min_inliers = int(min_inliers)
        self.distractors = list(dict.fromkeys(str(d) for d in distractors))
        self._distractor_features: list[tuple[str, LocalFeatures]] | None = None
        self._kept: dict[bytes, list[tuple[str, LocalFeatures]]] = {}

    def predict(self, images: Sequence[np.ndarray]) -> list[Any]:
        return [extract(img, self.detector, self.max_keypoints).to_json() for img in images]

    def match(self, query: LocalFeatures, entry: LocalFeatures) -> MatchResult:
        """``match`` with this task's ratio and RANSAC threshold."""
        return match(query, entry, self.ratio, self.ransac_threshold)

    def distractor_entries(self, references: Sequence[LocalFeatures]) -> list[tuple[str, LocalFeatures]]:
        """The distractors' features, less those that duplicate one of ``references`` (cached per reference set)."""
        if self._distractor_features is None:
            self._distractor_features = [
                (d, extract(load_distractor(d), self.detector, self.max_keypoints)) for d in self.distractors
            ]
        key = hashlib.sha256(b"".join(sorted(r.digest() for r in references))).digest()
        if key not in self._kept:
            self._kept[key] = [
                (name, feats)
                for name, feats in self._distractor_features
                if not any(
                    self.match(feats, ref).inliers >= DUPLICATE_SHARE * min(len(feats.points), len(ref.points)) > 0
                    for ref in references
                )
            ]
        return self._kept[key]

    def scores(
        self, predictions: Mapping[str, Any], references: Mapping[str, Any]
    ) -> tuple[np.ndarray, list[int], list[str]]:
        """The score matrix (queries in ``predictions`` order x database), each query's relevant entry, entry names.

        The database is every reference (sorted by sample id), then the distractors kept (``distractor:<name>``).
        """
        if not references:
            raise ValueError(f"task {self.name!r}: no references, so no database to search")
        missing = [sid for sid in predictions if sid not in references]
        if missing:
            raise KeyError(f"task {self.name!r}: no reference (database image) for samples {missing[:5]}")
        ids = sorted(references)
        database = []
        for sid in ids:
            try:
                database.append(LocalFeatures.from_json(references[sid]))
            except ValueError as exc:
                raise ValueError(f"task {self.name!r}: reference of sample {sid!r}: {exc}") from exc
        kept = self.distractor_entries(database)
        database += [feats for _, feats in kept]
        names = ids + [f"distractor:{name}" for name, _ in kept]
        index = {sid: k for k, sid in enumerate(ids)}
        matrix = np.zeros((len(predictions), len(database)))
        for q, (sid, prediction) in enumerate(predictions.items()):
            try:
                query = LocalFeatures.from_json(prediction)
            except ValueError as exc:
                raise ValueError(f"task {self.name!r}: prediction of sample {sid!r}: {exc}") from exc
            matrix[q] = [self.match(query, entry).inliers for entry in database]
        return matrix, [index[sid] for sid in predictions], names

    def evaluate(self, predictions: Mapping[str, Any], references: Mapping[str, Any]) -> dict[str, float]:
        if not predictions:
            return {m: float("nan") for m in self.metrics}
        matrix, relevant, _ = self.scores(predictions, references)
        return retrieval_metrics(matrix, relevant, self.min_inliers)

    def describe(self) -> str:
        return (
            f"{self.name} ({self.detector.upper()}, {self.max_keypoints} keypoints, ratio {self.ratio:g}; "
            f"retrieval among the evaluated images + {len(self.distractors)} scikit-image distractors)"
        )

    def versions(self) -> dict[str, str]:
        import skimage

        return {"opencv": cv2.__version__, "scikit-image": skimage.__version__}
