"""HEVC intra stills in HEIF through ``pillow-heif`` (libheif: x265 encoder, libde265 decoder).

The BPG-like anchor: one HEVC intra picture at a fixed QP, as CompressAI's
BPG and HM anchors sweep QPs. libheif's x265 plugin passes any ``x265:<name>``
encoder parameter to ``x265_param_parse`` after its own settings, so
``x265:qp`` switches x265 to constant-QP rate control (libheif's ``quality``
then has no effect; x265 turns adaptive quantisation off in CQP mode).
Higher QP = fewer bytes.

libheif's x265 settings (preset slow, rd/psy options) apply unless
``x265_params`` overrides them; the shipped config turns psy-rd and psy-rdoq
off, as BPG's x265 setup (tune ssim) does, which in 4:4:4 also avoids x265's
+6 chroma QP offset under psy-rd.

The bytes are the whole HEIF file (ftyp/meta boxes, hvcC parameter sets,
colour box): a few hundred bytes more than a BPG file, which matters only on
tiny images. Colour: full-range BT.601 YCbCr (libheif's sRGB default, as BPG's
default ``ycbcr``), 4:4:4 by default like CompressAI's BPG 4:4:4 anchor.
"""

from __future__ import annotations

import io
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.methods.base import HUMAN, Bitstream, CodecError, Family, Method, RateParameter

_CHROMA = ("444", "422", "420")


class HevcIntra(Method):
    """HEVC intra (x265 in HEIF), rate = QP 0..51."""

    family = Family.SBAR

    def __init__(
        self,
        name: str,
        rates: Sequence[int],
        description: str = "",
        chroma: str = "444",
        preset: str | None = None,
        x265_params: dict[str, Any] | None = None,
    ):
        super().__init__(name, rates, description or f"HEVC intra (x265 via pillow-heif), {chroma}")
        if str(chroma) not in _CHROMA:
            raise ValueError(f"{name}: chroma must be one of {_CHROMA}, not {chroma!r}")
        for rate in self.rates:
            if not isinstance(rate, numbers.Integral) or isinstance(rate, bool) or not 0 <= rate <= 51:
                raise ValueError(f"{name}: HEVC rate must be an integer QP in [0, 51], got {rate!r}")
        self.chroma = str(chroma)
        self.preset = preset
        self.x265_params = {str(k): str(v) for k, v in (x265_params or {}).items()}
        if "qp" in self.x265_params:
            raise ValueError(f"{name}: the QP comes from the rate point; remove 'qp' from x265_params")

    def unavailable_reason(self) -> str | None:
        try:
            import pillow_heif
        except ImportError as exc:
            return f"pillow-heif is not installed ({exc}); pip install pillow-heif"
        info = pillow_heif.libheif_info()
        if "x265" not in info.get("encoders", {}):
            return f"this pillow-heif ({pillow_heif.__version__}) has no x265 HEVC encoder: {info.get('encoders')}"
        if not info.get("decoders"):
            return f"this pillow-heif ({pillow_heif.__version__}) has no HEVC decoder"
        return None

    def _enc_params(self, qp: int) -> dict[str, str]:
        params = {f"x265:{k}": v for k, v in self.x265_params.items()}
        params["x265:qp"] = str(int(qp))
        if self.preset:
            params["preset"] = self.preset
        return params

    def rate_parameter(self) -> RateParameter:
        return RateParameter("QP", 0, 51, integer=True, rate_rises=False)

    def encode(self, image: np.ndarray, rate: Any) -> Bitstream:
        import pillow_heif

        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"HEVC: expected an H x W x 3 uint8 RGB image, got {image.shape} {image.dtype}")
        h, w = image.shape[:2]
        buf = io.BytesIO()
        try:
            heif = pillow_heif.from_bytes(mode="RGB", size=(w, h), data=np.ascontiguousarray(image).tobytes())
            # tile_size=0: one coded picture, never a grid of tiles
            heif.save(buf, enc_params=self._enc_params(int(rate)), chroma=self.chroma, tile_size=0)
        except (OSError, ValueError, RuntimeError) as exc:
            raise CodecError(f"HEVC (x265) encoder failed at QP {rate}: {exc}") from exc
        return Bitstream({"main": buf.getvalue()}, height=h, width=w, info={"qp": int(rate), "chroma": self.chroma})

    def decode(self, bitstream: Bitstream, target: str = HUMAN) -> np.ndarray:
        import pillow_heif

        try:
            heif = pillow_heif.open_heif(io.BytesIO(bitstream.streams["main"]), convert_hdr_to_8bit=True)
            out = np.asarray(heif.to_pillow().convert("RGB"))
        except (OSError, ValueError, RuntimeError) as exc:
            raise CodecError(f"HEVC (libde265) decoder failed (QP {bitstream.info.get('qp')}): {exc}") from exc
        h, w = bitstream.height, bitstream.width
        if out.shape[0] < h or out.shape[1] < w:
            raise CodecError(f"HEVC decoder returned {out.shape}, expected ({h}, {w}, 3)")
        return np.ascontiguousarray(out[:h, :w])

    def versions(self) -> dict[str, str]:
        import pillow_heif

        info = pillow_heif.libheif_info()
        return {
            "pillow_heif": pillow_heif.__version__,
            "libheif": str(info.get("libheif")),
            "x265": str(info.get("encoders", {}).get("x265")),
            "libde265": str(info.get("decoders", {}).get("libde265")),
        }
