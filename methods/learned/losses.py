"""Loss terms the learned human-machine methods share (rate from likelihoods, distillation).

These are training objectives only: a rate computed here is an estimate that
guides gradients; every reported bitrate comes from real entropy-coded bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def bits_per_pixel(likelihoods: Mapping[str, torch.Tensor], num_pixels: int) -> torch.Tensor:
    """Estimated bits per image pixel of all latents, as CompressAI's ``RateDistortionLoss`` computes it."""
    return sum(lk.log().sum() for lk in likelihoods.values()) / (-math.log(2) * num_pixels)


def distillation(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher || student) of the class distributions along dim 1, averaged over everything else.

    Works for ``N x C`` classification logits and ``N x C x H x W`` per-pixel ones.
    """
    t = temperature
    log_p_teacher = (teacher.detach() / t).log_softmax(1)
    log_p_student = (student / t).log_softmax(1)
    return (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(1).mean() * t * t
