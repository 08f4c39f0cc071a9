"""What a trainable method gives the training loop: its recipe (the model, the stages, validation), each stage's
settings, and the batches the loop hands its losses; and the errors training raises.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

OPTIMIZERS = ("adam", "adamw", "sgd")


class TrainingError(RuntimeError):
    """Training cannot go on (bad settings, a non-finite loss, an unusable checkpoint)."""


class FrozenModuleError(TrainingError):
    """A module a stage declares frozen was trained, changed or received gradients."""


@dataclass(frozen=True)
class Crop:
    """Where one training crop came from (for methods that crop labels with the image)."""

    sample: str
    top: int
    left: int
    height: int
    width: int


@dataclass
class Batch:
    """Random crops of training images: ``x`` is ``B x 3 x H x W`` float in [0, 1] on the device."""

    x: torch.Tensor
    crops: list[Crop]


@dataclass
class Stage:
    """One training stage: what it trains, what must stay frozen, what it minimises."""

    name: str
    trains: Sequence[str]
    frozen: Mapping[str, torch.nn.Module]
    loss: Callable[[Batch], Mapping[str, torch.Tensor]]
    aux_loss: Callable[[], torch.Tensor] | None = None


@dataclass
class Recipe:
    """A method's training: the model checkpoints hold, its stages, and held-out validation.

    ``trained_on`` names the frozen weights the trained model depends on (``{"backbone": path}``; a
    ``generated:<digest>`` string for weights made in memory): checkpoints record their SHA-256, so a
    trained module is never loaded onto other weights (``bench.training.weights.check_trained_on``).
    """

    model: torch.nn.Module
    stages: list[Stage]
    validate: Callable[[list[np.ndarray]], Mapping[str, float]] | None = None
    trained_on: dict[str, Path | str] = field(default_factory=dict)


@dataclass(frozen=True)
class StageSettings:
    """Hyper-parameters of one stage (``settings["stages"][name]``)."""

    lr: float
    batch_size: int
    epochs: float | None = None
    steps: int | None = None
    optimizer: str = "adam"
    milestones: tuple[float, ...] = ()
    gamma: float = 0.1
    weight_decay: float = 0.0
    clip_max_norm: float | None = None
    aux_lr: float = 1e-3

    @classmethod
    def from_config(cls, name: str, cfg: Mapping[str, Any] | None) -> StageSettings:
        if cfg is None:
            raise TrainingError(f"stage {name!r}: no settings (add stages.{name} to the recipe config)")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise TrainingError(f"stage {name!r}: unknown setting(s) {unknown}; known: {sorted(known)}")
        for key in ("lr", "batch_size"):
            if cfg.get(key) is None:
                raise TrainingError(f"stage {name!r}: {key} is not set")
        if cfg.get("steps") is None and cfg.get("epochs") is None:
            raise TrainingError(f"stage {name!r}: set steps or epochs")
        s = cls(**{**cfg, "milestones": tuple(float(m) for m in cfg.get("milestones") or ())})
        if s.optimizer not in OPTIMIZERS:
            raise TrainingError(f"stage {name!r}: optimizer must be one of {OPTIMIZERS}, not {s.optimizer!r}")
        if s.batch_size < 1 or s.lr <= 0:
            raise TrainingError(f"stage {name!r}: batch_size must be >= 1 and lr > 0 (got {s.batch_size}, {s.lr})")
        if any(not 0 < m < 1 for m in s.milestones):
            raise TrainingError(f"stage {name!r}: milestones are fractions of the stage in (0, 1), got {s.milestones}")
        return s

    def total_steps(self, n_images: int) -> int:
        if self.steps is not None:
            return int(self.steps)
        return max(1, math.ceil(float(self.epochs or 0) * math.ceil(n_images / self.batch_size)))

    def lr_at(self, step: int, total: int) -> float:
        """The step-wise schedule: ``lr * gamma ** (milestones passed)``."""
        passed = sum(1 for m in self.milestones if step >= round(m * total))
        return self.lr * self.gamma**passed
