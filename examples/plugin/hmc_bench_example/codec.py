"""``posterize-png``: keep the top ``bits`` of each 8-bit channel, then code the result losslessly with PNG.

A real codec with real bytes, built on hmc-bench's public base classes only.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image

from bench.methods.base import HUMAN, Bitstream, CodecError, Family, Method


class PosterizePNG(Method):
    """Rate points are the bits kept per channel (1-8); 8 is lossless."""

    family = Family.SBAR

    def encode(self, image: np.ndarray, rate: Any) -> Bitstream:
        bits = int(rate)
        if not 1 <= bits <= 8:
            raise CodecError(f"{self.name}: bits per channel must be 1..8, got {rate!r}")
        shift = 8 - bits
        kept = (image >> shift).astype(np.uint8)
        out = io.BytesIO()
        Image.fromarray(kept).save(out, format="PNG", optimize=True)
        return Bitstream({"main": bytes([bits]) + out.getvalue()}, image.shape[0], image.shape[1])

    def decode(self, bitstream: Bitstream, target: str = HUMAN) -> np.ndarray:
        data = bitstream.streams["main"]
        shift = 8 - data[0]
        kept = np.asarray(Image.open(io.BytesIO(data[1:])).convert("RGB"), dtype=np.uint16)
        centre = (1 << shift) >> 1  # the middle of each bin
        return ((kept << shift) + centre).clip(0, 255).astype(np.uint8)

    def versions(self) -> dict[str, str]:
        import PIL

        return {"pillow": PIL.__version__}
