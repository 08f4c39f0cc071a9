"""facenet-pytorch: MTCNN face detection (weights in the wheel, offline) and FaceNet embeddings (weights downloaded).

``facenet-pytorch`` 2.6.0 ships the three MTCNN stages' weights
(``facenet_pytorch/data/{p,r,o}net.pt``) but pins torch < 2.3, numpy < 2 and
Pillow < 10.3, none of which it needs at those versions; it is installed
without dependencies, next to ``requests`` (the ``facenet`` extra)::

    pip install "hmc-bench[learned,facenet]" && pip install --no-deps facenet-pytorch==2.6.0

- ``MTCNNFaceDetection``: boxes, scores and 5 landmarks (eyes, nose, mouth
  corners); AP50 and recall50 as the dlib detector
  (:func:`bench.tasks.faces.evaluate_detections`).
- ``FacenetEmbedding``: the 512-d InceptionResnetV1 embedding of the most
  probable MTCNN face. Its weights are not in the wheel: facenet-pytorch
  downloads them from its GitHub release into ``$TORCH_HOME/checkpoints``.
  Here they are never fetched behind a run's back: a missing file is one
  message naming it, the URL and :func:`fetch_facenet_weights`.

No dataset here has face labels: both run under the fidelity protocol.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bench.devices import resolve_device
from bench.provenance import installed_versions
from bench.tasks.base import LazyNetwork, Task, TaskUnavailable
from bench.tasks.faces import FaceDetectionScoring, evaluate_embeddings

FACENET_VERSION = "2.6.0"
INSTALL = f'pip install "hmc-bench[learned,facenet]" && pip install --no-deps facenet-pytorch=={FACENET_VERSION}'
MTCNN_FILES = ("pnet.pt", "rnet.pt", "onet.pt")
#: facenet-pytorch's pretrained InceptionResnetV1 state dicts (its ``load_weights``) and their class counts
FACENET_WEIGHTS = {
    "vggface2": (
        "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",
        8631,
    ),
    "casia-webface": (
        "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180408-102900-casia-webface.pt",
        10575,
    ),
}
#: Euclidean distance between unit-norm FaceNet embeddings below which two faces are the same person
#: (about the best threshold of the VGGFace2 model on LFW)
FACENET_SAME_PERSON = 1.1


def _package_dir() -> Path | None:
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def facenet_problem() -> str | None:
    """Why facenet-pytorch's MTCNN cannot run here (torch, the package, its weight files), or None."""
    for module in ("torch", "torchvision"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed ({INSTALL})"
    folder = _package_dir()
    if folder is None:
        return f"facenet-pytorch is not installed ({INSTALL})"
    if importlib.util.find_spec("requests") is None:
        return "facenet-pytorch imports requests, which is not installed (pip install requests)"
    missing = [f for f in MTCNN_FILES if not (folder / "data" / f).is_file()]
    if missing:
        return f"facenet-pytorch lacks the MTCNN weights {', '.join(missing)} under {folder / 'data'} ({INSTALL})"
    return None


def torch_home() -> Path:
    """Where facenet-pytorch keeps downloaded weights: ``$TORCH_HOME`` (default ``$XDG_CACHE_HOME/torch``)."""
    default = os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(os.path.expanduser(os.getenv("TORCH_HOME", default)))


def facenet_weights_file(pretrained: str) -> Path:
    """The file facenet-pytorch reads (and would download) for ``pretrained``."""
    if pretrained not in FACENET_WEIGHTS:
        raise ValueError(f"pretrained must be one of {sorted(FACENET_WEIGHTS)}, not {pretrained!r}")
    return torch_home() / "checkpoints" / os.path.basename(FACENET_WEIGHTS[pretrained][0])


def fetch_facenet_weights(pretrained: str = "vggface2") -> Path:
    """Download the InceptionResnetV1 weights where facenet-pytorch looks for them (needs internet)."""
    from facenet_pytorch.models.utils.download import download_url_to_file

    target = facenet_weights_file(pretrained)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    url = FACENET_WEIGHTS[pretrained][0]
    try:
        download_url_to_file(url, str(target))
    except OSError as exc:  # URLError is an OSError: offline, DNS, HTTP errors
        raise TaskUnavailable(f"cannot download {url} to {target} ({type(exc).__name__}: {exc})") from exc
    return target


class MTCNNTask(Task):
    """What both facenet tasks share: an MTCNN detector built on first use (never pickled)."""

    uses_torch: ClassVar[bool] = True

    def __init__(
        self,
        name: str,
        min_face_size: int = 20,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        device: str = "auto",
        batch_size: int = 1,
    ):
        super().__init__(name, batch_size=batch_size)
        if len(thresholds) != 3:
            raise ValueError(f"{name}: thresholds must be three numbers (P-, R- and O-Net), not {thresholds!r}")
        self.min_face_size = int(min_face_size)
        self.thresholds = [float(t) for t in thresholds]
        self.factor = float(factor)
        self.device_name = device
        self._mtcnn: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_mtcnn"] = None
        return state

    def unavailable_reason(self) -> str | None:
        why = facenet_problem()
        return f"{self.name}: {why}" if why else None

    @property
    def mtcnn(self) -> Any:
        """facenet-pytorch's ``MTCNN`` (all faces, ordered by probability)."""
        if self._mtcnn is None:
            why = self.unavailable_reason()
            if why:
                raise TaskUnavailable(why)
            from facenet_pytorch import MTCNN

            self._mtcnn = MTCNN(
                min_face_size=self.min_face_size,
                thresholds=self.thresholds,
                factor=self.factor,
                keep_all=True,
                select_largest=False,
                device=resolve_device(self.device_name),
            )
        return self._mtcnn

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """xyxy boxes, probabilities and 5 x 2 landmarks of every face (MTCNN batches need equal sizes: one image)."""
        import torch

        with torch.inference_mode():
            boxes, probs, points = self.mtcnn.detect(np.ascontiguousarray(image, dtype=np.uint8), landmarks=True)
        if boxes is None:
            return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))
        return np.asarray(boxes, dtype=np.float64), np.asarray(probs, dtype=np.float64), np.asarray(points)

    def versions(self) -> dict[str, str]:
        return installed_versions("facenet-pytorch", "torch")


