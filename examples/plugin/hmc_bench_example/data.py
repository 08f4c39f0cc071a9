"""``gradients``: smooth colour gradients made on the fly (no files), each with its dominant channel as label."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.datasets.base import ImageDataset, Sample


class Gradients(ImageDataset):
    """``count`` images of ``size`` x ``size``; image k is brightest in channel k % 3."""

    label_kinds = ("classification",)

    def __init__(self, name: str = "gradients", count: int = 3, size: int = 192):
        self.name, self.count, self.size = name, int(count), int(size)

    def samples(self) -> list[Sample]:
        return [Sample(id=f"gradient-{k}", source=f"generated gradient {k}") for k in range(self.count)]

    def load(self, sample: Sample) -> np.ndarray:
        k = int(sample.id.rsplit("-", 1)[1])
        ramp = np.linspace(0, 1, self.size, dtype=np.float64)
        image = np.empty((self.size, self.size, 3))
        image[..., 0] = ramp[None, :]
        image[..., 1] = ramp[:, None]
        image[..., 2] = 1 - ramp[None, :]
        image *= 0.5
        image[..., k % 3] += 0.45
        return (image * 255).round().astype(np.uint8)

    def targets(self, kind: str, samples: list[Sample]) -> dict[str, Any]:
        if kind != "classification":
            raise KeyError(f"dataset {self.name!r} has no {kind} labels")
        return {s.id: int(s.id.rsplit("-", 1)[1]) % 3 for s in samples}
