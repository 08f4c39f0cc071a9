"""The embedded default: real photographs that scikit-image ships.

No download, no dataset root: ``python -m bench run`` with no dataset named
benchmarks these, so a fresh install prints a real RD table at once.
"""

from __future__ import annotations

import numpy as np

from bench.datasets.base import DatasetUnavailable, ImageDataset, Sample
from bench.io.images import as_rgb8

DEFAULT_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "camera")


class PackageSamples(ImageDataset):
    """Named images from ``skimage.data`` (all offline in scikit-image)."""

    def __init__(self, images: list[str] | tuple[str, ...] = DEFAULT_IMAGES, name: str = "samples"):
        self.name = name
        self.images = list(images)

    def samples(self) -> list[Sample]:
        try:
            import skimage.data  # noqa: F401
        except ImportError as exc:
            raise DatasetUnavailable("dataset 'samples' needs scikit-image: pip install scikit-image") from exc
        return [Sample(id=name, source=f"skimage.data.{name}") for name in self.images]

    def load(self, sample: Sample) -> np.ndarray:
        import skimage.data

        loader = getattr(skimage.data, sample.id, None)
        if loader is None:
            raise DatasetUnavailable(f"dataset 'samples': scikit-image has no sample image {sample.id!r}")
        return as_rgb8(loader(), name=sample.source)

    def describe(self) -> str:
        return f"{self.name} (scikit-image sample images: {', '.join(self.images)})"
