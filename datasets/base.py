"""What a dataset is to the runner: named samples that load as RGB arrays."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sample:
    """One item of a dataset. ``id`` is stable across runs: results are keyed by it."""

    id: str
    source: str  # a path, or a description of where the pixels come from


class ImageDataset(abc.ABC):
    """A finite, ordered set of images (ground truth for tasks comes later)."""

    name: str

    @abc.abstractmethod
    def samples(self) -> list[Sample]:
        """All samples, in a stable order."""

    @abc.abstractmethod
    def load(self, sample: Sample) -> np.ndarray:
        """The sample's pixels as H x W x 3 uint8 RGB."""

    def describe(self) -> str:
        return self.name


class DatasetUnavailable(RuntimeError):
    """The dataset is not on this machine; the message says how to get it."""
