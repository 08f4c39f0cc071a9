"""MediaPipe solutions as tasks: face detection, face mesh, pose, selfie segmentation (offline).

``mediapipe`` 0.10.21 ships the TFLite models of its legacy *solutions* inside
the wheel (``mediapipe/modules/...``), so these tasks run with no download;
the 1.x releases ship none. Its metadata pins ``numpy<2`` and ``protobuf<5``
and pulls JAX, OpenCV-contrib and audio packages the solutions never import,
so it is installed without dependencies, next to the few it needs (the
``mediapipe`` extra)::

    pip install "hmc-bench[mediapipe]" && pip install --no-deps mediapipe==0.10.21

Every image is processed on its own (``static_image_mode``: no tracking
between frames), so a prediction depends on that image only. No dataset here
has face, pose or person-mask labels, so all four tasks run under the
fidelity protocol (the reference is the prediction on the uncompressed image):

- ``MediaPipeFaceDetection`` (BlazeFace): boxes and 6 keypoints; AP50 and
  recall50 as the dlib face detector (:func:`bench.tasks.faces.evaluate_detections`);
- ``MediaPipeFaceMesh``: 468 landmarks (478 with the irises) of one face; NME
  over the distance between the outer eye corners (mesh points 33 and 263);
- ``MediaPipePose`` (BlazePose, ``model_complexity`` 1 only: the other two
  models are downloaded at run time): 33 keypoints; PCK and NKE below;
- ``MediaPipeSelfieSegmentation``: a person mask; IoU of the person class.

Coordinates are pixels of the input image; boxes are ``[x, y, w, h]``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bench.tasks.base import Task, TaskUnavailable
from bench.tasks.evaluators.segmentation import evaluate_segmentation, per_class_iou
from bench.tasks.faces import FaceDetectionScoring, evaluate_landmarks
from bench.tasks.masks import label_prediction
from bench.tasks.segmentation import SegmentationTask

MEDIAPIPE_VERSION = "0.10.21"
INSTALL = f'pip install "hmc-bench[mediapipe]" && pip install --no-deps mediapipe=={MEDIAPIPE_VERSION}'
#: outer eye corners in the 468/478-point face mesh (the subject's right, then left)
MESH_OUTER_EYE_CORNERS = (33, 263)
#: a pose keypoint counts when its visibility on the uncompressed image is at least this
MIN_VISIBILITY = 0.5
#: PCK: a keypoint is correct within this share of the reference person's box diagonal
PCK_THRESHOLD = 0.05


# --------------------------------------------------------------------------- pose evaluator


def _visible_reference(reference: Any, min_visibility: float) -> np.ndarray:
    """The reference keypoints seen well enough to score against, as a boolean mask (empty: no person)."""
    points = (reference or {}).get("points") or []
    if not points:
        return np.zeros(0, dtype=bool)
    return np.asarray([p[2] if len(p) > 2 else 1.0 for p in points], dtype=np.float64) >= min_visibility


def evaluate_keypoints(
    predictions: Mapping[str, Any],
    references: Mapping[str, Any],
    threshold: float = PCK_THRESHOLD,
    min_visibility: float = MIN_VISIBILITY,
) -> dict[str, float]:
    """PCK and normalised keypoint error of ``{"points": [[x, y, visibility], ...]}`` predictions.

    Per image, the keypoints that count are those with visibility >= ``min_visibility``
    in the reference; the scale ``d`` is the diagonal of their bounding box.
    A keypoint's error is its distance to the reference over ``d``, capped at 1;
    ``PCK`` (higher is better) is the share of counted keypoints with error <=
    ``threshold``, ``NKE`` (lower is better) their mean error, both pooled over
    the dataset. A person missed in the prediction scores error 1 on every
    keypoint (counted in ``missed``); references without a person, or with
    fewer than two counted keypoints, are skipped (``no_reference_person``).
    """
    errors: list[np.ndarray] = []
    skipped = missed = 0
    for sid, prediction in predictions.items():
        if sid not in references:
            raise KeyError(f"no reference for sample {sid!r}")
        visible = _visible_reference(references[sid], min_visibility)
        if visible.sum() < 2:
            skipped += 1
            continue
        ref = np.asarray(references[sid]["points"], dtype=np.float64)[visible, :2]
        scale = float(np.linalg.norm(ref.max(axis=0) - ref.min(axis=0)))
        pts = (prediction or {}).get("points") or []
        if not pts:
            missed += 1
            errors.append(np.ones(len(ref)))
            continue
        p = np.asarray(pts, dtype=np.float64)
        if len(p) != len(visible):
            raise ValueError(f"sample {sid!r}: {len(p)} predicted keypoints, the reference has {len(visible)}")
        err = np.linalg.norm(p[visible, :2] - ref, axis=1) / scale if scale > 0 else np.ones(len(ref))
        errors.append(np.minimum(err, 1.0))
    if not errors:
        return {"PCK": math.nan, "NKE": math.nan, "no_reference_person": float(skipped), "missed": float(missed)}
    pooled = np.concatenate(errors)
    return {
        "PCK": float(np.mean(pooled <= threshold)),
        "NKE": float(np.mean(pooled)),
        "no_reference_person": float(skipped),
        "missed": float(missed),
    }


# --------------------------------------------------------------------------- the package


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def package_dir() -> Path | None:
    """The installed ``mediapipe`` package folder, without importing it."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def mediapipe_problem(model_files: Sequence[str] = ()) -> str | None:
    """Why the MediaPipe solutions cannot run here (package, version, protobuf, model files), or None."""
    version = _version("mediapipe")
    folder = package_dir()
    if version is None or folder is None:
        return f"mediapipe is not installed ({INSTALL})"
    if not version.startswith("0.10."):
        return (
            f"mediapipe {version} ships no solution models (0.10.x does); "
            f"pip install --no-deps mediapipe=={MEDIAPIPE_VERSION}"
        )
    protobuf = _version("protobuf") or "none"
    if not protobuf.startswith("4."):
        return f"mediapipe {version} needs protobuf 4.x, found {protobuf}: pip install 'protobuf>=4.25.8,<5'"
    missing = [f for f in model_files if not (folder / f).is_file()]
    if missing:
        return f"mediapipe {version} lacks {', '.join(missing)} under {folder} (reinstall: {INSTALL})"
    return None


