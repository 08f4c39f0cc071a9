"""Tiny, seeded pieces for testing the learned human-machine methods on the CPU in seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from bench.datasets.folder import ImageFolder
from bench.tasks.classification import TorchvisionClassifier
from bench.training import CropSampler, module_digests, split_samples, train


def tiny_classifier(name: str = "cls", seed: int = 0) -> TorchvisionClassifier:
    """MobileNetV3-small with random (seeded) weights and 10 classes: a real torchvision network, untrained."""
    torch.manual_seed(seed)
    task = TorchvisionClassifier(name, model="mobilenet_v3_small", weights=None, num_classes=10, device="cpu")
    task.network  # noqa: B018 - built now, under the seed
    with torch.no_grad():  # spread the logits so that the class distributions are not flat
        task.network.classifier[-1].weight.mul_(20)
    return task


def small_photos(folder: Path, photos: dict[str, np.ndarray], size: tuple[int, int] = (96, 128)) -> ImageFolder:
    """The session's photographs, cropped to ``size`` (odd-sized for the last one), as a folder dataset."""
    folder.mkdir(parents=True, exist_ok=True)
    h, w = size
    for i, (name, arr) in enumerate(sorted(photos.items())):
        crop = arr[40 : 40 + h - i, 60 : 60 + w - 3 * i]
        Image.fromarray(np.ascontiguousarray(crop)).save(folder / f"{name}.png")
    return ImageFolder(folder)


def train_briefly(recipe: Any, dataset: ImageFolder, out: Path, settings: dict[str, Any], crop: int = 64) -> Any:
    """Run ``recipe`` with the project's training loop on the dataset (last image held out)."""
    train_samples, val_samples = split_samples(dataset.samples(), 1)
    sampler = CropSampler(dataset, train_samples, crop=crop, seed=5)
    val = [dataset.load(s) for s in val_samples]
    return train(recipe, sampler, settings, out, config={"test": True}, val_images=val, log_every=1)


def fixed_batch(dataset: ImageFolder, size: int = 2, crop: int = 64) -> Any:
    return CropSampler(dataset, dataset.samples()[:-1], crop=crop, seed=11).batch(size, "cpu")


__all__ = ["fixed_batch", "module_digests", "small_photos", "tiny_classifier", "train_briefly"]
