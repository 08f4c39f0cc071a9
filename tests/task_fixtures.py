"""A small deterministic task for testing the task plumbing without network weights."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bench.methods.codecs.pillow import PillowCodec
from bench.tasks.base import Task


class DominantChannel(Task):
    """Predicts which RGB channel has the largest mean in each 4x4 grid cell (a toy classifier)."""

    kind = "grid-classification"
    metrics = ("accuracy",)

    def __init__(self, name: str = "dominant", batch_size: int = 4, grid: int = 4):
        super().__init__(name, batch_size)
        self.grid = grid
        self.calls = 0

    def predict(self, images: Sequence[np.ndarray]) -> list[Any]:
        self.calls += len(images)
        out = []
        for img in images:
            h, w = img.shape[:2]
            cells = []
            for i in range(self.grid):
                for j in range(self.grid):
                    block = img[
                        i * h // self.grid : (i + 1) * h // self.grid, j * w // self.grid : (j + 1) * w // self.grid
                    ]
                    cells.append(int(np.argmax(block.reshape(-1, 3).mean(axis=0))))
            out.append(cells)
        return out

    def evaluate(self, predictions: Mapping[str, Any], references: Mapping[str, Any]) -> dict[str, float]:
        hits = sum(int(a == b) for sid in predictions for a, b in zip(predictions[sid], references[sid]))
        total = sum(len(references[sid]) for sid in predictions)
        return {"accuracy": hits / total}


class CountingJPEG(PillowCodec):
    """JPEG at qualities 5, 50, 95 that counts its encodes."""

    def __init__(self):
        super().__init__("jpeg", [5, 50, 95], "JPEG")
        self.encodes = 0

    def encode(self, image, rate):
        self.encodes += 1
        return super().encode(image, rate)