class MediaPipeTask(Task):
    """What the MediaPipe tasks share: the availability check and one solution graph per process.

    The graph is built on first use and never pickled: the runner forks its
    workers, and each builds its own.
    """

    def model_files(self) -> tuple[str, ...]:
        """The model files the configured solution loads, relative to the mediapipe package."""
        return ()

    def __init__(self, name: str, batch_size: int = 8, **options: Any):
        super().__init__(name, batch_size=batch_size, **options)
        self._solution: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_solution"] = None
        return state

    def unavailable_reason(self) -> str | None:
        why = mediapipe_problem(self.model_files())
        return f"{self.name}: {why}" if why else None

    def build(self) -> Any:
        """The MediaPipe solution object (``process(rgb) -> results``)."""
        raise NotImplementedError

    def process(self, image: np.ndarray) -> Any:
        if self._solution is None:
            why = self.unavailable_reason()
            if why:
                raise TaskUnavailable(why)
            self._solution = self.build()
        return self._solution.process(np.ascontiguousarray(image, dtype=np.uint8))

    def versions(self) -> dict[str, str]:
        return {"mediapipe": _version("mediapipe") or "none", "protobuf": _version("protobuf") or "none"}


def _pixels(x: float, y: float, width: int, height: int) -> list[float]:
    return [round(float(x) * width, 2), round(float(y) * height, 2)]


class MediaPipeFaceDetection(FaceDetectionScoring, MediaPipeTask):
    """BlazeFace boxes and 6 keypoints (eyes, nose tip, mouth centre, ear tragions), best first.

    A prediction is ``[{"bbox": [x, y, w, h], "score": s, "keypoints": [[x, y] * 6]}, ...]``
    with boxes clipped to the image. ``model_selection``: 0 = short range
    (faces within about 2 m, the default), 1 = full range. Metrics: AP50 and
    recall50 against the boxes found on the uncompressed image.
    """

    MODELS: ClassVar[dict[int, str]] = {
        0: "modules/face_detection/face_detection_short_range.tflite",
        1: "modules/face_detection/face_detection_full_range_sparse.tflite",
    }

    def __init__(self, name: str, model_selection: int = 0, min_detection_confidence: float = 0.5, batch_size: int = 8):
        super().__init__(name, batch_size=batch_size)
        if int(model_selection) not in self.MODELS:
            raise ValueError(
                f"{name}: model_selection must be 0 (short range) or 1 (full range), not {model_selection!r}"
            )
        self.model_selection = int(model_selection)
        self.min_detection_confidence = float(min_detection_confidence)

    def model_files(self) -> tuple[str, ...]:
        return (self.MODELS[self.model_selection],)

    def build(self) -> Any:
        from mediapipe.python.solutions.face_detection import FaceDetection

        return FaceDetection(
            model_selection=self.model_selection, min_detection_confidence=self.min_detection_confidence
        )

    def predict(self, images: Sequence[np.ndarray]) -> list[Any]:
        out = []
        for image in images:
            h, w = image.shape[:2]
            faces = []
            for det in self.process(image).detections or []:
                box = det.location_data.relative_bounding_box
                x1, y1 = max(0.0, box.xmin * w), max(0.0, box.ymin * h)
                x2, y2 = min(float(w), (box.xmin + box.width) * w), min(float(h), (box.ymin + box.height) * h)
                if x2 <= x1 or y2 <= y1:
                    continue
                faces.append(
                    {
                        "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                        "score": round(float(det.score[0]), 5),
                        "keypoints": [_pixels(k.x, k.y, w, h) for k in det.location_data.relative_keypoints],
                    }
                )
            out.append(sorted(faces, key=lambda f: -f["score"]))
        return out

    def describe(self) -> str:
        kind = "short range" if self.model_selection == 0 else "full range"
        return f"{self.name} (MediaPipe BlazeFace, {kind}, min confidence {self.min_detection_confidence})"


