"""JPEG AI's objective quality suite: seven human-quality metrics and their mean BD-rate.

JPEG AI (ISO/IEC 6048, ITU-T T.840) reports coding efficiency as BD-rate on seven metrics (MS-SSIM, VIF, FSIM,
NLPD, IW-SSIM, VMAF, PSNR-HVS) and as headline the mean of those seven BD-rates. The values here follow the
conventions of its Objective Quality Assessment Framework, the ``src/codec/metrics`` package of the JPEG AI
reference software, so that our figures can stand next to JPEG AI's:

* **Colour.** 8-bit RGB is first put on ``2**bits - 1`` levels in [0, 1] (``bits`` = 10, the framework's internal
  bit depth), then converted to YCbCr with the BT.709 matrix at full range (``Y = 0.2126 R + 0.7152 G + 0.0722 B``,
  ``Cb = (B - Y) / 1.8556 + 0.5``, ``Cr = (R - Y) / 1.5748 + 0.5``), clipped to [0, 1] and rounded to 10 bits again.
  Chroma stays 4:4:4: the harness's images are RGB, nothing is subsampled.
* **Planes.** FSIM is FSIMc on the (10-bit rounded) RGB image; every other metric sees luma only: MS-SSIM, VIF,
  NLPD, IW-SSIM and PSNR-HVS the Y plane, VMAF the 10-bit 4:4:4 YCbCr picture, of which libvmaf reads Y.
* **Scales.** MS-SSIM on Y in 10-bit code values (data range 1023); VIF, NLPD and PSNR-HVS on Y in [0, 1]; IW-SSIM
  on Y x 255; FSIM on RGB in [0, 1]; VMAF on the 10-bit planes (``vmaf_v0.6.1``, one frame, so no motion).
* **Small images** are padded at the bottom and right as the framework pads them: with zeros to at least 164
  pixels (MS-SSIM), 64 (VIF), 128 (NLPD) and 256 (IW-SSIM), and by repeating the last row and column to a multiple
  of 8 (PSNR-HVS).
* **PSNR-HVS, not PSNR-HVS-M.** The framework keeps the first value of ``psnr_hvsm.psnr_hvs_hvsm`` and JPEG AI's
  result tables head that column PSNR-HVS; :func:`psnr_hvs_m` gives the masked variant as well, outside the seven.
* **Before BD-rate** JPEG AI's BD script (reference software, ``report_bdrate_results.py``) takes every metric as
  it is, except NLPD, a distance, which enters as ``1 - NLPD``; it interpolates with PCHIP, takes BD-rate per image
  against the anchor and averages over images, then over the seven metrics, and leaves the mean empty when any
  metric could not be computed. :data:`JPEG_AI_METRICS` records this per metric; :func:`jpeg_ai_mean_bd_rate` keeps
  the same rule.

Each metric comes from a maintained package (JPEG AI's own implementation where no maintained one reproduces it):
MS-SSIM from ``pytorch-msssim`` (the package the framework calls), VIF (pixel domain), FSIM and IW-SSIM from
``piq`` (equal to the framework's implementations to 1e-5), NLPD from ``IQA_pytorch``, the very implementation the
framework ships, PSNR-HVS from ``psnr-hvsm`` (the package the framework calls) and VMAF from libvmaf inside the FFmpeg
that ``imageio-ffmpeg`` ships. Every package is imported when its metric is first used; ``pip install
'hmc-bench[quality]'`` installs them all, and a missing one is an error naming it.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import json
import math
import os
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

#: internal bit depth of JPEG AI's quality framework (its ``--internal-bits`` default)
INTERNAL_BITS = 10
#: BT.709 luma weights (R, G, B) and the Cb, Cr divisors of the framework's full-range conversion
BT709_LUMA = (0.2126, 0.7152, 0.0722)
BT709_CB_CR_DIVISORS = (1.8556, 1.5748)
#: the libvmaf model JPEG AI's framework uses (the vmaf tool's default)
VMAF_MODEL = "vmaf_v0.6.1"

#: smallest height and width each metric is computed on; smaller images are zero-padded as the framework does
_MIN_SIZE = {"ms-ssim": 164, "vif": 64, "nlpd": 128, "iw-ssim": 256}
_EXTRA = "hmc-bench[quality]"
#: module -> (distribution on PyPI, version this project pins)
_PACKAGES = {
    "pytorch_msssim": ("pytorch-msssim", "1.0.0"),
    "piq": ("piq", "0.8.0"),
    "IQA_pytorch": ("IQA_pytorch", "0.1"),
    "psnr_hvsm": ("psnr-hvsm", "0.3.0"),
    "imageio_ffmpeg": ("imageio-ffmpeg", "0.8.1"),
    "torch": ("torch", "2.14.1"),
}


class MissingPackageError(ImportError):
    """A metric's package is not installed; the message says what to install."""


