"""Reading images into the one form every codec and metric takes: H x W x 3 uint8 RGB.

The conversion rules are the harness's, documented here and in the README:

- grayscale (L, 1, I;16, I, F) is replicated to three channels;
- palette images are expanded to RGB;
- an alpha channel is dropped, as ``PIL.Image.convert("RGB")`` drops it
  (what CompressAI's benchmark does), not composited;
- 16-bit samples are scaled to 8 bits by rounding ``v * 255 / 65535``
  (Pillow's own conversion would clip them at 255);
- CMYK JPEGs are converted by Pillow, which handles Adobe's inverted CMYK;
- odd sizes are kept; codecs that need a multiple of a stride pad and crop.

Anything Pillow cannot decode (empty, truncated, not an image) raises
:class:`ImageError` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class ImageError(ValueError):
    """An input image that cannot be read; the message names the file."""


def _to_rgb8(img: Image.Image, name: str) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        if arr.ndim != 2:
            raise ImageError(f"{name}: unsupported {mode} image with shape {arr.shape}")
        hi = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        arr = np.clip(np.rint(arr * (255.0 / hi)), 0, 255).astype(np.uint8)
        return np.repeat(arr[:, :, None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        hi = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        arr = np.clip(np.rint(arr * (255.0 / hi)), 0, 255).astype(np.uint8)
        return np.repeat(arr[:, :, None], 3, axis=2)
    if mode in ("RGB;16", "RGBA;16", "RGBX;16"):  # pragma: no cover - Pillow versions differ
        raise ImageError(f"{name}: 48/64-bit colour images are not supported by this Pillow")
    return np.ascontiguousarray(np.asarray(img.convert("RGB")))


def read_rgb8(path: str | os.PathLike) -> np.ndarray:
    """Read ``path`` as an H x W x 3 uint8 RGB array, by the module's rules."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if size == 0:
        raise ImageError(f"{path}: empty file")
    # A truncated file must fail, not decode as a grey half-image.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(path) as img:
            img.load()
            arr = _to_rgb8(img, str(path))
    except UnidentifiedImageError as exc:
        raise ImageError(f"{path}: not an image Pillow can identify") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, ImageError):
            raise
        raise ImageError(f"{path}: corrupt or truncated image ({exc})") from exc
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(f"{path}: image has no pixels ({arr.shape[1]}x{arr.shape[0]})")
    return arr


def as_rgb8(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Check and normalise an in-memory array (e.g. a package's sample image)."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ImageError(f"{name}: expected H x W x 3 image, got shape {arr.shape}")
    arr = arr[:, :, :3]
    if arr.dtype == np.uint16:
        arr = np.rint(arr.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise ImageError(f"{name}: expected uint8 or uint16 pixels, got {arr.dtype}")
    return np.ascontiguousarray(arr)
