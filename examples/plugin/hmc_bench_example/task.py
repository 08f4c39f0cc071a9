"""``dominant-channel``: which of R, G, B is brightest on average, scored by hmc-bench's top-1 evaluator."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.tasks.classification import ClassificationTask, class_prediction


class DominantChannel(ClassificationTask):
    """A three-class 'network': the softmax of the mean of each channel."""

    def __init__(self, name: str = "dominant-channel", **options: Any):
        super().__init__(name, 3, **options)

    def predict(self, images: Sequence[np.ndarray]) -> list[Any]:
        out = []
        for image in images:
            means = image.reshape(-1, 3).mean(0) / 255.0
            scores = np.exp(8 * means) / np.exp(8 * means).sum()
            out.append(class_prediction(scores))
        return out
