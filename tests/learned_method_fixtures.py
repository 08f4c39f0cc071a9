"""Tiny, seeded pieces for testing the learned human-machine methods on the CPU in seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from bench.datasets.folder import ImageFolder
from bench.tasks.classification import TorchvisionClassifier
from bench.training.frozen import module_digests
from bench.training.loop import CropSampler, split_samples, train


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny networks run fastest on one thread, and the test machine's cores are shared."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_classifier(name: str = "cls", seed: int = 0) -> TorchvisionClassifier:
    """MobileNetV3-small with random (seeded) weights and 10 classes: a real torchvision network, untrained."""
    import skimage.data
    from torchvision.transforms.functional import normalize

    from bench.methods.human_machine.task_split import IMAGENET_MEAN, IMAGENET_STD

    torch.manual_seed(seed)
    task = TorchvisionClassifier(name, model="mobilenet_v3_small", weights=None, num_classes=10, device="cpu")
    net = task.network
    # Untrained, eval-mode batch norm shrinks activations to nothing: calibrate its statistics on real photos
    # (one cumulative pass in train mode) so that features and class distributions vary with the input.
    photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea()]
    x = torch.stack([torch.from_numpy(np.ascontiguousarray(p[:256, :256])).permute(2, 0, 1) for p in photos])
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    net.train()
    with torch.no_grad():
        net(normalize(x.float() / 255, mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD)))
        net.classifier[-1].weight.mul_(100)  # its init (std 0.01) makes near-equal logits
    net.eval()
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


__all__ = ["fixed_batch", "module_digests", "one_torch_thread", "small_photos", "tiny_classifier", "train_briefly"]
