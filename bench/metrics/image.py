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


# OpenCV's thread pool is not fork-safe: a process that used it and then forks
# sample workers can deadlock in the child. The filters here gain nothing
# measurable from it (workers give the parallelism), so it is never started.
cv2.setNumThreads(1)

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
    if a.dtype == np.uint8 and b.dtype == np.uint8:
        return cv2.norm(a, b, cv2.NORM_L2SQR) / a.size  # integer accumulation: exact
    diff = a.astype(np.float64) - b.astype(np.float64)
    return float(np.einsum("ijk,ijk->", diff, diff)) / diff.size


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


_BLOCK_ROWS = 16  # rows per block in the pointwise stage: its arrays stay in cache


def _pooled(x: np.ndarray) -> np.ndarray:
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


def _ssim_and_cs(
    x: np.ndarray,
    mu_x: np.ndarray,
    xx: np.ndarray,
    xy: np.ndarray,
    mu_y: np.ndarray,
    yy: np.ndarray,
    c1: float,
    c2: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel means of the SSIM and contrast-structure maps of one scale.

    Inputs are Gaussian-filtered planes of pixels shifted by ``-_CENTRE``; with
    a = mu_x mu_y, s = mu_x^2 + mu_y^2 and p = 2 * 128 (mu_x + mu_y) + 2 * 128^2
    (what the shift takes out of the unshifted products), the luminance term is
    (2a + p + C1) / (s + p + C1) and the contrast-structure term
    (2(xy - a) + C2) / (xx + yy - s + C2). The pointwise work runs over blocks
    of rows so its temporaries stay in cache: at Kodak sizes memory traffic,
    not arithmetic, is the cost.
    """
    rows, cols = _valid_region(x.shape)
    r0, r1 = rows.start or 0, rows.stop if rows.stop is not None else x.shape[0]
    sum_ssim = np.zeros(3, dtype=np.float64)
    sum_cs = np.zeros(3, dtype=np.float64)
    centre2 = np.float32(2 * float(_CENTRE))
    offset = np.float32(2 * float(_CENTRE) ** 2 + c1)
    for top in range(r0, r1, _BLOCK_ROWS):
        blk = (slice(top, min(top + _BLOCK_ROWS, r1)), cols)
        mx, my = mu_x[blk], mu_y[blk]
        a = mx * my
        s = mx * mx
        s += my * my
        p = mx + my
        p *= centre2
        p += offset  # p + C1
        lum = a * 2
        lum += p
        p += s
        lum /= p
        cs = xy[blk] - a
        cs *= 2
        cs += c2
        den = xx[blk] + yy[blk]
        den -= s
        den += c2
        cs /= den
        sum_cs += cv2.sumElems(cs)[:3]  # double accumulation
        lum *= cs
        sum_ssim += cv2.sumElems(lum)[:3]
    count = (r1 - r0) * len(range(*cols.indices(x.shape[1])))
    return sum_ssim / count, sum_cs / count


class MSSSIM:
    """MS-SSIM against one reference image, equal to ``pytorch_msssim.ms_ssim``.

    The reference's pyramid and its filtered planes are computed once, so
    scoring many reconstructions of one image (a rate sweep) costs about half.
    Raises ``ValueError`` for images whose shorter side is at most 160 pixels,
    the smallest size that five scales of an 11-tap window allow.
    """

    def __init__(self, reference: np.ndarray, data_range: float = 255.0):
        if reference.ndim != 3 or reference.shape[2] != 3:
            raise ValueError(f"expected H x W x 3 RGB arrays, got shape {reference.shape}")
        smaller = min(reference.shape[:2])
        needed = (_WIN_SIZE - 1) * 2 ** (len(MS_SSIM_WEIGHTS) - 1)
        if smaller <= needed:
            raise ValueError(
                f"MS-SSIM needs images whose shorter side exceeds {needed} pixels, "
                f"got {reference.shape[1]}x{reference.shape[0]}"
            )
        self.shape = reference.shape
        self.c1 = np.float32((_K1 * data_range) ** 2)
        self.c2 = np.float32((_K2 * data_range) ** 2)
        self._levels = []  # per scale: (shifted y, filtered y, filtered y*y)
        y = reference.astype(np.float32) - _CENTRE
        for level in range(len(MS_SSIM_WEIGHTS)):
            self._levels.append((y, _filter(y), _filter(y * y)))
            if level < len(MS_SSIM_WEIGHTS) - 1:
                y = _pooled(y)

    def __call__(self, distorted: np.ndarray) -> float:
        if distorted.shape != self.shape:
            raise ValueError(f"images differ in shape: {distorted.shape} vs {self.shape}")
        x = distorted.astype(np.float32) - _CENTRE
        levels = len(MS_SSIM_WEIGHTS)
        factors = []
        for level, (y, mu_y, yy) in enumerate(self._levels):
            ssim_c, cs_c = _ssim_and_cs(x, _filter(x), _filter(x * x), _filter(x * y), mu_y, yy, self.c1, self.c2)
            if level < levels - 1:
                factors.append(np.maximum(cs_c, 0.0))
                x = _pooled(x)
            else:
                factors.append(np.maximum(ssim_c, 0.0))
        stacked = np.stack(factors)  # (levels, channels)
        weights = np.asarray(MS_SSIM_WEIGHTS)[:, None]
        return float(np.prod(stacked**weights, axis=0).mean())


def ms_ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """MS-SSIM of two RGB images (symmetric), equal to ``pytorch_msssim.ms_ssim``."""
    _check_pair(a, b)
    return MSSSIM(b, data_range)(a)


def ms_ssim_db(value: float) -> float:
    """MS-SSIM in decibels, -10 log10(1 - MS-SSIM), as RD plots show it."""
    if value >= 1.0:
        return math.inf
    return -10 * math.log10(1 - value)


def bits_per_pixel(num_bytes: int, height: int, width: int) -> float:
    """bpp of a bitstream of ``num_bytes`` for an image of ``height`` x ``width``."""
    return num_bytes * 8.0 / (height * width)
