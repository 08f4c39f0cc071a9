"""Matched rates: drive every method to the same target bitrates, so that curves overlap where they are compared.

Each method sweeps its own knob (JPEG's quality, HEVC's QP, OpenJPEG's PSNR target), so their rate ranges barely
overlap and BD figures between them are often undefined. With ``rate_target`` a run's rate points are target
bitrates instead: for each target the method's knob (:meth:`~bench.methods.base.Method.rate_parameter`) is set by
bisection so that the bitrate lands as near the target as the knob allows,

- per image (``mode: image``, the default): each sample gets its own setting; or
- per dataset (``mode: dataset``): one setting per target for the whole dataset, chosen so that the mean
  bitrate over the samples is nearest the target (every sample is encoded at each step of the search);

a method whose knob is a fixed set of values (a learned codec's trained qualities) takes the nearest one, and says
so. What a row records is the bitrate reached (``bpp``) with the target (``target_bpp``) and the setting
(``parameter``) beside it; the aggregate's rate points are the targets, its ``bpp`` the mean reached.

Nearness is on a log scale (``|log(bpp / target)|``); the search stops once within ``tolerance`` (relative) or when
the knob cannot move (an integer knob's neighbours), keeping the nearest it saw.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.methods.base import HUMAN, Bitstream, CodecError, Method, RateParameter

#: named target lists: JPEG AI's common test conditions, and a denser low-rate one for machine tasks
PROFILES: dict[str, tuple[float, ...]] = {
    "jpeg-ai": (0.06, 0.12, 0.25, 0.50, 0.75),
    "machine-low": (0.03, 0.05, 0.08, 0.12, 0.18, 0.25, 0.35, 0.50),
}
MODES = ("image", "dataset")


class TargetingError(ValueError):
    """A rate-target configuration that cannot be used; the message says why."""


def targets_of(profile: str | Sequence[float]) -> list[float]:
    """The target bitrates of a profile name or an explicit list (positive, increasing)."""
    if isinstance(profile, str):
        if profile not in PROFILES:
            raise TargetingError(f"unknown rate-target profile {profile!r}; known: {sorted(PROFILES)} or a list of bpp")
        values = list(PROFILES[profile])
    else:
        values = [float(v) for v in profile]
    if not values or any(v <= 0 for v in values) or sorted(set(values)) != values:
        raise TargetingError(f"rate targets must be distinct positive bpp in increasing order, got {values}")
    return values


def distance(bpp: float, target: float) -> float:
    """How far a bitrate is from a target, on a log scale."""
    return abs(math.log(max(bpp, 1e-12) / target))


@dataclass
class Trial:
    """One encode tried during a search."""

    value: Any
    bpp: float
    written: Any = None


@dataclass
class SearchResult:
    """What a search found: the nearest setting, its bitrate and encode, and every setting it tried."""

    value: Any
    bpp: float
    written: Any
    trials: list[Trial] = field(default_factory=list)

    @property
    def tries(self) -> int:
        return len(self.trials)


def search(
    measure: Callable[[Any], tuple[float, Any]],
    knob: RateParameter,
    target: float,
    tolerance: float = 0.02,
    max_steps: int = 24,
) -> SearchResult:
    """The knob setting whose bitrate (``measure(value) -> (bpp, what was written)``) is nearest ``target``.

    Bisection over ``[low, high]`` in the knob's direction (integers: until neighbours), or over the sorted
    ``choices`` (a bitrate that rises with the choices' order is assumed, as with a codec's qualities).
    """
    seen: dict[Any, Trial] = {}

    def trial(value: Any) -> Trial:
        if value not in seen:
            bpp, written = measure(value)
            seen[value] = Trial(value, float(bpp), written)
        return seen[value]

    if knob.choices:
        choices = list(knob.choices)
        lo, hi = 0, len(choices) - 1
        while hi - lo > 1 and len(seen) < max_steps:
            mid = (lo + hi) // 2
            if trial(choices[mid]).bpp < target:
                lo = mid
            else:
                hi = mid
        for i in {lo, hi}:
            trial(choices[i])
    else:
        lo, hi = float(knob.low), float(knob.high)
        for _ in range(max_steps):
            mid = (lo + hi) / 2
            if knob.integer:
                mid = int(round(mid))
                if mid in (lo, hi):
                    break
            t = trial(int(mid) if knob.integer else mid)
            if distance(t.bpp, target) <= math.log1p(tolerance):
                break
            below = t.bpp < target
            # the rate rises with the knob: below target means go up
            if below == knob.rate_rises:
                lo = mid
            else:
                hi = mid
            if not knob.integer and hi - lo < 1e-6 * max(1.0, abs(hi)):
                break
        for end in (knob.low, knob.high):  # an end of the range may be nearest (a target out of reach)
            v = int(end) if knob.integer else float(end)
            if not seen or all(distance(x.bpp, target) > math.log1p(tolerance) for x in seen.values()):
                trial(v)
    best = min(seen.values(), key=lambda t: (distance(t.bpp, target), str(t.value)))
    return SearchResult(best.value, best.bpp, best.written, list(seen.values()))


class TargetedMethod(Method):
    """A method whose rate points are target bitrates, reached by setting its knob per image (or per dataset).

    Everything but ``encode`` is the inner method's: its family, its streams, its decoder. With ``fixed``
    (target -> knob setting, from :func:`calibrate`), every image is coded at the dataset's setting.
    """

    def __init__(
        self,
        inner: Method,
        targets: Sequence[float],
        tolerance: float = 0.02,
        fixed: Mapping[float, Any] | None = None,
    ):
        knob = inner.rate_parameter()
        if knob is None:
            raise TargetingError(f"method {inner.name!r} has no rate knob to drive to a target bitrate")
        super().__init__(inner.name, list(targets), inner.description)
        self.inner = inner
        self.knob = knob
        self.tolerance = float(tolerance)
        self.fixed = dict(fixed or {})
        for attr in ("family", "uses_torch", "bpp_source", "decodes_per_target"):
            setattr(self, attr, getattr(inner, attr))

    # what the inner method decides
    @property
    def media(self) -> str:
        return getattr(self.inner, "media", "image")

    @property
    def device(self) -> str:
        return getattr(self.inner, "device", "cpu")

    @device.setter
    def device(self, value: str) -> None:
        if hasattr(self.inner, "device"):
            self.inner.device = value

    def contract(self) -> Any:
        return self.inner.contract()

    def streams_for(self, target: str, bitstream: Bitstream) -> list[str]:
        return self.inner.streams_for(target, bitstream)

    def decode(self, bitstream: Bitstream, target: str = HUMAN) -> Any:
        return self.inner.decode(bitstream, target)

    def unavailable_reason(self) -> str | None:
        return self.inner.unavailable_reason()

    def versions(self) -> dict[str, str]:
        return self.inner.versions()

    def served_tasks(self) -> list[str]:
        return self.inner.served_tasks()

    def weights_origin(self, role: str) -> str:
        return self.inner.weights_origin(role)

    def weight_files(self, rate: Any) -> dict[str, Path | str]:
        """Every file the settings a target may take read (a learned codec: each trained quality)."""
        out: dict[str, Path | str] = {}
        for choice in self.knob.choices:
            out.update({f"{role} @ {choice}": f for role, f in self.inner.weight_files(choice).items()})
        return out

    def rate_parameter(self) -> RateParameter | None:
        return None  # a target is not a knob

    # the one thing done here
    def bpp_of(self, written: Bitstream) -> float:
        """The bitrate a target is matched on: what the human is sent (the whole stream of a plain codec)."""
        return written.bpp(self.inner.streams_for(HUMAN, written))

    def encode(self, image: np.ndarray, rate: Any) -> Bitstream:
        target = float(rate)
        if target in self.fixed:
            written = self.inner.encode(image, self.fixed[target])
            written.info.update({"target_bpp": target, "parameter": self.fixed[target], "tries": 1})
            return written

        def measure(value: Any) -> tuple[float, Bitstream]:
            written = self.inner.encode(image, value)
            return self.bpp_of(written), written

        try:
            found = search(measure, self.knob, target, self.tolerance)
        except CodecError:
            raise
        written = found.written
        written.info.update({"target_bpp": target, "parameter": found.value, "tries": found.tries})
        return written


def calibration_subset(samples: Sequence[Any], count: int | None) -> list[Any]:
    """Every k-th of ``samples`` (k = ceil(n / count)), at most ``count`` of them; all of them for ``None``.

    ``mode: dataset`` encodes every calibration sample at every setting its search tries; a spread subset finds
    the same settings on a large dataset at a fraction of the cost (the rows still record the bitrate reached)."""
    if count is None:
        return list(samples)
    if int(count) < 1:
        raise TargetingError(f"rate_target.calibration_samples must be at least 1, not {count}")
    step = math.ceil(len(samples) / int(count))
    return list(samples)[::step]


def calibrate(
    method: Method,
    images: Sequence[np.ndarray],
    targets: Sequence[float],
    tolerance: float = 0.02,
) -> dict[float, Any]:
    """One knob setting per target whose mean bitrate over ``images`` is nearest it (``mode: dataset``)."""
    knob = method.rate_parameter()
    if knob is None:
        raise TargetingError(f"method {method.name!r} has no rate knob to drive to a target bitrate")
    probe = TargetedMethod(method, targets)
    seen: dict[Any, float] = {}  # the targets' searches share their first steps: each setting is encoded once

    def mean_bpp(value: Any) -> tuple[float, None]:
        if value not in seen:
            seen[value] = float(np.mean([probe.bpp_of(method.encode(img, value)) for img in images]))
        return seen[value], None

    return {float(t): search(mean_bpp, knob, float(t), tolerance).value for t in targets}
