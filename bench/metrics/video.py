"""Human-quality metrics and rates of video clips (``T x H x W x 3`` uint8 RGB).

- ``psnr-rgb``: PSNR from the exact MSE of the 8-bit RGB planes over every
  frame of the clip (one MSE per clip, like the image PSNR of one image);
- ``psnr-yuv420``: the weighting of the video coding field (JVET common test
  conditions), ``(6 PSNR_Y + PSNR_U + PSNR_V) / 8``, each plane's PSNR from
  its MSE over all frames (as FFmpeg's ``psnr`` filter averages a sequence).
  Both clips are converted to 4:2:0 with swscale, BT.601 limited range, 2x2
  area chroma (:func:`bench.io.video.yuv420_planes`), the conversion the video
  codecs here feed their encoders with;
- ``ms-ssim-rgb``: MS-SSIM of each frame (:class:`bench.metrics.image.MSSSIM`,
  equal to ``pytorch_msssim``), averaged over the frames.

Rates: ``bpp`` = bytes x 8 / (frames x height x width), over the clip's own
pixels (not the even-padded size a codec may code); ``kbps`` = bytes x 8 x
fps / (frames x 1000), from the clip's frame rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np

from bench.io.video import frame_rate, yuv420_planes
from bench.metrics import image as M

#: metrics every clip gets, whatever the run's ``metrics`` list says
ALWAYS_FOR_CLIPS = ("psnr-yuv420",)
#: (Y, U, V) weights of ``psnr-yuv420``
YUV_WEIGHTS = (6.0, 1.0, 1.0)


def _as_frames(clip: np.ndarray) -> np.ndarray:
    """A clip, or an image as a one-frame clip, as a plain array."""
    arr = np.asarray(clip)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected a T x H x W x 3 clip (or an H x W x 3 image), got shape {arr.shape}")
    return arr


def _psnr(sq_err: float, count: int, max_val: float = 255.0) -> float:
    if sq_err == 0:
        return math.inf
    return 20 * math.log10(max_val) - 10 * math.log10(sq_err / count)


def psnr_rgb(decoded: np.ndarray, original: np.ndarray) -> float:
    """PSNR of two clips from the exact MSE over all their frames and RGB planes."""
    a, b = _as_frames(decoded), _as_frames(original)
    if a.shape != b.shape:
        raise ValueError(f"clips differ in shape: {a.shape} vs {b.shape}")
    t, h, w, _ = a.shape
    return M.psnr(a.reshape(t * h, w, 3), b.reshape(t * h, w, 3))  # frames stacked: the same MSE


class PSNRYUV420:
    """``psnr-yuv420`` against one original clip (its 4:2:0 planes are converted once)."""

    def __init__(self, original: np.ndarray):
        frames = _as_frames(original)
        self.shape = frames.shape
        self._planes = [yuv420_planes(f) for f in frames]

    def per_plane(self, decoded: np.ndarray) -> tuple[float, float, float]:
        """PSNR of Y, U and V, each from its squared error summed over all frames."""
        frames = _as_frames(decoded)
        if frames.shape != self.shape:
            raise ValueError(f"clips differ in shape: {frames.shape} vs {self.shape}")
        sums = [0.0, 0.0, 0.0]
        counts = [0, 0, 0]
        for frame, reference in zip(frames, self._planes):
            for k, (p, r) in enumerate(zip(yuv420_planes(frame), reference)):
                sums[k] += cv2.norm(p, r, cv2.NORM_L2SQR)  # integer accumulation: exact
                counts[k] += r.size
        return tuple(_psnr(s, n) for s, n in zip(sums, counts))  # type: ignore[return-value]

    def __call__(self, decoded: np.ndarray) -> float:
        """The weighted PSNR; ``inf`` when a plane is decoded without error."""
        values = self.per_plane(decoded)
        return sum(w * v for w, v in zip(YUV_WEIGHTS, values)) / sum(YUV_WEIGHTS)


def psnr_yuv420(decoded: np.ndarray, original: np.ndarray) -> float:
    """``(6 PSNR_Y + PSNR_U + PSNR_V) / 8`` of two clips (see the module docstring)."""
    return PSNRYUV420(original)(decoded)


class ClipMSSSIM:
    """MS-SSIM per frame against one original clip, averaged over the frames.

    Raises ``ValueError`` (as :class:`bench.metrics.image.MSSSIM`) for frames whose
    shorter side is 160 pixels or less.
    """

    def __init__(self, original: np.ndarray):
        frames = _as_frames(original)
        self.shape = frames.shape
        self._frames = [M.MSSSIM(f) for f in frames]

    def __call__(self, decoded: np.ndarray) -> float:
        frames = _as_frames(decoded)
        if frames.shape != self.shape:
            raise ValueError(f"clips differ in shape: {frames.shape} vs {self.shape}")
        return math.fsum(score(f) for score, f in zip(self._frames, frames)) / len(self._frames)


#: metric name -> factory taking the original clip and returning a scorer of decoded clips
CLIP_METRICS: dict[str, Callable[[np.ndarray], Callable[[np.ndarray], float]]] = {
    "psnr-rgb": lambda original: lambda decoded: psnr_rgb(decoded, original),
    "psnr-yuv420": PSNRYUV420,
    "ms-ssim-rgb": ClipMSSSIM,
}


def clip_metric_names(configured: Sequence[str]) -> list[str]:
    """The metrics a clip is scored with: the run's, plus those every clip gets."""
    return list(dict.fromkeys([*configured, *ALWAYS_FOR_CLIPS]))


def rate_columns(num_bytes: int, sample: np.ndarray) -> dict[str, Any]:
    """Row columns for ``num_bytes`` spent on ``sample``: ``bpp``; for a clip also ``kbps`` and ``frames``."""
    if sample.ndim == 3:
        return {"bpp": M.bits_per_pixel(num_bytes, *sample.shape[:2])}
    frames, height, width = sample.shape[:3]
    fps = frame_rate(sample)
    return {
        "bpp": num_bytes * 8.0 / (frames * height * width),
        "kbps": num_bytes * 8.0 * fps / (frames * 1000.0) if fps else math.nan,
        "frames": int(frames),
    }
