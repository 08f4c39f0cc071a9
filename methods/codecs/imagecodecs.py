"""JPEG 2000, JPEG XL and AVIF through ``imagecodecs`` (no system packages needed).

Each format gets its own small class because their rate knobs and options
differ; the bytes are the file ``imagecodecs`` writes, container included.

Rate points (what ``rate`` means, per format):

- JPEG 2000 (OpenJPEG): ``imagecodecs``' ``level`` is OpenJPEG's *fixed-quality*
  mode (``tcp_distoratio`` with ``cp_fixed_quality``): a target PSNR in dB for a
  single quality layer, not a compression ratio. Higher = more bytes.
  CompressAI's published curve instead fixes compression ratios 10..190 through
  ffmpeg's libopenjpeg; ``imagecodecs`` exposes no ratio mode, so we sweep
  PSNR targets, 19 of them like CompressAI's curve.
- JPEG XL (libjxl): ``quality`` 0..100 like ``cjxl -q`` (libjxl maps it to a
  Butteraugli distance with ``JxlEncoderDistanceFromQuality``), or, with
  ``rate_param: distance``, the distance itself (lower = more bytes).
- AVIF (libavif + libaom): ``quality`` 0..100 (libavif maps it to the AV1
  quantizer, 100 = lossless) at a fixed ``speed``.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, ClassVar

import imagecodecs
import numpy as np

from bench.methods.base import HUMAN, Bitstream, CodecError, Family, Method, RateParameter

_CHROMA = ("444", "420")


def _is_real(rate: Any) -> bool:
    return isinstance(rate, numbers.Real) and not isinstance(rate, bool)


def _check_image(image: np.ndarray, codec: str) -> np.ndarray:
    """The image as a C-contiguous H x W x 3 uint8 array (what the encoders read)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{codec}: expected an H x W x 3 uint8 RGB image, got {image.shape} {image.dtype}")
    return np.ascontiguousarray(image)


def _to_rgb(decoded: np.ndarray, height: int, width: int, codec: str) -> np.ndarray:
    """Decoder output as H x W x 3 uint8 RGB of the coded size."""
    if decoded.dtype != np.uint8:
        raise CodecError(f"{codec} decoder returned {decoded.dtype}, expected uint8")
    if decoded.ndim == 2:
        decoded = np.repeat(decoded[:, :, None], 3, axis=2)
    elif decoded.ndim == 3 and decoded.shape[2] == 4:
        decoded = decoded[:, :, :3]
    if decoded.ndim != 3 or decoded.shape[2] != 3 or decoded.shape[0] < height or decoded.shape[1] < width:
        raise CodecError(f"{codec} decoder returned shape {decoded.shape}, expected ({height}, {width}, 3)")
    return np.ascontiguousarray(decoded[:height, :width])