class MTCNNFaceDetection(FaceDetectionScoring, MTCNNTask):
    """Face boxes and 5 landmarks: ``[{"bbox": [x, y, w, h], "score": p, "keypoints": [[x, y] * 5]}, ...]``.

    Boxes are clipped to the image, best first. Metrics (higher is better):
    ``AP50`` and ``recall50`` against the boxes found on the uncompressed image.
    """

    def predict(self, images: Sequence[np.ndarray]) -> list[Any]:
        out = []
        for image in images:
            h, w = image.shape[:2]
            boxes, probs, points = self.detect(image)
            faces = []
            for box, prob, pts in zip(boxes, probs, points):
                x1, y1 = max(0.0, box[0]), max(0.0, box[1])
                x2, y2 = min(float(w), box[2]), min(float(h), box[3])
                if x2 <= x1 or y2 <= y1 or not np.isfinite([x1, y1, x2, y2, prob]).all():
                    continue
                faces.append(
                    {
                        "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                        "score": round(float(prob), 5),
                        "keypoints": [[round(float(x), 2), round(float(y), 2)] for x, y in pts],
                    }
                )
            out.append(sorted(faces, key=lambda f: -f["score"]))
        return out

    def describe(self) -> str:
        return f"{self.name} (facenet-pytorch MTCNN, min face {self.min_face_size} px, thresholds {self.thresholds})"


class FacenetEmbedding(LazyNetwork, MTCNNTask):
    """512-d FaceNet (InceptionResnetV1) embedding of the most probable MTCNN face, aligned as facenet-pytorch does.

    The face is cropped to its MTCNN box, resized to 160 x 160 and standardised
    ((x - 127.5) / 128). A prediction is ``{"bbox": [x, y, w, h], "embedding": [512 floats]}``
    (unit norm), or ``{"bbox": None, "embedding": []}`` without a face. Metrics
    as the dlib embedding task: mean ``cosine_similarity`` with the embedding on
    the uncompressed image and ``verification_acc`` (distance < ``threshold_same``).
    """

    kind: ClassVar[str] = "face_embedding"
    metrics: ClassVar[tuple[str, ...]] = ("cosine_similarity", "verification_acc")

    def __init__(
        self, name: str, pretrained: str = "vggface2", threshold_same: float = FACENET_SAME_PERSON, **kwargs: Any
    ):
        super().__init__(name, **kwargs)
        facenet_weights_file(pretrained)  # checks the name
        self.pretrained = pretrained
        self.threshold_same = float(threshold_same)
        self._network: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_network"] = None
        return state

    def unavailable_reason(self) -> str | None:
        why = super().unavailable_reason()
        if why:
            return why
        target = facenet_weights_file(self.pretrained)
        if not target.is_file():
            url = FACENET_WEIGHTS[self.pretrained][0]
            return (
                f"{self.name}: the FaceNet weights ({self.pretrained}) are not downloaded: {target} is missing "
                f"(TORCH_HOME={os.environ.get('TORCH_HOME', '<unset: ~/.cache/torch>')}). Where there is internet run "
                f'`python -c "from bench.tasks.facenet import fetch_facenet_weights; '
                f"fetch_facenet_weights('{self.pretrained}')\"`, or download {url} into {target.parent}"
            )
        return None

    def build_network(self) -> Any:
        """InceptionResnetV1 with the downloaded state dict, loaded strictly with ``weights_only=True``."""
        import torch
        from facenet_pytorch import InceptionResnetV1

        net = InceptionResnetV1(num_classes=FACENET_WEIGHTS[self.pretrained][1])
        state = torch.load(facenet_weights_file(self.pretrained), map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
        return net.eval().to(resolve_device(self.device_name))

    def predict(self, images: Sequence[np.ndarray]) -> list[Any]:
        import torch
        from facenet_pytorch.models.mtcnn import extract_face, fixed_image_standardization

        out = []
        for image in images:
            boxes, _, _ = self.detect(image)
            if not len(boxes):
                out.append({"bbox": None, "embedding": []})
                continue
            box = boxes[0]  # the most probable face
            face = fixed_image_standardization(extract_face(np.ascontiguousarray(image), box, 160, 0))
            with torch.inference_mode():
                emb = self.network(face[None].to(next(self.network.parameters()).device))[0].float().cpu().numpy()
            x1, y1 = max(0.0, float(box[0])), max(0.0, float(box[1]))
            bbox = [round(x1, 2), round(y1, 2), round(float(box[2]) - x1, 2), round(float(box[3]) - y1, 2)]
            out.append({"bbox": bbox, "embedding": [round(float(v), 7) for v in emb]})
        return out

    def evaluate(self, predictions: Mapping[str, Any], references: Mapping[str, Any]) -> dict[str, float]:
        return evaluate_embeddings(predictions, references, self.threshold_same)

    def describe(self) -> str:
        return f"{self.name} (facenet-pytorch MTCNN + InceptionResnetV1 {self.pretrained})"

    def weight_files(self) -> dict[str, Path]:
        return {"network": facenet_weights_file(self.pretrained)}
