"""``mae-rgb``: mean absolute error of the 8-bit RGB values, declared so that BD-rate, report and leaderboard
read it (lower is better)."""

from __future__ import annotations

import numpy as np

from bench.metrics.registry import IMAGE, Metric, register


def mae(reference: np.ndarray, decoded: np.ndarray) -> float:
    return float(np.abs(reference.astype(np.int16) - decoded.astype(np.int16)).mean())


MAE_RGB = register(
    Metric(
        "mae-rgb",
        "",
        higher_is_better=False,
        low=0.0,
        human=True,
        scorers={IMAGE: lambda original: lambda decoded: mae(original, decoded)},
        description="mean absolute error of the 8-bit RGB values",
    )
)
