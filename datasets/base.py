"""What a dataset is to the runner: named samples that load as RGB arrays, and their labels."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Sample:
    """One item of a dataset. ``id`` is stable across runs: results are keyed by it and by ``content``."""

    id: str
    source: str  # a path, or a description of where the pixels come from
    #: digest of what the sample is (``ImageDataset.content_digest``), set by the runner before measuring
    content: str | None = None


class ImageDataset(abc.ABC):
    """A finite, ordered set of images, with ground truth for the task kinds it has labels for."""

    name: str
    #: task kinds this dataset has labels for ("detection", "segmentation", "classification", ...)
    label_kinds: tuple[str, ...] = ()

    @abc.abstractmethod
    def samples(self) -> list[Sample]:
        """All samples, in a stable order."""

    @abc.abstractmethod
    def load(self, sample: Sample) -> np.ndarray:
        """The sample's pixels as H x W x 3 uint8 RGB."""

    def targets(self, kind: str, samples: list[Sample]) -> dict[str, Any]:
        """Ground truth of ``kind`` for ``samples`` (sample id -> what the task's evaluator reads).

        A dataset without labels of that kind raises ``KeyError``; the runner
        then uses the fidelity protocol.
        """
        raise KeyError(f"dataset {self.name!r} has no {kind} labels")

    def describe(self) -> str:
        return self.name

    def content_digest(self, sample: Sample) -> str:
        """What the sample is, as rows record it: its file's bytes when its source is one file, else its pixels.

        Datasets whose samples read more than one file (images with label maps, say) extend it.
        """
        from bench.running.keys import sample_content

        path = Path(sample.source)
        return sample_content(path) if path.is_file() else sample_content(None, self.load(sample))

    def label_files(self) -> list[Path]:
        """Files holding the ground truth shared by all samples (COCO's annotations); their digests go in meta."""
        return []


class DatasetUnavailable(RuntimeError):
    """The dataset is not on this machine; the message says how to get it."""
