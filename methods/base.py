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
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from bench.methods.families import StreamContract

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


@dataclass(frozen=True)
class HeadPrediction:
    """A task's prediction made inside the method (a head on the latent or on decoded features).

    ``decode(bitstream, target)`` returns one for a machine target when the
    method runs the task itself; the runner then records ``value`` as the
    prediction without calling the task network. ``value`` is in the task's
    own JSON prediction format (what ``Task.predict`` returns for one image),
    so the task's evaluator scores it like any other.
    """

    value: Any


@dataclass(frozen=True)
class RateParameter:
    """The knob a method's rate points turn, for reaching a target bitrate (``bench.running.targeting``).

    A continuous or integer knob in ``[low, high]`` whose bitrate rises with it (``rate_rises``; JPEG's quality)
    or falls (an encoder's QP); or a fixed set of values (``choices``: a learned codec's trained qualities),
    of which the one nearest a target is taken.
    """

    name: str
    low: float = 0.0
    high: float = 0.0
    integer: bool = True
    rate_rises: bool = True
    choices: tuple[Any, ...] = ()


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
    def contract(self) -> StreamContract:
        """What each target is sent (``bench.methods.families``); SBAR and SBMD: the whole stream.

        MBHD and MBID methods override it with their layers / streams per target.
        """
        from bench.methods.families import WholeStream

        if self.family in (Family.SBAR, Family.SBMD):
            return WholeStream(self.family)
        raise NotImplementedError(f"{type(self).__name__} is {self.family.value}: it must declare its contract()")

    def streams_for(self, target: str, bitstream: Bitstream) -> list[str]:
        """Streams ``target`` must receive (and is charged for), as the family contract says."""
        from bench.methods.families import charged_streams

        return charged_streams(self, target, bitstream)

    def bits_for(self, target: str, bitstream: Bitstream) -> int:
        return 8 * bitstream.num_bytes(self.streams_for(target, bitstream))

    # --- what a method implements --------------------------------------------
    @abc.abstractmethod
    def encode(self, image: np.ndarray, rate: Any) -> Bitstream:
        """Encode an ``H x W x 3`` uint8 RGB image at one rate point."""

    @abc.abstractmethod
    def decode(self, bitstream: Bitstream, target: str = HUMAN) -> np.ndarray | HeadPrediction | Any:
        """Decode what ``target`` receives; for ``human`` an RGB uint8 image.

        For a machine task: an RGB uint8 image the task network runs on, or a
        :class:`HeadPrediction` when the method predicts itself.
        """

    def unavailable_reason(self) -> str | None:
        """Why this method cannot run here, or None when it can."""
        return None

    def weight_files(self, rate: Any) -> dict[str, Path | str]:
        """The weight files rate point ``rate`` reads, by role ("codec", "backbone", "modules yolox-nano", ...).

        Their SHA-256 are in every row's identity and in the results' ``meta.weights``; weights held in memory
        (tests, a training loop) appear as a ``generated:<digest>`` description. Codecs without learned weights
        have none.
        """
        return {}

    def rate_parameter(self) -> RateParameter | None:
        """The knob behind the rate points (None: the method cannot be driven to a target bitrate).

        By default the configured rate points themselves, as a fixed set: the nearest is taken.
        """
        return RateParameter("rate point", choices=tuple(self.rates))

    def weights_origin(self, role: str) -> str:
        """Where a weight file without a sidecar comes from: ``published`` (its authors' release) or ``unknown``.

        A sidecar written by this harness's exports says ``local`` itself (``bench.training.weights``).
        """
        return "unknown"

    def served_tasks(self) -> list[str]:
        """Harness task names (``conf/task/<name>.yaml``) this method decodes for.

        A run that names no ``task=`` measures these, so a human-machine method's
        own tasks are measured by default; plain codecs serve none.
        """
        return []

    def versions(self) -> dict[str, str]:
        """Versions of the libraries that produced the bytes (for provenance)."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, family={self.family.value}, rates={self.rates})"
