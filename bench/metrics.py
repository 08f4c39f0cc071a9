"""Human-quality metrics computed the way CompressAI computes them.

CompressAI's ``compressai.utils.bench`` averages, per image, PSNR from the
mean squared error of the 8-bit RGB planes and MS-SSIM from ``pytorch_msssim``
(11-tap Gaussian, sigma 1.5, five scales, valid filtering, 2x2 average pooling
that zero-pads odd sizes). We reproduce those numbers without importing torch:
OpenCV's separable filter does the Gaussian, in float64, which is faster than
the grouped convolutions of ``pytorch_msssim``. Work is in float32 like
``pytorch_msssim``, on pixels shifted to be centred on zero so that the
variance terms lose no precision to cancellation.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_WIN_SIZE = 11
_WIN_SIGMA = 1.5
_K1, _K2 = 0.01, 0.03


def _gaussian_window(size: int = _WIN_SIZE, sigma: float = _WIN_SIGMA) -> np.ndarray:
    coords = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


_WINDOW = _gaussian_window().astype(np.float32)
_IDENTITY = np.ones(1, dtype=np.float32)
_CENTRE = np.float32(128.0)


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected H x W x 3 RGB arrays, got shape {a.shape}")


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error over all pixels and channels, computed exactly."""
    _check_pair(a, b)
    diff = a.astype(np.int32) - b.astype(np.int32)
    return float(np.einsum("ijk,ijk->", diff, diff, dtype=np.int64)) / diff.size


def psnr(a: np.ndarray, b: np.ndarray, max_val: float = 255.0) -> float:
    """PSNR in dB of two 8-bit RGB images; ``inf`` when they are identical."""
    err = mse(a, b)
    if err == 0:
        return math.inf
    return 20 * math.log10(max_val) - 10 * math.log10(err)


def _filter(x: np.ndarray) -> np.ndarray:
    """Separable Gaussian over the whole plane; callers keep the valid region.

    Like ``pytorch_msssim``, a dimension shorter than the window is not filtered.
    """
    h, w = x.shape[:2]
    kx = _WINDOW if w >= _WIN_SIZE else _IDENTITY
    ky = _WINDOW if h >= _WIN_SIZE else _IDENTITY
    return cv2.sepFilter2D(x, cv2.CV_32F, kx, ky, borderType=cv2.BORDER_REFLECT)


def _valid_region(shape: tuple[int, ...]) -> tuple[slice, slice]:
    """Rows and columns a 'valid' (unpadded) convolution produces."""
    half = _WIN_SIZE // 2
    h, w = shape[:2]
    rows = slice(half, h - half) if h >= _WIN_SIZE else slice(None)
    cols = slice(half, w - half) if w >= _WIN_SIZE else slice(None)
    return rows, cols


def _channel_means(x: np.ndarray) -> np.ndarray:
    return np.asarray(cv2.mean(x)[:3], dtype=np.float64)


def _ssim_terms(x: np.ndarray, y: np.ndarray, data_range: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean SSIM and contrast-structure terms of one scale.

    ``x`` and ``y`` hold pixels minus ``_CENTRE``: variances and covariance do
    not depend on the shift, the means get it added back. Arithmetic is in
    place because at Kodak sizes memory traffic, not arithmetic, is the cost.
    """
    c1 = np.float32((_K1 * data_range) ** 2)
    c2 = np.float32((_K2 * data_range) ** 2)
    region = _valid_region(x.shape)
    mu1, mu2 = _filter(x)[region], _filter(y)[region]
    xx, yy, xy = _filter(x * x)[region], _filter(y * y)[region], _filter(x * y)[region]
    tmp = mu1 * mu2
    xy -= tmp  # sigma12
    xy *= 2
    xy += c2  # cs numerator
    np.multiply(mu1, mu1, out=tmp)
    xx -= tmp  # sigma1^2
    xx += yy
    np.multiply(mu2, mu2, out=tmp)
    xx -= tmp  # sigma1^2 + sigma2^2
    xx += c2
    cs_map = np.divide(xy, xx, out=xy)
    mu1 += _CENTRE
    mu2 += _CENTRE
    np.multiply(mu1, mu2, out=tmp)
    tmp *= 2
    tmp += c1  # luminance numerator
    np.multiply(mu1, mu1, out=mu1)
    np.multiply(mu2, mu2, out=mu2)
    mu1 += mu2
    mu1 += c1
    tmp /= mu1
    tmp *= cs_map  # ssim map
    return _channel_means(tmp), _channel_means(cs_map)


def _avg_pool2(x: np.ndarray) -> np.ndarray:
    """2x2 average pooling as ``F.avg_pool2d(x, 2, padding=size % 2)``.

    An odd dimension is zero-padded by one on both sides and the zeros count in
    the average (PyTorch's ``count_include_pad=True``).
    """
    ph, pw = x.shape[0] % 2, x.shape[1] % 2
    if ph or pw:
        # the zero padding of PyTorch is zero in pixel values, not in shifted ones
        x = cv2.copyMakeBorder(x, ph, ph, pw, pw, cv2.BORDER_CONSTANT, value=(-float(_CENTRE),) * 3)
        x = x[: x.shape[0] // 2 * 2, : x.shape[1] // 2 * 2]
    return cv2.resize(x, (x.shape[1] // 2, x.shape[0] // 2), interpolation=cv2.INTER_AREA)


def ms_ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """MS-SSIM of two RGB images, equal to ``pytorch_msssim.ms_ssim`` on them.

    Raises ``ValueError`` for images whose shorter side is at most 160 pixels,
    the smallest size five scales of an 11-tap window allow.
    """
    _check_pair(a, b)
    smaller = min(a.shape[:2])
    needed = (_WIN_SIZE - 1) * 2 ** (len(MS_SSIM_WEIGHTS) - 1)
    if smaller <= needed:
        raise ValueError(
            f"MS-SSIM needs images whose shorter side exceeds {needed} pixels, got {a.shape[1]}x{a.shape[0]}"
        )
    x = a.astype(np.float32) - _CENTRE
    y = b.astype(np.float32) - _CENTRE
    levels = len(MS_SSIM_WEIGHTS)
    factors = []
    for level in range(levels):
        ssim_c, cs_c = _ssim_terms(x, y, data_range)
        if level < levels - 1:
            factors.append(np.maximum(cs_c, 0.0))
            x, y = _avg_pool2(x), _avg_pool2(y)
        else:
            factors.append(np.maximum(ssim_c, 0.0))
    stacked = np.stack(factors)  # (levels, channels)
    weights = np.asarray(MS_SSIM_WEIGHTS)[:, None]
    return float(np.prod(stacked**weights, axis=0).mean())


def ms_ssim_db(value: float) -> float:
    """MS-SSIM in decibels, -10 log10(1 - MS-SSIM), as RD plots show it."""
    if value >= 1.0:
        return math.inf
    return -10 * math.log10(1 - value)


def bits_per_pixel(num_bytes: int, height: int, width: int) -> float:
    """bpp of a bitstream of ``num_bytes`` for an image of ``height`` x ``width``."""
    return num_bytes * 8.0 / (height * width)
