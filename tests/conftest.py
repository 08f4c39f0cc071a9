"""Shared fixtures: real photographs from scikit-image, written as files the tests own."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def assets_dir() -> Path | None:
    """The shared benchmark assets, if HMC_BENCH_ASSETS names them."""
    value = os.environ.get("HMC_BENCH_ASSETS")
    return Path(value) if value else None


requires_assets = pytest.mark.skipif(assets_dir() is None, reason="HMC_BENCH_ASSETS is not set")


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    import skimage.data

    return {
        "astronaut": skimage.data.astronaut(),
        "coffee": skimage.data.coffee(),
        "chelsea": skimage.data.chelsea(),
    }


@pytest.fixture()
def photo_folder(tmp_path: Path, photos: dict[str, np.ndarray]) -> Path:
    """Three real photographs as PNGs, one cropped to an odd size."""
    folder = tmp_path / "images"
    folder.mkdir()
    for name, arr in photos.items():
        if name == "chelsea":
            arr = arr[:211, :297]
        Image.fromarray(arr).save(folder / f"{name}.png")
    return folder