class MediaPipeFaceMesh(MediaPipeTask):
    """Face mesh of the most prominent face: 468 landmarks, 478 with ``refine_landmarks`` (irises).

    A prediction is ``{"bbox": [x, y, w, h], "points": [[x, y] * N]}`` (the box
    spans the landmarks), or ``{"bbox": None, "points": []}`` without a face.
    Metric ``NME`` (LOWER is better): mean landmark error over the reference's
    outer-eye-corner distance (points 33 and 263); a face missed after
    compression scores ``missed_nme`` (also the cap per image), as the dlib
    landmarks task. Its 468 points have no agreed mapping to the 68-point
    iBUG layout, so the reference is always the mesh on the uncompressed image.
    """

    kind: ClassVar[str] = "face_mesh"
    metrics: ClassVar[tuple[str, ...]] = ("NME",)

    def __init__(
        self,
        name: str,
        refine_landmarks: bool = True,
        min_detection_confidence: float = 0.5,
        missed_nme: float = 1.0,
        batch_size: int = 8,
    ):
        super().__init__(name, batch_size=batch_size)
        self.refine_landmarks = bool(refine_landmarks)
        self.min_detection_confidence = float(min_detection_confidence)
        self.missed_nme = float(missed_nme)

    def model_files(self) -> tuple[str, ...]:
        mesh = "face_landmark_with_attention.tflite" if self.refine_landmarks else "face_landmark.tflite"
        return ("modules/face_detection/face_detection_short_range.tflite", f"modules/face_landmark/{mesh}")

    def build(self) -> Any:
        from mediapipe.python.solutions.face_mesh import FaceMesh

        return FaceMesh(
            static_image_mode=True,
            max_num_faces=1,
            refine_landmarks=self.refine_landmarks,
            min_detection_confidence=self.min_detection_confidence,
        )

    def predict(self, images: Sequence[np.ndarray]) -> list[Any]:
        out = []
        for image in images:
            h, w = image.shape[:2]
            faces = self.process(image).multi_face_landmarks
            if not faces:
                out.append({"bbox": None, "points": []})
                continue
            points = [_pixels(p.x, p.y, w, h) for p in faces[0].landmark]
            xy = np.asarray(points)
            (x1, y1), (x2, y2) = xy.min(axis=0), xy.max(axis=0)
            box = [round(float(x1), 2), round(float(y1), 2), round(float(x2 - x1), 2), round(float(y2 - y1), 2)]
            out.append({"bbox": box, "points": points})
        return out

    def evaluate(self, predictions: Mapping[str, Any], references: Mapping[str, Any]) -> dict[str, float]:
        return evaluate_landmarks(predictions, references, self.missed_nme, eye_corners=MESH_OUTER_EYE_CORNERS)

    def describe(self) -> str:
        n = 478 if self.refine_landmarks else 468
        return f"{self.name} (MediaPipe Face Mesh, {n} landmarks)"


