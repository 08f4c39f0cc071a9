"""Facial analysis with dlib: face detection, 68-point landmarks, 128-d face embeddings.

The networks' weights ship inside registry packages, so these tasks run
offline: ``dlib-bin`` (the dlib wheel: HOG detector built in) and
``face-recognition-models`` (the ``.dat`` files: CNN/MMOD face detector,
5- and 68-point shape predictors, the ResNet face-recognition model).
``face_recognition_models``'s own ``__init__`` imports ``pkg_resources``, so
its ``models/`` folder is located with ``importlib.util.find_spec`` instead of
importing it.

The datasets here have no face labels, so all three tasks run under the
fidelity protocol: the reference is the task's prediction on the
uncompressed image.

Coordinates are pixels of the input image; boxes are ``[x, y, w, h]``.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bench.tasks.base import Task, TaskUnavailable

INSTALL = "pip install dlib-bin face-recognition-models"
IOU_THRESHOLD = 0.5
#: NME charged to an image whose reference has a face but whose compressed version has none
NME_MISSED = 1.0
#: dlib's same-person threshold on the Euclidean distance between 128-d embeddings
DLIB_SAME_PERSON = 0.6
#: outer eye corners in the 68-point (iBUG 300-W) layout, 0-based
OUTER_EYE_CORNERS = (36, 45)

MODEL_FILES = {
    "cnn": "mmod_human_face_detector.dat",
    "landmarks68": "shape_predictor_68_face_landmarks.dat",
    "landmarks5": "shape_predictor_5_face_landmarks.dat",
    "recognition": "dlib_face_recognition_resnet_model_v1.dat",
}


# --------------------------------------------------------------------------- evaluators


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``[x, y, w, h]`` boxes."""
    ax, ay, aw, ah = (float(v) for v in a)
    bx, by, bw, bh = (float(v) for v in b)
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def _boxes(reference: Any) -> list[list[float]]:
    """Reference boxes from a list of ``[x, y, w, h]`` or of ``{"bbox": ...}`` dicts."""
    return [list(r["bbox"]) if isinstance(r, Mapping) else list(r) for r in (reference or [])]


def evaluate_detections(
    predictions: Mapping[str, Any], references: Mapping[str, Any], iou_threshold: float = IOU_THRESHOLD
) -> dict[str, float]:
    """AP and recall at IoU ``iou_threshold`` of scored boxes against reference boxes, over a whole dataset.

    All detections of all images are ranked by score (best first); each is a
    true positive if its best-overlapping still-unmatched reference box in the
    same image has IoU >= the threshold (that box is then matched), else a
    false positive. AP is the area under the precision-recall curve with
    VOC 2010+ all-point interpolation: precision at recall r is the maximum
    precision at any recall >= r, summed over the recall steps. ``recall50``
    is the share of reference boxes matched by any detection. Both are NaN if
    the references hold no box.
    """
    scored = []
    n_ref = 0
    for sid, prediction in predictions.items():
        if sid not in references:
            raise KeyError(f"no reference for sample {sid!r}")
        n_ref += len(_boxes(references[sid]))
        scored += [(float(d["score"]), sid, list(d["bbox"])) for d in prediction or []]
    if n_ref == 0:
        return {"AP50": math.nan, "recall50": math.nan}
    scored.sort(key=lambda t: -t[0])  # stable: ties keep input order
    matched = {sid: [False] * len(_boxes(references[sid])) for sid in predictions}
    tp = np.zeros(len(scored))
    for i, (_, sid, box) in enumerate(scored):
        refs = _boxes(references[sid])
        ious = [-1.0 if matched[sid][j] else box_iou(box, r) for j, r in enumerate(refs)]
        if ious and max(ious) >= iou_threshold:
            matched[sid][int(np.argmax(ious))] = True
            tp[i] = 1
    cum_tp = np.cumsum(tp)
    recall = np.concatenate([[0.0], cum_tp / n_ref])
    precision = np.concatenate([[1.0], cum_tp / np.arange(1, len(scored) + 1)])
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the monotone envelope
    ap = float(np.sum(np.diff(recall) * precision[1:]))
    return {"AP50": ap, "recall50": float(cum_tp[-1] / n_ref) if len(scored) else 0.0}


