"""JPEG and WebP through Pillow, as ``compressai.utils.bench`` runs them.

CompressAI saves with ``quality=q`` and no other option, so the defaults here
are Pillow's; any extra save options come from config (``save_options``).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import PIL
from PIL import Image

from bench.methods.base import HUMAN, Bitstream, CodecError, Family, Method, RateParameter


class PillowCodec(Method):
    """An image format Pillow writes and reads (JPEG, WebP), rate = quality."""

    family = Family.SBAR

    def __init__(
        self,
        name: str,
        rates: Sequence[int],
        format: str,
        description: str = "",
        save_options: dict[str, Any] | None = None,
    ):
        super().__init__(name, rates, description or f"{format} (Pillow {PIL.__version__})")
        self.format = format
        self.save_options = dict(save_options or {})

    def unavailable_reason(self) -> str | None:
        from PIL import features

        feature = {"JPEG": "jpg", "WEBP": "webp"}.get(self.format.upper())
        if feature and not features.check(feature):
            return f"this Pillow ({PIL.__version__}) was built without {self.format} support"
        return None

    def rate_parameter(self) -> RateParameter:
        return RateParameter("quality", 1, 100, integer=True, rate_rises=True)

    def encode(self, image: np.ndarray, rate: Any) -> Bitstream:
        buf = io.BytesIO()
        try:
            Image.fromarray(image).save(buf, format=self.format, quality=int(rate), **self.save_options)
        except (OSError, ValueError) as exc:
            raise CodecError(f"{self.format} encoder failed at quality {rate}: {exc}") from exc
        h, w = image.shape[:2]
        return Bitstream({"main": buf.getvalue()}, height=h, width=w)

    def decode(self, bitstream: Bitstream, target: str = HUMAN) -> np.ndarray:
        data = bitstream.streams["main"]
        try:
            with Image.open(io.BytesIO(data)) as img:
                return np.asarray(img.convert("RGB"))
        except (OSError, ValueError) as exc:
            raise CodecError(f"{self.format} decoder failed: {exc}") from exc

    def versions(self) -> dict[str, str]:
        return {"pillow": PIL.__version__}
