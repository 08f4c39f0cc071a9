"""Training images for the learned codecs: folders in, random flipped crops out.

Why a module of its own: the crops a step sees must depend only on
``(seed, step)``, so that a run resumed from a checkpoint sees exactly the
batches an uninterrupted run would have seen. No sampler state is kept:
epoch ``e`` visits the images in ``randperm(n, seed(e))`` order, and the crop
and flips of the ``k``-th sample drawn are made by a generator seeded with
``k``. The cropping and flipping are torchvision's functional ops.

Unreadable or corrupt files, and images smaller than the crop, are reported
by name and left out when the folder is scanned; the run goes on without them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bench.io.images import IMAGE_EXTENSIONS, ImageError, read_rgb8

log = logging.getLogger("bench.train")

_SEED_STRIDE = 1_000_003  # seeds of runs with different `seed` stay apart
_SAMPLE_SEEDS = 1 << 48  # per-sample seeds live above the per-epoch ones


class TrainDataError(ValueError):
    """A training or validation folder that cannot be used; the message says why."""


def list_images(folders: Sequence[str | os.PathLike]) -> list[Path]:
    """Every image file under ``folders`` (recursively), sorted, so a run lists them the same way each time."""
    if not folders:
        raise TrainDataError("no image folders given (data=[...])")
    files: list[Path] = []
    for folder in folders:
        root = Path(os.path.expanduser(str(folder)))
        if not root.is_dir():
            raise TrainDataError(f"image folder not found: {root}")
        found = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not found:
            raise TrainDataError(f"image folder {root} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        files.extend(found)
    return files


@dataclass
class ScanReport:
    """What a scan kept and what it left out, with the reason for each file left out."""

    usable: list[Path] = field(default_factory=list)
    corrupt: dict[str, str] = field(default_factory=dict)
    too_small: dict[str, tuple[int, int]] = field(default_factory=dict)

    def summary(self) -> dict[str, int]:
        return {"usable": len(self.usable), "corrupt": len(self.corrupt), "too_small": len(self.too_small)}


def scan_images(files: Sequence[Path], min_size: int = 0) -> ScanReport:
    """Decode every file once; keep those that decode and are at least ``min_size`` on both sides."""
    report = ScanReport()
    for path in files:
        try:
            height, width = read_rgb8(path).shape[:2]
        except ImageError as exc:
            report.corrupt[str(path)] = str(exc)
            log.warning("skipping training image %s", exc)
            continue
        if min(height, width) < min_size:
            report.too_small[str(path)] = (height, width)
            log.warning("skipping training image %s: %dx%d is smaller than the %d crop", path, width, height, min_size)
            continue
        report.usable.append(path)
    return report


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class CropSampler:
    """Batches of random ``patch_size`` crops with random horizontal and vertical flips.

    ``batch(step)`` is a pure function of ``(seed, step)``: resuming needs no saved state.
    """

    def __init__(self, files: Sequence[Path], patch_size: int, batch_size: int, seed: int):
        if not files:
            raise TrainDataError("no usable training images (all missing, corrupt or smaller than the crop)")
        if patch_size < 1 or batch_size < 1:
            raise TrainDataError(f"patch_size and batch_size must be positive, got {patch_size}, {batch_size}")
        self.files = list(files)
        self.patch_size = patch_size
        self.batch_size = batch_size
        self.seed = seed
        self._perm_epoch = -1
        self._perm: list[int] = []

    def _order(self, epoch: int) -> list[int]:
        if epoch != self._perm_epoch:
            gen = _generator(self.seed * _SEED_STRIDE + epoch)
            self._perm = torch.randperm(len(self.files), generator=gen).tolist()
            self._perm_epoch = epoch
        return self._perm

    def sample(self, k: int) -> torch.Tensor:
        """The ``k``-th sample of the run: a 3 x P x P float crop in [0, 1]."""
        import torchvision.transforms.v2.functional as TF

        n = len(self.files)
        path = self.files[self._order(k // n)[k % n]]
        image = read_rgb8(path)
        height, width = image.shape[:2]
        p = self.patch_size
        if min(height, width) < p:
            raise TrainDataError(f"{path}: {width}x{height} is smaller than the {p} crop")
        gen = _generator(_SAMPLE_SEEDS + self.seed * _SEED_STRIDE + k)
        top = int(torch.randint(0, height - p + 1, (1,), generator=gen))
        left = int(torch.randint(0, width - p + 1, (1,), generator=gen))
        hflip, vflip = (torch.rand(2, generator=gen) < 0.5).tolist()
        x = torch.from_numpy(np.array(image)).permute(2, 0, 1)  # a writable copy
        x = TF.crop(x, top, left, p, p)
        if hflip:
            x = TF.horizontal_flip(x)
        if vflip:
            x = TF.vertical_flip(x)
        return x.to(torch.float32).div(255)

    def batch(self, step: int) -> torch.Tensor:
        """The batch of optimisation step ``step`` (0-based): B x 3 x P x P."""
        first = step * self.batch_size
        return torch.stack([self.sample(first + j) for j in range(self.batch_size)])