def landmark_nme(
    points: Sequence[Sequence[float]],
    reference: Sequence[Sequence[float]],
    eye_corners: tuple[int, int] = OUTER_EYE_CORNERS,
) -> float:
    """Mean point-to-point distance normalised by the reference's inter-ocular distance (the outer eye corners:
    points 36 and 45 of the 68-point layout by default)."""
    p = np.asarray(points, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if p.shape != r.shape:
        raise ValueError(f"landmark shapes differ: {p.shape} vs {r.shape}")
    iod = float(np.linalg.norm(r[eye_corners[0]] - r[eye_corners[1]]))
    if iod <= 0:
        raise ValueError("reference inter-ocular distance is 0")
    return float(np.mean(np.linalg.norm(p - r, axis=1)) / iod)


def evaluate_landmarks(
    predictions: Mapping[str, Any],
    references: Mapping[str, Any],
    missed_nme: float = NME_MISSED,
    eye_corners: tuple[int, int] = OUTER_EYE_CORNERS,
) -> dict[str, float]:
    """Mean NME over images whose reference has a face (lower is better).

    Images with no face in the reference are skipped and counted
    (``no_reference_face``); an image whose reference has a face but whose
    prediction has none counts as a failure with NME ``missed_nme`` and is
    counted in ``missed``.
    """
    errors, skipped, missed = [], 0, 0
    for sid, prediction in predictions.items():
        if sid not in references:
            raise KeyError(f"no reference for sample {sid!r}")
        ref = (references[sid] or {}).get("points") or []
        if not ref:
            skipped += 1
            continue
        pts = (prediction or {}).get("points") or []
        if not pts:
            missed += 1
            errors.append(missed_nme)
        else:
            errors.append(min(landmark_nme(pts, ref, eye_corners), missed_nme))
    nme = float(np.mean(errors)) if errors else math.nan
    return {"NME": nme, "no_reference_face": float(skipped), "missed": float(missed)}


def evaluate_embeddings(
    predictions: Mapping[str, Any], references: Mapping[str, Any], threshold: float = DLIB_SAME_PERSON
) -> dict[str, float]:
    """Mean cosine similarity and the share "same person" (Euclidean distance < ``threshold``) vs the reference.

    Images with no face in the reference are skipped and counted
    (``no_reference_face``); a face missed in the prediction counts as a
    failure: cosine 0 and not verified (counted in ``missed``).
    """
    cosines, verified, skipped, missed = [], [], 0, 0
    for sid, prediction in predictions.items():
        if sid not in references:
            raise KeyError(f"no reference for sample {sid!r}")
        ref = (references[sid] or {}).get("embedding") or []
        if not ref:
            skipped += 1
            continue
        emb = (prediction or {}).get("embedding") or []
        if not emb:
            missed += 1
            cosines.append(0.0)
            verified.append(False)
            continue
        a, b = np.asarray(emb, dtype=np.float64), np.asarray(ref, dtype=np.float64)
        denom = float(np.linalg.norm(a) * np.linalg.norm(b))
        cosines.append(float(a @ b) / denom if denom > 0 else 0.0)
        verified.append(float(np.linalg.norm(a - b)) < threshold)
    if not cosines:
        return {"cosine_similarity": math.nan, "verification_acc": math.nan, "no_reference_face": float(skipped)}
    return {
        "cosine_similarity": float(np.mean(cosines)),
        "verification_acc": float(np.mean(verified)),
        "no_reference_face": float(skipped),
        "missed": float(missed),
    }


# --------------------------------------------------------------------------- dlib networks


def models_dir() -> Path | None:
    """The ``models/`` folder of the ``face_recognition_models`` package, without importing it."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


class FaceDetectionScoring:
    """What every face detector shares, whatever its network: the ``face_detection`` kind and its scoring.

    Predictions are ``[{"bbox": [x, y, w, h], "score": s, ...}, ...]``; metrics (higher is better) are
    ``AP50`` (VOC all-point AP at IoU 0.5) and ``recall50`` against the reference boxes; under the fidelity
    protocol the reference is all the boxes detected on the uncompressed image.
    """

    kind: ClassVar[str] = "face_detection"
    metrics: ClassVar[tuple[str, ...]] = ("AP50", "recall50")

    def evaluate(self, predictions: Mapping[str, Any], references: Mapping[str, Any]) -> dict[str, float]:
        return evaluate_detections(predictions, references)

    def reference_from_prediction(self, prediction: Any) -> Any:
        """The boxes found on the uncompressed image (scores dropped)."""
        return [list(d["bbox"]) for d in prediction or []]


class DlibFaceTask(Task):
    """What the dlib face tasks share: finding the models, the face detector, lazy loading.

    ``detector``: ``hog`` (dlib's frontal HOG + linear SVM; fast, CPU) or
    ``cnn`` (dlib's MMOD CNN; slower on CPU, finds more poses). ``upsample``:
    how many times the image is doubled before detecting (1 finds faces down
    to about 40 px). ``threshold``: the HOG detector's score threshold
    (dlib's ``adjust_threshold``; 0 is its default; lower finds more, with
    more false positives).

    Models load on first use and are not pickled (the runner forks workers).
    """

    needs: tuple[str, ...] = ()

    def __init__(
        self,
        name: str,
        detector: str = "hog",
        upsample: int = 1,
        threshold: float = 0.0,
        batch_size: int = 8,
        **options: Any,
    ):
        super().__init__(name, batch_size=batch_size, **options)
        if detector not in ("hog", "cnn"):
            raise ValueError(f"{name}: detector must be 'hog' or 'cnn', not {detector!r}")
        self.detector = detector
        self.upsample = int(upsample)
        self.threshold = float(threshold)
        self._models: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_models"] = {}
        return state

    def _files(self) -> list[str]:
        return [MODEL_FILES[k] for k in (*(("cnn",) if self.detector == "cnn" else ()), *self.needs)]

    def unavailable_reason(self) -> str | None:
        if importlib.util.find_spec("dlib") is None:
            return f"{self.name}: dlib is not installed ({INSTALL})"
        folder = models_dir()
        if self._files() and folder is None:
            return f"{self.name}: the face_recognition_models package is not installed ({INSTALL})"
        missing = [f for f in self._files() if not (folder / f).is_file()]
        if missing:
            return f"{self.name}: {', '.join(missing)} not in {folder} (reinstall: {INSTALL})"
        return None

    def _model(self, key: str) -> Any:
        if key not in self._models:
            reason = self.unavailable_reason()
            if reason:
                raise TaskUnavailable(reason)
            import dlib

            if key == "hog":
                self._models[key] = dlib.get_frontal_face_detector()
            elif key == "cnn":
                self._models[key] = dlib.cnn_face_detection_model_v1(str(models_dir() / MODEL_FILES["cnn"]))
            elif key == "recognition":
                self._models[key] = dlib.face_recognition_model_v1(str(models_dir() / MODEL_FILES[key]))
            else:
                self._models[key] = dlib.shape_predictor(str(models_dir() / MODEL_FILES[key]))
        return self._models[key]

    def detect(self, image: np.ndarray) -> list[tuple[Any, float]]:
        """``(dlib.rectangle, score)`` per face, best first."""
        image = np.ascontiguousarray(image, dtype=np.uint8)
        if self.detector == "cnn":
            found = [(d.rect, float(d.confidence)) for d in self._model("cnn")(image, self.upsample)]
        else:
            rects, scores, _ = self._model("hog").run(image, self.upsample, self.threshold)
            found = list(zip(rects, (float(s) for s in scores)))
        return sorted(found, key=lambda t: -t[1])

    def main_face(self, image: np.ndarray) -> Any | None:
        """The most confident detected face (ties: the larger box), or None.

        By score, not size: a weak false box of nearly a face's size must not
        take the landmarks or the embedding.
        """
        found = self.detect(image)
        if not found:
            return None
        return max(found, key=lambda t: (t[1], t[0].width() * t[0].height()))[0]

    @staticmethod
    def xywh(rect: Any) -> list[int]:
        return [int(rect.left()), int(rect.top()), int(rect.width()), int(rect.height())]

    def describe(self) -> str:
        return f"{self.name} (dlib {self.detector} detector, upsample {self.upsample})"

    def versions(self) -> dict[str, str]:
        v = {"dlib": _dist_version("dlib-bin"), "face_recognition_models": _dist_version("face_recognition_models")}
        if v["dlib"] == "unknown":
            v["dlib"] = _dist_version("dlib")
        v["detector"] = "hog" if self.detector == "hog" else MODEL_FILES["cnn"]
        v.update({k: MODEL_FILES[k] for k in self.needs})
        return v


class DlibFaceDetection(FaceDetectionScoring, DlibFaceTask):
    """Face boxes: a prediction is ``[{"bbox": [x, y, w, h], "score": s}, ...]``, best first (AP50, recall50)."""

    def predict(self, images: Sequence[np.ndarray]) -> list[Any]:
        return [[{"bbox": self.xywh(r), "score": round(s, 6)} for r, s in self.detect(img)] for img in images]


class MainFaceTask(DlibFaceTask):
    """A task that describes the most confident face of each image (``no_face`` when there is none)."""

    no_face: dict[str, Any]

    def describe_face(self, image: np.ndarray, face: Any) -> dict[str, Any]:
        raise NotImplementedError

    def predict(self, images: Sequence[np.ndarray]) -> list[Any]:
        out = []
        for img in images:
            img = np.ascontiguousarray(img, dtype=np.uint8)
            face = self.main_face(img)
            out.append(
                dict(self.no_face) if face is None else {"bbox": self.xywh(face), **self.describe_face(img, face)}
            )
        return out


class DlibFaceLandmarks(MainFaceTask):
    """68-point landmarks (iBUG 300-W layout) of the most confident detected face.

    A prediction is ``{"bbox": [x, y, w, h], "points": [[x, y] * 68]}``, or
    ``{"bbox": None, "points": []}`` when no face is found. Metric ``NME``
    (LOWER is better): mean point error over the inter-ocular distance (outer
    eye corners 36 and 45) of the reference; references without a face are
    skipped and counted, a face missed after compression scores ``missed_nme``
    (default 1.0, also the cap per image) and is counted.
    """

    kind = "face_landmarks"
    metrics = ("NME",)
    needs = ("landmarks68",)

    def __init__(self, name: str, missed_nme: float = NME_MISSED, **kwargs: Any):
        super().__init__(name, **kwargs)
        self.missed_nme = float(missed_nme)

    no_face = {"bbox": None, "points": []}

    def describe_face(self, image: np.ndarray, face: Any) -> dict[str, Any]:
        shape = self._model("landmarks68")(image, face)
        return {"points": [[int(shape.part(i).x), int(shape.part(i).y)] for i in range(shape.num_parts)]}

    def evaluate(self, predictions: Mapping[str, Any], references: Mapping[str, Any]) -> dict[str, float]:
        return evaluate_landmarks(predictions, references, self.missed_nme)


class DlibFaceEmbedding(MainFaceTask):
    """128-d dlib ResNet face embedding of the most confident detected face (aligned with the 5-point predictor).

    A prediction is ``{"bbox": [x, y, w, h], "embedding": [128 floats]}``, or
    ``{"bbox": None, "embedding": []}`` when no face is found. Metrics
    (higher is better) against the embedding on the uncompressed image:
    ``cosine_similarity`` (mean) and ``verification_acc``, the share with
    Euclidean distance < 0.6 (dlib's same-person threshold). A face missed
    after compression scores cosine 0 and not verified; references without a
    face are skipped and counted.
    """

    kind = "face_embedding"
    metrics = ("cosine_similarity", "verification_acc")
    needs = ("landmarks5", "recognition")

    def __init__(self, name: str, jitter: int = 0, threshold_same: float = DLIB_SAME_PERSON, **kwargs: Any):
        super().__init__(name, **kwargs)
        self.jitter = int(jitter)
        self.threshold_same = float(threshold_same)

    no_face = {"bbox": None, "embedding": []}

    def describe_face(self, image: np.ndarray, face: Any) -> dict[str, Any]:
        shape = self._model("landmarks5")(image, face)
        emb = self._model("recognition").compute_face_descriptor(image, shape, self.jitter)
        return {"embedding": [round(float(v), 7) for v in emb]}

    def evaluate(self, predictions: Mapping[str, Any], references: Mapping[str, Any]) -> dict[str, float]:
        return evaluate_embeddings(predictions, references, self.threshold_same)
