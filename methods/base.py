"""What every method is: a codec plus the contract of its family.

A method turns an image into a :class:`Bitstream` of named streams of real
bytes, and decodes what a target (``"human"`` or a machine task) receives.
Its :class:`Family` says which streams each target must be sent, and so what
each target costs; the runner reads that contract, never the method's word.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

HUMAN = "human"


class Family(str, enum.Enum):
    """The four families of the survey (000, Fig. 1 and Tables 1-2)."""

    MBID = "MBID"  # multi-bitstream, independent: a human stream and a machine stream
    MBHD = "MBHD"  # multi-bitstream, hierarchical: layers; a task decodes a prefix
    SBMD = "SBMD"  # single bitstream, multi-head: task heads read the latent
    SBAR = "SBAR"  # single bitstream, analysis after reconstruction


@dataclass
class Bitstream:
    """Named streams of entropy-coded bytes, exactly what a decoder receives.

    ``streams`` keeps insertion order: for MBHD it is the layer order.
    ``height`` and ``width`` are the size of the coded image.
    """

    streams: dict[str, bytes]
    height: int
    width: int
    info: dict[str, Any] = field(default_factory=dict)

    def num_bytes(self, names: Sequence[str] | None = None) -> int:
        """Bytes of the named streams (all streams when ``names`` is None)."""
        if names is None:
            names = list(self.streams)
        missing = [n for n in names if n not in self.streams]
        if missing:
            raise KeyError(f"bitstream has no stream(s) {missing}; it has {list(self.streams)}")
        return sum(len(self.streams[n]) for n in names)

    def bpp(self, names: Sequence[str] | None = None) -> float:
        """Bits per pixel of the named streams over the coded image."""
        return self.num_bytes(names) * 8.0 / (self.height * self.width)


class MethodUnavailable(RuntimeError):
    """A method cannot run on this machine (missing package, binary or weights)."""


class CodecError(RuntimeError):
    """A codec failed on one sample; the sweep records it and goes on."""


class Method(abc.ABC):
    """A compression method: encode once per (image, rate), decode per target.

    Subclasses set ``family`` and implement :meth:`encode` and :meth:`decode`.
    ``rates`` are the method's rate points (qualities, QPs, model qualities).
    """

    family: ClassVar[Family]
    #: whether the codec runs in torch (the runner then avoids forking workers)
    uses_torch: ClassVar[bool] = False
    #: what ``bpp`` is: "bitstream" = size of real entropy-coded bytes; a method
    #: that can only estimate rate from likelihoods must say "likelihood"
    bpp_source: ClassVar[str] = "bitstream"
    #: False: every target receiving the same streams gets the same decode (a
    #: reconstruction), so the runner decodes once; True: ``decode`` depends on
    #: the target (task heads on a latent, per-task adapters)
    decodes_per_target: ClassVar[bool] = False

    def __init__(self, name: str, rates: Sequence[Any], description: str = "", **options: Any):
        if not rates:
            raise ValueError(f"method {name!r}: no rate points configured")
        self.name = name
        self.rates = list(rates)
        self.description = description or name
        self.options = options

    # --- the family contract -------------------------------------------------
    def streams_for(self, target: str, bitstream: Bitstream) -> list[str]:
        """Streams ``target`` must receive; SBAR and SBMD: the whole stream."""
        return list(bitstream.streams)

    def bits_for(self, target: str, bitstream: Bitstream) -> int:
        return 8 * bitstream.num_bytes(self.streams_for(target, bitstream))

    # --- what a method implements --------------------------------------------
    @abc.abstractmethod
    def encode(self, image: np.ndarray, rate: Any) -> Bitstream:
        """Encode an ``H x W x 3`` uint8 RGB image at one rate point."""

    @abc.abstractmethod
    def decode(self, bitstream: Bitstream, target: str = HUMAN) -> np.ndarray:
        """Decode what ``target`` receives; for ``human`` an RGB uint8 image."""

    def unavailable_reason(self) -> str | None:
        """Why this method cannot run here, or None when it can."""
        return None

    def versions(self) -> dict[str, str]:
        """Versions of the libraries that produced the bytes (for provenance)."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, family={self.family.value}, rates={self.rates})"