class _ImagecodecsCodec(Method):
    """Shared encode/decode plumbing; subclasses say how one rate point is coded."""

    family = Family.SBAR
    #: short codec name for messages and descriptions
    codec: ClassVar[str]
    #: imagecodecs name of the library, for ``versions()``
    _version_fn: ClassVar[str]

    def __init__(self, name: str, rates: Sequence[Any], description: str = "", **options: Any):
        super().__init__(name, rates, description or f"{self.codec} ({self._library_version()})", **options)
        for rate in self.rates:
            self._check_rate(rate)

    # what each format implements
    def _check_rate(self, rate: Any) -> None:
        raise NotImplementedError

    def _encode(self, image: np.ndarray, rate: Any) -> bytes:
        raise NotImplementedError

    def _decode(self, data: bytes) -> np.ndarray:
        raise NotImplementedError

    def _library_version(self) -> str:
        try:
            return getattr(imagecodecs, self._version_fn)()
        except Exception:  # the codec may be missing from this imagecodecs build
            return "unavailable"

    def unavailable_reason(self) -> str | None:
        probe = self._version_fn.replace("_version", "_encode")
        if not hasattr(imagecodecs, probe) or self._library_version() == "unavailable":
            return f"this imagecodecs ({imagecodecs.__version__}) was built without {self.codec} support"
        return None

    def encode(self, image: np.ndarray, rate: Any) -> Bitstream:
        image = _check_image(image, self.codec)
        try:
            data = self._encode(image, rate)
        except Exception as exc:  # imagecodecs raises its own *Error types, ValueError, ...
            raise CodecError(f"{self.codec} encoder failed at rate {rate!r}: {exc}") from exc
        h, w = image.shape[:2]
        return Bitstream({"main": bytes(data)}, height=h, width=w, info={"rate": rate})

    def decode(self, bitstream: Bitstream, target: str = HUMAN) -> np.ndarray:
        try:
            decoded = self._decode(bitstream.streams["main"])
        except Exception as exc:
            rate = bitstream.info.get("rate")
            raise CodecError(f"{self.codec} decoder failed (rate {rate!r}): {exc}") from exc
        return _to_rgb(np.asarray(decoded), bitstream.height, bitstream.width, self.codec)

    def versions(self) -> dict[str, str]:
        return {"imagecodecs": imagecodecs.__version__, self.codec.lower(): self._library_version()}


class Jpeg2000(_ImagecodecsCodec):
    """JPEG 2000 (OpenJPEG), rate = target PSNR in dB of OpenJPEG's fixed-quality mode.

    4:4:4 only: OpenJPEG codes all three components at full resolution after
    its multi-component transform (the irreversible YCbCr transform with the
    9/7 wavelet), as CompressAI's ``yuv444p`` anchor does; ``imagecodecs``
    offers no component subsampling. One tile, one quality layer, six
    resolution levels (OpenJPEG's default).
    """

    codec = "JPEG2000"
    _version_fn = "jpeg2k_version"

    def __init__(
        self,
        name: str,
        rates: Sequence[float],
        description: str = "",
        codecformat: str = "JP2",
        chroma: str = "444",
        reversible: bool = False,
        resolutions: int | None = None,
        numthreads: int | None = None,
    ):
        if codecformat.upper() not in ("JP2", "J2K"):
            raise ValueError(f"{name}: codecformat must be JP2 (file) or J2K (raw codestream), not {codecformat!r}")
        if str(chroma) != "444":
            raise ValueError(f"{name}: JPEG 2000 through imagecodecs codes 4:4:4 only, not chroma={chroma!r}")
        super().__init__(name, rates, description)
        self.codecformat = codecformat.upper()
        self.chroma = "444"
        self.reversible = bool(reversible)
        self.resolutions = resolutions
        self.numthreads = numthreads

    def _check_rate(self, rate: Any) -> None:
        # imagecodecs treats level <= 0 or None as lossless and clamps very low targets
        if not _is_real(rate) or not 1 <= rate <= 100:
            raise ValueError(f"{self.name}: JPEG 2000 rate must be a PSNR target in dB in [1, 100], got {rate!r}")

    def rate_parameter(self) -> RateParameter:
        return RateParameter("PSNR target (dB)", 15.0, 60.0, integer=False, rate_rises=True)

    def _encode(self, image: np.ndarray, rate: Any) -> bytes:
        return imagecodecs.jpeg2k_encode(
            image,
            level=float(rate),
            codecformat=self.codecformat,
            reversible=self.reversible,
            resolutions=self.resolutions,
            numthreads=self.numthreads,
        )

    def _decode(self, data: bytes) -> np.ndarray:
        return imagecodecs.jpeg2k_decode(data, numthreads=self.numthreads)