class VmafUnavailableError(RuntimeError):
    """No FFmpeg with libvmaf was found; the message says how to get one."""


def _import(module: str, metric: str) -> Any:
    """Import a metric's package when first needed, or fail naming what to install."""
    try:
        # psnr_hvsm prints a notice on stdout when its optional torch back-end is absent
        with contextlib.redirect_stdout(io.StringIO()):
            return importlib.import_module(module)
    except ImportError as exc:
        dist, version = _PACKAGES[module]
        raise MissingPackageError(
            f"{metric} needs the {dist} package: pip install '{_EXTRA}' (or pip install {dist}=={version})"
        ) from exc


# ---------------------------------------------------------------------------------------------------------------
# the framework's image representation


@dataclass(frozen=True)
class JpegAiPlanes:
    """An image as JPEG AI's quality framework holds it: RGB and 4:4:4 YCbCr, in [0, 1] on ``2**bits - 1`` levels."""

    rgb: np.ndarray  # H x W x 3, float32
    ycbcr: np.ndarray  # 3 x H x W (Y, Cb, Cr), float32
    bits: int

    @property
    def y(self) -> np.ndarray:
        return self.ycbcr[0]

    @property
    def levels(self) -> int:
        return (1 << self.bits) - 1


def _check_image(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 RGB image, got shape {arr.shape} and dtype {arr.dtype}")
    return arr


def jpeg_ai_planes(image: np.ndarray, bits: int = INTERNAL_BITS) -> JpegAiPlanes:
    """8-bit RGB to the framework's planes, in float32 and in its order of operations, so rounding ties agree."""
    arr = _check_image(image)
    levels = np.float32((1 << bits) - 1)
    rgb = np.round(arr.astype(np.float32) / np.float32(255) * levels) / levels
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    kr, kg, kb = (np.float32(k) for k in BT709_LUMA)
    d_cb, d_cr = (np.float32(d) for d in BT709_CB_CR_DIVISORS)
    y = kr * r + kg * g + kb * b
    half = np.float32(0.5)
    ycbcr = np.clip(np.stack([y, (b - y) / d_cb + half, (r - y) / d_cr + half]), 0, 1)
    ycbcr = np.round(ycbcr * levels) / levels
    return JpegAiPlanes(rgb=rgb, ycbcr=ycbcr.astype(np.float32), bits=bits)


def _pair(reference: np.ndarray, decoded: np.ndarray) -> tuple[JpegAiPlanes, JpegAiPlanes]:
    ref, dec = _check_image(reference), _check_image(decoded)
    if ref.shape != dec.shape:
        raise ValueError(f"images differ in shape: {ref.shape} vs {dec.shape}")
    return jpeg_ai_planes(ref), jpeg_ai_planes(dec)


def _plane_tensor(plane: np.ndarray, min_size: int = 0, dtype: Any = None) -> Any:
    """One H x W plane as a 1 x 1 x H x W tensor, zero-padded at the bottom and right up to ``min_size``."""
    torch = _import("torch", "this metric")
    t = torch.from_numpy(np.ascontiguousarray(plane))[None, None]
    if dtype is not None:
        t = t.to(dtype)
    pad_h, pad_w = max(min_size - t.shape[-2], 0), max(min_size - t.shape[-1], 0)
    if pad_h or pad_w:
        t = torch.nn.functional.pad(t, (0, pad_w, 0, pad_h), mode="constant", value=0.0)
    return t


# ---------------------------------------------------------------------------------------------------------------
# the metrics, on the framework's planes


def _ms_ssim(ref: JpegAiPlanes, dec: JpegAiPlanes) -> float:
    torch = _import("torch", "MS-SSIM")
    pytorch_msssim = _import("pytorch_msssim", "MS-SSIM")
    levels = np.float32(ref.levels)
    a = _plane_tensor(ref.y * levels, _MIN_SIZE["ms-ssim"])
    b = _plane_tensor(dec.y * levels, _MIN_SIZE["ms-ssim"])
    with torch.no_grad():
        return float(pytorch_msssim.ms_ssim(a, b, data_range=float(ref.levels)))


def _vif(ref: JpegAiPlanes, dec: JpegAiPlanes) -> float:
    torch = _import("torch", "VIF")
    piq = _import("piq", "VIF")
    with torch.no_grad():
        score = piq.vif_p(
            _plane_tensor(dec.y, _MIN_SIZE["vif"]), _plane_tensor(ref.y, _MIN_SIZE["vif"]), data_range=1.0
        )
    return float(score)


def _fsim(ref: JpegAiPlanes, dec: JpegAiPlanes) -> float:
    torch = _import("torch", "FSIM")
    piq = _import("piq", "FSIM")

    def rgb(p: JpegAiPlanes) -> Any:
        return torch.from_numpy(np.ascontiguousarray(p.rgb.transpose(2, 0, 1)))[None]

    with torch.no_grad():
        return float(piq.fsim(rgb(dec), rgb(ref), data_range=1.0, chromatic=True))


@functools.lru_cache(maxsize=1)
def _nlpd_module() -> Any:
    iqa = _import("IQA_pytorch", "NLPD")
    return iqa.NLPD(channels=1).eval()


def _nlpd(ref: JpegAiPlanes, dec: JpegAiPlanes) -> float:
    torch = _import("torch", "NLPD")
    with torch.no_grad():
        score = _nlpd_module()(_plane_tensor(dec.y, _MIN_SIZE["nlpd"]), _plane_tensor(ref.y, _MIN_SIZE["nlpd"]), False)
    return float(score)


def _iw_ssim(ref: JpegAiPlanes, dec: JpegAiPlanes) -> float:
    torch = _import("torch", "IW-SSIM")
    piq = _import("piq", "IW-SSIM")
    # float64, as the framework computes it on the CPU: in float32 piq's variances lose digits to cancellation, and
    # IW-SSIM moves by up to 2.5e-3 on images with large flat areas (Kodak's kodim20)
    a = _plane_tensor(ref.y * np.float32(255), _MIN_SIZE["iw-ssim"], dtype=torch.float64)
    b = _plane_tensor(dec.y * np.float32(255), _MIN_SIZE["iw-ssim"], dtype=torch.float64)
    with torch.no_grad():
        return float(piq.information_weighted_ssim(b, a, data_range=255.0))


def _psnr_hvs_pair(ref: JpegAiPlanes, dec: JpegAiPlanes) -> tuple[float, float]:
    """(PSNR-HVS, PSNR-HVS-M) of the Y planes; 100 dB for identical planes, the package's convention."""
    psnr_hvsm = _import("psnr_hvsm", "PSNR-HVS")
    # the original C++ implementation where the wheel has it (the one the framework called), else the NumPy one
    backend = psnr_hvsm.BACKENDS.get("cpp", psnr_hvsm.BACKENDS["numpy"])

    def padded(y: np.ndarray) -> np.ndarray:
        h, w = y.shape
        return np.pad(y, ((0, -h % 8), (0, -w % 8)), mode="edge").astype(np.float64)

    with np.errstate(invalid="ignore", divide="ignore"):  # the NumPy back-end evaluates both branches of a where()
        hvs, hvsm = backend["psnr_hvs_hvsm"](padded(ref.y), padded(dec.y))
    return float(hvs), float(hvsm)


def _psnr_hvs(ref: JpegAiPlanes, dec: JpegAiPlanes) -> float:
    return _psnr_hvs_pair(ref, dec)[0]


@functools.lru_cache(maxsize=1)
def ffmpeg_with_libvmaf() -> str:
    """Path of an FFmpeg whose filters include ``libvmaf``: ``$IMAGEIO_FFMPEG_EXE``, else imageio-ffmpeg's own build.

    Neither PyAV's FFmpeg nor Debian's is built with libvmaf, so the one imageio-ffmpeg ships is the offline source.
    """
    hint = (
        "VMAF needs libvmaf, which neither PyAV's FFmpeg nor Debian's ffmpeg package has: "
        f"pip install '{_EXTRA}' (imageio-ffmpeg's bundled FFmpeg is built with libvmaf), "
        "or point IMAGEIO_FFMPEG_EXE at an FFmpeg configured with --enable-libvmaf"
    )
    try:
        imageio_ffmpeg = _import("imageio_ffmpeg", "VMAF")
        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except (MissingPackageError, RuntimeError) as exc:
        raise VmafUnavailableError(f"{hint} ({exc})") from exc
    try:
        filters = subprocess.run(
            [exe, "-hide_banner", "-filters"], capture_output=True, text=True, check=True, timeout=60
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise VmafUnavailableError(f"{hint} (could not run {exe}: {exc})") from exc
    if not any(line.split()[1:2] == ["libvmaf"] for line in filters.splitlines()):
        raise VmafUnavailableError(f"{hint} ({exe} has no libvmaf filter)")
    return exe


def _vmaf(ref: JpegAiPlanes, dec: JpegAiPlanes) -> float:
    exe = ffmpeg_with_libvmaf()
    height, width = ref.y.shape
    depth = {8: ("yuv444p", np.uint8), 10: ("yuv444p10le", "<u2"), 12: ("yuv444p12le", "<u2")}
    if ref.bits not in depth:
        raise ValueError(f"VMAF here takes 8, 10 or 12-bit planes, got {ref.bits}")
    pix_fmt, dtype = depth[ref.bits]
    raw = ["-f", "rawvideo", "-pix_fmt", pix_fmt, "-s", f"{width}x{height}"]
    with tempfile.TemporaryDirectory(prefix="hmc-vmaf-") as tmp:
        for name, planes in (("decoded.yuv", dec), ("reference.yuv", ref)):
            np.round(planes.ycbcr * np.float32(planes.levels)).astype(dtype).tofile(os.path.join(tmp, name))
        # libvmaf's first input is the distorted picture, the second the reference; relative log path: no escaping
        graph = f"[0:v][1:v]libvmaf=model=version={VMAF_MODEL}:log_fmt=json:log_path=vmaf.json:n_threads=1"
        cmd = [exe, "-nostdin", "-hide_banner", "-v", "error", *raw, "-i", "decoded.yuv", *raw, "-i", "reference.yuv"]
        done = subprocess.run([*cmd, "-lavfi", graph, "-f", "null", "-"], cwd=tmp, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"FFmpeg's libvmaf failed ({exe}): {done.stderr.strip()}")
        with open(os.path.join(tmp, "vmaf.json")) as f:
            log = json.load(f)
    return float(log["frames"][0]["metrics"]["vmaf"])


# ---------------------------------------------------------------------------------------------------------------
# public per-metric functions on H x W x 3 uint8 RGB


def ms_ssim(reference: np.ndarray, decoded: np.ndarray) -> float:
    """MS-SSIM of the BT.709 Y planes in 10-bit code values (``pytorch_msssim``, data range 1023)."""
    return _ms_ssim(*_pair(reference, decoded))


def vif(reference: np.ndarray, decoded: np.ndarray) -> float:
    """Pixel-domain VIF (VIFp, ``piq.vif_p``) of the Y planes; 1 for identical images."""
    return _vif(*_pair(reference, decoded))


def fsim(reference: np.ndarray, decoded: np.ndarray) -> float:
    """FSIMc (``piq.fsim``, chromatic) of the 10-bit rounded RGB images; 1 for identical images."""
    return _fsim(*_pair(reference, decoded))


def nlpd(reference: np.ndarray, decoded: np.ndarray) -> float:
    """NLPD of the Y planes, JPEG AI's implementation (``IQA_pytorch.NLPD``); a distance, 0 for identical images."""
    return _nlpd(*_pair(reference, decoded))


def iw_ssim(reference: np.ndarray, decoded: np.ndarray) -> float:
    """IW-SSIM (``piq``, float64) of the Y planes scaled to [0, 255]; 1 for identical images."""
    return _iw_ssim(*_pair(reference, decoded))


def psnr_hvs(reference: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR-HVS in dB of the Y planes (``psnr_hvsm``), JPEG AI's seventh metric; 100 for identical images."""
    return _psnr_hvs(*_pair(reference, decoded))


def psnr_hvs_m(reference: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR-HVS-M in dB of the Y planes (``psnr_hvsm``): PSNR-HVS with contrast masking; not one of the seven."""
    return _psnr_hvs_pair(*_pair(reference, decoded))[1]


def psnr_y(reference: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR of the 10-bit BT.709 luma the suite's metrics see (peak 1.0 on [0, 1]); inf when identical.

    Not one of the seven: JPEG AI's reporting sheets carry it beside them (PSNR-Y)."""
    ref, dec = _pair(reference, decoded)
    mse = float(np.mean((ref.y.astype(np.float64) - dec.y.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def vmaf(reference: np.ndarray, decoded: np.ndarray) -> float:
    """VMAF (libvmaf, ``vmaf_v0.6.1``) of the 10-bit 4:4:4 YCbCr pictures, as one frame (no motion)."""
    return _vmaf(*_pair(reference, decoded))


# ---------------------------------------------------------------------------------------------------------------
# the table of the seven and the headline

BDTransform = Literal["none", "one-minus"]


@dataclass(frozen=True)
class QualityMetric:
    """One of JPEG AI's seven metrics: what it measures on, its direction, and how it enters BD-rate."""

    key: str  # result column
    name: str  # as JPEG AI's tables head it
    unit: str  # "" for a unitless index or score
    higher_is_better: bool
    bd_transform: BDTransform  # what JPEG AI's BD script applies first: "none", or "one-minus" (1 - x)
    planes: str  # what the metric is computed on
    package: str  # the PyPI distribution that computes it
    function: Callable[[np.ndarray, np.ndarray], float] = field(repr=False)
    _on_planes: Callable[[JpegAiPlanes, JpegAiPlanes], float] = field(repr=False)

    def to_bd(self, values: Sequence[float] | np.ndarray) -> np.ndarray:
        """Values as JPEG AI's BD script takes them (higher is better on that axis)."""
        arr = np.asarray(values, dtype=np.float64)
        return 1.0 - arr if self.bd_transform == "one-minus" else arr


_Y = "Y of BT.709 full-range YCbCr, 10 bit"
#: JPEG AI's seven metrics, in the order of its result tables
JPEG_AI_METRICS: tuple[QualityMetric, ...] = (
    QualityMetric("ms-ssim-y", "MS-SSIM", "", True, "none", _Y, "pytorch-msssim", ms_ssim, _ms_ssim),
    QualityMetric("vif-y", "VIF", "", True, "none", _Y, "piq", vif, _vif),
    QualityMetric("fsim-rgb", "FSIM", "", True, "none", "RGB rounded to 10 bit (FSIMc)", "piq", fsim, _fsim),
    QualityMetric("nlpd-y", "NLPD", "", False, "one-minus", _Y, "IQA_pytorch", nlpd, _nlpd),
    QualityMetric("iw-ssim-y", "IW-SSIM", "", True, "none", _Y, "piq", iw_ssim, _iw_ssim),
    QualityMetric(
        "vmaf-y", "VMAF", "", True, "none", "10-bit 4:4:4 BT.709 YCbCr (libvmaf reads Y)", "imageio-ffmpeg", vmaf, _vmaf
    ),
    QualityMetric("psnr-hvs-y", "PSNR-HVS", "dB", True, "none", _Y, "psnr-hvsm", psnr_hvs, _psnr_hvs),
)
METRICS_BY_KEY: dict[str, QualityMetric] = {m.key: m for m in JPEG_AI_METRICS}


def jpeg_ai_suite(reference: np.ndarray, decoded: np.ndarray, keys: Sequence[str] | None = None) -> dict[str, float]:
    """The chosen metrics (default: all seven) of one image pair, converting each image once."""
    chosen = [METRICS_BY_KEY[k] for k in keys] if keys is not None else list(JPEG_AI_METRICS)
    ref, dec = _pair(reference, decoded)
    return {m.key: m._on_planes(ref, dec) for m in chosen}


@dataclass(frozen=True)
class MeanBDRate:
    """JPEG AI's headline: the mean of the seven per-metric BD-rates, or no value and what is missing."""

    value: float | None
    per_metric: dict[str, float]
    missing: tuple[str, ...]

    @property
    def computed(self) -> bool:
        return self.value is not None

    def __str__(self) -> str:
        if self.value is None:
            return "not computed: no BD-rate for " + ", ".join(self.missing)
        return f"{self.value:+.2f} (mean of {len(self.per_metric)} metrics)"


def jpeg_ai_mean_bd_rate(bd_rates: Mapping[str, float | None]) -> MeanBDRate:
    """Mean BD-rate over JPEG AI's seven metrics, keyed as :data:`JPEG_AI_METRICS`.

    Like JPEG AI's own script, the mean exists only when all seven do: a metric absent, ``None`` or not finite makes
    it "not computed" (``value`` None, ``missing`` naming them) rather than a mean of fewer. Other keys are ignored,
    so a misspelt key shows up as missing. Pass BD-rates computed as JPEG AI does (per image, averaged over images,
    on :meth:`QualityMetric.to_bd` values) to compare with its published figures.
    """
    per_metric: dict[str, float] = {}
    missing: list[str] = []
    for m in JPEG_AI_METRICS:
        v = bd_rates.get(m.key)
        if v is None or not math.isfinite(float(v)):
            missing.append(m.key)
        else:
            per_metric[m.key] = float(v)
    if missing:
        return MeanBDRate(None, per_metric, tuple(missing))
    return MeanBDRate(float(np.mean(list(per_metric.values()))), per_metric, ())