class MediaPipePose(MediaPipeTask):
    """BlazePose: 33 body keypoints of the most prominent person (``model_complexity`` 1, the model shipped).

    A prediction is ``{"points": [[x, y, visibility] * 33]}``, or ``{"points": []}``
    without a person. Metrics against the keypoints on the uncompressed image
    (see :func:`evaluate_keypoints`): ``PCK`` (share within ``pck_threshold`` of
    the person's box diagonal; higher is better) and ``NKE`` (mean error over
    that diagonal; lower is better).
    """

    kind: ClassVar[str] = "pose_keypoints"
    metrics: ClassVar[tuple[str, ...]] = ("PCK", "NKE")

    def __init__(
        self,
        name: str,
        model_complexity: int = 1,
        min_detection_confidence: float = 0.5,
        pck_threshold: float = PCK_THRESHOLD,
        min_visibility: float = MIN_VISIBILITY,
        batch_size: int = 8,
    ):
        super().__init__(name, batch_size=batch_size)
        if int(model_complexity) != 1:
            raise ValueError(
                f"{name}: model_complexity must be 1: mediapipe {MEDIAPIPE_VERSION} ships only that pose model "
                f"(0 and 2 are downloaded at run time)"
            )
        self.model_complexity = 1
        self.min_detection_confidence = float(min_detection_confidence)
        self.pck_threshold = float(pck_threshold)
        self.min_visibility = float(min_visibility)

    def model_files(self) -> tuple[str, ...]:
        return ("modules/pose_detection/pose_detection.tflite", "modules/pose_landmark/pose_landmark_full.tflite")

    def build(self) -> Any:
        from mediapipe.python.solutions.pose import Pose

        return Pose(
            static_image_mode=True,
            model_complexity=self.model_complexity,
            enable_segmentation=False,
            min_detection_confidence=self.min_detection_confidence,
        )

    def predict(self, images: Sequence[np.ndarray]) -> list[Any]:
        out = []
        for image in images:
            h, w = image.shape[:2]
            pose = self.process(image).pose_landmarks
            if pose is None:
                out.append({"points": []})
                continue
            out.append({"points": [[*_pixels(p.x, p.y, w, h), round(float(p.visibility), 4)] for p in pose.landmark]})
        return out

    def evaluate(self, predictions: Mapping[str, Any], references: Mapping[str, Any]) -> dict[str, float]:
        return evaluate_keypoints(predictions, references, self.pck_threshold, self.min_visibility)

    def describe(self) -> str:
        return f"{self.name} (MediaPipe BlazePose full, PCK@{self.pck_threshold:g} of the person's box diagonal)"


class MediaPipeSelfieSegmentation(MediaPipeTask, SegmentationTask):
    """Person / background mask (MediaPipe selfie segmentation), thresholded at ``mask_threshold``.

    A prediction is a label map (0 background, 1 person; see
    :mod:`bench.tasks.masks`). Metrics against the mask on the uncompressed
    image: ``IoU`` of the person class (the headline), ``mIoU`` over both
    classes and ``pixel_acc``, from one confusion matrix over the dataset.
    ``model_selection``: 0 = general (256 x 256), 1 = landscape (144 x 256).
    """

    kind: ClassVar[str] = "person_segmentation"
    metrics: ClassVar[tuple[str, ...]] = ("IoU", "mIoU", "pixel_acc")
    MODELS: ClassVar[dict[int, str]] = {
        0: "modules/selfie_segmentation/selfie_segmentation.tflite",
        1: "modules/selfie_segmentation/selfie_segmentation_landscape.tflite",
    }

    def __init__(self, name: str, model_selection: int = 0, mask_threshold: float = 0.5, batch_size: int = 8):
        SegmentationTask.__init__(self, name, 2, None, ["background", "person"], batch_size=batch_size)
        self._solution = None
        if int(model_selection) not in self.MODELS:
            raise ValueError(f"{name}: model_selection must be 0 (general) or 1 (landscape), not {model_selection}")
        self.model_selection = int(model_selection)
        self.mask_threshold = float(mask_threshold)

    def model_files(self) -> tuple[str, ...]:
        return (self.MODELS[self.model_selection],)

    def build(self) -> Any:
        from mediapipe.python.solutions.selfie_segmentation import SelfieSegmentation

        return SelfieSegmentation(model_selection=self.model_selection)

    def predict(self, images: Sequence[np.ndarray]) -> list[Any]:
        out = []
        for image in images:
            mask = self.process(image).segmentation_mask
            out.append(label_prediction((np.asarray(mask) > self.mask_threshold).astype(np.uint8)))
        return out

    def evaluate(self, predictions: Mapping[str, Any], references: Mapping[str, Any]) -> dict[str, float]:
        scores, cm = evaluate_segmentation(predictions, references, self.num_classes, self.ignore_index)
        return {"IoU": float(per_class_iou(cm)[1]), **scores}

    def per_class_scores(self, predictions: Mapping[str, Any], references: Mapping[str, Any]) -> dict[str, float]:
        return {}  # two classes: the headline IoU and mIoU say it all

    def describe(self) -> str:
        kind = "general" if self.model_selection == 0 else "landscape"
        return f"{self.name} (MediaPipe selfie segmentation, {kind}, person where p > {self.mask_threshold:g})"