class JpegXL(_ImagecodecsCodec):
    """JPEG XL (libjxl, VarDCT), rate = cjxl-style quality 0..100 or a Butteraugli distance.

    libjxl codes lossy RGB in its XYB colour space at full resolution (no
    chroma subsampling), so there is no 4:2:0 option. Effort 7 is libjxl's and
    cjxl's default (``imagecodecs`` would otherwise use 5). The bytes are a bare
    codestream unless ``usecontainer`` is set. Thread count does not change the
    bytes.
    """

    codec = "JPEGXL"
    _version_fn = "jpegxl_version"

    def __init__(
        self,
        name: str,
        rates: Sequence[float],
        description: str = "",
        rate_param: str = "quality",
        effort: int = 7,
        chroma: str = "444",
        usecontainer: bool = False,
        numthreads: int | None = None,
    ):
        if rate_param not in ("quality", "distance"):
            raise ValueError(f"{name}: rate_param must be 'quality' or 'distance', not {rate_param!r}")
        if str(chroma) != "444":
            raise ValueError(f"{name}: JPEG XL codes XYB at full resolution; chroma must be '444', not {chroma!r}")
        self.rate_param = rate_param
        super().__init__(name, rates, description)
        self.effort = int(effort)
        self.chroma = "444"
        self.usecontainer = bool(usecontainer)
        self.numthreads = numthreads

    def _check_rate(self, rate: Any) -> None:
        hi = 100 if self.rate_param == "quality" else 25
        if not _is_real(rate) or not 0 <= rate <= hi:
            raise ValueError(f"{self.name}: JPEG XL {self.rate_param} must be in [0, {hi}], got {rate!r}")

    def rate_parameter(self) -> RateParameter:
        if self.rate_param == "quality":
            return RateParameter("quality", 1.0, 99.0, integer=False, rate_rises=True)
        return RateParameter("distance", 0.1, 25.0, integer=False, rate_rises=False)

    def _encode(self, image: np.ndarray, rate: Any) -> bytes:
        kwargs: dict[str, Any] = {"effort": self.effort, "usecontainer": self.usecontainer, "lossless": False}
        if self.rate_param == "quality":
            kwargs["level"] = float(rate)
        else:
            kwargs["distance"] = float(rate)
        return imagecodecs.jpegxl_encode(image, numthreads=self.numthreads, **kwargs)

    def _decode(self, data: bytes) -> np.ndarray:
        return imagecodecs.jpegxl_decode(data, numthreads=self.numthreads)


class Avif(_ImagecodecsCodec):
    """AVIF (libavif with libaom), rate = quality 0..100 at a fixed encoder speed.

    Chroma is 4:4:4 by default, like CompressAI's AV1 anchor (``aomenc --i444``),
    or 4:2:0. Colour: ``imagecodecs``' full-range BT.601 matrix. libaom's
    output depends on its thread count, so ``numthreads`` is fixed (1) for
    reproducible bytes.
    """

    codec = "AVIF"
    _version_fn = "avif_version"

    def __init__(
        self,
        name: str,
        rates: Sequence[int],
        description: str = "",
        speed: int = 6,
        chroma: str = "444",
        numthreads: int = 1,
    ):
        if str(chroma) not in _CHROMA:
            raise ValueError(f"{name}: AVIF chroma must be one of {_CHROMA}, not {chroma!r}")
        super().__init__(name, rates, description)
        self.speed = int(speed)
        self.chroma = str(chroma)
        self.numthreads = int(numthreads)

    def _check_rate(self, rate: Any) -> None:
        # 100 would be lossless (and silently switch to RGB identity coding in imagecodecs)
        if not isinstance(rate, numbers.Integral) or isinstance(rate, bool) or not 0 <= rate < 100:
            raise ValueError(f"{self.name}: AVIF rate must be an integer quality in [0, 99], got {rate!r}")

    def rate_parameter(self) -> RateParameter:
        return RateParameter("quality", 0, 99, integer=True, rate_rises=True)

    def _encode(self, image: np.ndarray, rate: Any) -> bytes:
        return imagecodecs.avif_encode(
            image, level=int(rate), speed=self.speed, pixelformat=self.chroma, numthreads=self.numthreads
        )

    def _decode(self, data: bytes) -> np.ndarray:
        return imagecodecs.avif_decode(data, numthreads=self.numthreads)
