"""Label maps as JSON: single-channel uint8 PNG bytes in base64, and reading label files.

Predictions cross process boundaries and are stored in result rows, so a
segmentation map travels as a lossless PNG (a Cityscapes frame's map is a few
tens of kB) rather than as an array. Values are class ids 0..254; 255 is the
ignore label, as in Cityscapes' ``labelTrainIds`` and PASCAL VOC.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

IGNORE_INDEX = 255

#: the key under which a prediction carries its label map
PNG_KEY = "label_png"


class LabelMapError(ValueError):
    """A label map that cannot be read or has the wrong form; the message names the file."""


def encode_label_png(labels: np.ndarray) -> str:
    """An H x W map of class ids (0..255) as base64 of a lossless 8-bit grayscale PNG."""
    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise ValueError(f"label map must be H x W, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ValueError(f"label ids must lie in 0..255 to fit an 8-bit PNG (got {arr.min()}..{arr.max()})")
        arr = arr.astype(np.uint8)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(arr), [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:  # pragma: no cover - OpenCV fails only on absurd sizes
        raise ValueError(f"cannot PNG-encode a label map of shape {arr.shape}")
    return base64.b64encode(buf.tobytes()).decode("ascii")


def decode_label_png(data: str) -> np.ndarray:
    """The H x W uint8 map that :func:`encode_label_png` encoded."""
    raw = np.frombuffer(base64.b64decode(data, validate=True), dtype=np.uint8)
    arr = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
    if arr is None or arr.ndim != 2 or arr.dtype != np.uint8:
        raise ValueError("not a base64 8-bit single-channel PNG label map")
    return arr


def label_prediction(labels: np.ndarray) -> dict[str, Any]:
    """A JSON prediction holding a label map."""
    arr = np.asarray(labels)
    return {PNG_KEY: encode_label_png(arr), "height": int(arr.shape[0]), "width": int(arr.shape[1])}


def read_label_file(path: str | os.PathLike) -> np.ndarray:
    """An 8-bit single-channel label PNG (``*_labelIds.png``, ``*_labelTrainIds.png``) as H x W uint8.

    Palette PNGs (PASCAL VOC's ``SegmentationClass``) give their indices, not colours.
    """
    path = Path(path)
    if not path.is_file():
        raise LabelMapError(f"{path}: label file not found")
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            arr = np.asarray(img)
    except (OSError, SyntaxError, ValueError) as exc:
        raise LabelMapError(f"{path}: cannot read label file ({exc})") from exc
    if mode not in ("L", "P") or arr.ndim != 2:
        raise LabelMapError(
            f"{path}: expected an 8-bit single-channel label map (PIL mode L or P), got mode {mode} "
            f"with shape {arr.shape} (a colour visualisation such as *_gtFine_color.png is not a label map)"
        )
    return np.ascontiguousarray(arr, dtype=np.uint8)
