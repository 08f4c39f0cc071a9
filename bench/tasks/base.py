"""What a machine task is to the runner.

A task has a network (a batch of RGB images in, one JSON-serialisable
prediction per image out) and an evaluator that turns the predictions of a
whole dataset at one rate point into metrics (mAP, mIoU, top-1, ...).

Two protocols:

- ``ground_truth``: the dataset's labels are the reference (COCO, Cityscapes,
  an ImageNet-style folder);
- ``fidelity``: for data without labels, the task network's prediction on the
  uncompressed image is the reference, computed once per (dataset, task) and
  cached. Results say which protocol made them (``meta.tasks[...].protocol``).

Predictions cross process boundaries and are stored in the result rows, so
they are plain JSON (lists, dicts, numbers; masks as COCO RLE or PNG bytes
in base64) — never tensors.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

GROUND_TRUTH = "ground_truth"
FIDELITY = "fidelity"


class TaskUnavailable(RuntimeError):
    """The task network cannot run here (missing weights or package); the message says how to fix it."""


class Task(abc.ABC):
    """One machine task: ``predict`` on images, ``evaluate`` a dataset's predictions.

    ``name`` keys the task in results (columns are ``<name>/<metric>``);
    ``metrics`` lists what ``evaluate`` returns, the first being the headline
    metric for RD curves and BD-rates.
    """

    #: the kind of ground truth the task needs from a dataset ("detection", "segmentation", "classification", ...)
    kind: ClassVar[str]
    #: metric names returned by ``evaluate``; the first is the headline
    metrics: ClassVar[tuple[str, ...]]
    #: whether the network runs in torch (the runner then keeps it in one process)
    uses_torch: ClassVar[bool] = False
    #: per-image counts the task reports beside its predictions (e.g. detections dropped for a NaN box);
    #: stored in each row's ``counts`` and summed per rate point as ``<task>/<counter>``
    counters: ClassVar[tuple[str, ...]] = ()

    def __init__(self, name: str, batch_size: int = 8, **options: Any):
        self.name = name
        self.batch_size = batch_size
        self.options = options

    @abc.abstractmethod
    def predict(self, images: Sequence[np.ndarray]) -> list[Any]:
        """One JSON-serialisable prediction per H x W x 3 uint8 RGB image, in input coordinates."""

    def predict_with_counts(self, images: Sequence[np.ndarray]) -> tuple[list[Any], list[dict[str, int]]]:
        """``predict`` and, per image, the task's ``counters`` (what the runner calls)."""
        return self.predict(images), [{} for _ in images]

    @abc.abstractmethod
    def evaluate(self, predictions: Mapping[str, Any], references: Mapping[str, Any]) -> dict[str, float]:
        """Metrics of ``predictions`` (sample id -> prediction) against ``references``.

        ``references`` maps the same sample ids to ground truth (from the
        dataset's ``targets``) or, under the fidelity protocol, to the
        prediction on the uncompressed image (``reference_from_prediction``).
        """

    def per_class_scores(self, predictions: Mapping[str, Any], references: Mapping[str, Any]) -> dict[str, float]:
        """The headline metric per class name (AP per COCO category, IoU per Cityscapes class); {} if none."""
        return {}

    def reference_from_prediction(self, prediction: Any) -> Any:
        """Turn a prediction on the uncompressed image into a reference (fidelity protocol)."""
        return prediction

    def unavailable_reason(self) -> str | None:
        """Why the task cannot run here (missing weights, package), or None."""
        return None

    def describe(self) -> str:
        return self.name

    def versions(self) -> dict[str, str]:
        return {}

    def torch_probe(self) -> Any:
        """A callable (images -> predictions) that runs the network in torch, for counting its operations;
        None when it does not run in torch (onnxruntime, TFLite, dlib, MediaPipe)."""
        return self.predict if self.uses_torch else None

    def weight_files(self) -> dict[str, Path]:
        """The files the network's weights are read from, by role: their SHA-256 are part of a row's identity.

        Networks whose weights ship inside a package (MediaPipe, dlib) have none: the package's version
        in :meth:`versions` stands for them.
        """
        return {}


class LazyNetwork:
    """A task network built on first use, after checking that it can be, and left behind when the task is pickled.

    Why: ``bench list`` builds every task and must stay cheap; a task sent to a worker process rebuilds its network
    there from its files instead of pickling tensors. A task mixes this in and implements :meth:`build_network`;
    it must also be a :class:`Task` (``name``, ``unavailable_reason``).
    """

    _network: Any = None

    def build_network(self) -> Any:
        """The network, ready to run (eval mode, on the task's device)."""
        raise NotImplementedError(f"{type(self).__name__} does not say how to build its network")

    @property
    def network(self) -> Any:
        """The network (built on first use); :class:`TaskUnavailable` naming what is missing when it cannot be."""
        if self._network is None:
            why = self.unavailable_reason()  # type: ignore[attr-defined]
            if why:
                raise TaskUnavailable(f"task {self.name!r}: {why}")  # type: ignore[attr-defined]
            self._network = self.build_network()
        return self._network

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__() or self.__dict__)  # what the other bases keep, without the network
        state["_network"] = None
        return state
