"""Metrics as a kind: each declares its unit, its direction, what it applies to and how it aggregates.

BD-rate, reports and the leaderboard read these declarations; nothing guesses from a name. A human metric
(measured by the runner on every decoded image or clip) also carries its ``scorers`` (one per media); a task
metric (returned by a task's evaluator, stored as ``<task>/<name>``) is declared under its own name
(``bench.tasks.metrics`` for the harness's tasks). A plugin registers its own with :func:`register` when its
module is imported.

How a metric enters BD (``bd``): ``value`` (the number as it is, e.g. PSNR in dB), ``ssim`` (MS-SSIM as dB:
-10 log10(1 - v), CompressAI's convention), ``fraction`` (a share in [0, 1], read in percentage points);
a lower-is-better metric is negated on the BD axis, so "better" always points up.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

#: kinds of samples a metric applies to
IMAGE, CLIP = "image", "clip"
#: "mean": a mean of per-sample values (recomputable from rows over any sample subset);
#: "dataset": computed over the whole set by an evaluator (COCO mAP, mIoU from one confusion matrix)
Aggregation = Literal["mean", "dataset"]
BDKind = Literal["value", "ssim", "fraction"]


class UnknownMetric(KeyError):
    """A metric nobody declared; the message lists the ones that are."""

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0])


@dataclass(frozen=True)
class Metric:
    """One metric's declaration (see the module docstring)."""

    name: str
    unit: str
    higher_is_better: bool
    media: tuple[str, ...] = (IMAGE,)
    aggregation: Aggregation = "mean"
    bd: BDKind = "value"
    #: the range of valid raw values (a value outside it is refused by BD)
    low: float = -math.inf
    high: float = math.inf
    high_inclusive: bool = True
    #: human metrics, per media: original -> scorer of a decoded sample (none for task metrics: their evaluator
    #: scores them)
    scorers: Mapping[str, Callable[[Any], Callable[[Any], float]]] = field(default_factory=dict, compare=False)
    description: str = ""
    #: a human-quality metric (compares a decode with its original) rather than a task's score
    human: bool = False
    #: who declared it: ``hmc-bench``, or the top-level package of a plugin (set by :func:`register`)
    origin: str = field(default="hmc-bench", compare=False)

    def out_of_range(self, values: Any) -> Any:
        """Which raw values BD must refuse (outside ``[low, high]``, or ``[low, high)``)."""
        import numpy as np

        v = np.asarray(values, dtype=float)
        above = v > self.high if self.high_inclusive else v >= self.high
        return (v < self.low) | above

    def range_text(self) -> str:
        return f"[{self.low:g}, {self.high:g}{']' if self.high_inclusive else ')'}"

    @property
    def bd_unit(self) -> str:
        """Unit of the BD axis, hence of BD-metric figures."""
        return {"ssim": "dB", "fraction": "pp"}.get(self.bd, self.unit)

    def shown(self, values: Any) -> Any:
        """Raw values in the unit plots and BD-metric figures use (MS-SSIM in dB, shares in percent)."""
        import numpy as np

        v = np.asarray(values, dtype=float)
        if self.bd == "ssim":
            return -10 * np.log10(1 - v)
        if self.bd == "fraction":
            return v * 100
        return v

    def to_bd_axis(self, values: Any) -> Any:
        """Raw values -> the BD axis, on which higher is better."""
        v = self.shown(values)
        return v if self.higher_is_better else -v

    def from_bd_axis(self, values: Any) -> Any:
        """The BD axis back to raw values (for a monotone fit made on the BD axis)."""
        import numpy as np

        v = np.asarray(values, dtype=float)
        v = v if self.higher_is_better else -v
        if self.bd == "ssim":
            return 1 - 10 ** (-v / 10)
        if self.bd == "fraction":
            return v / 100
        return v


_REGISTRY: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    """Declare ``metric``; declaring the same name again with another meaning is an error (a plugin's clash)."""
    import dataclasses
    import sys

    caller = str(sys._getframe(1).f_globals.get("__name__", ""))
    top = caller.split(".")[0]
    metric = dataclasses.replace(metric, origin="hmc-bench" if top in ("bench", "") else top)
    old = _REGISTRY.get(metric.name)
    if old is not None and old != metric:
        raise ValueError(f"metric {metric.name!r} is declared twice, differently: {old} and {metric}")
    _REGISTRY[metric.name] = metric
    return metric


#: entry-point group of plugins' metric declarations: a module that calls :func:`register` when imported
PLUGIN_GROUP = "hmc_bench.metrics"


@functools.cache
def _load_declarations() -> None:
    """Import the modules that declare metrics: the harness's own (human metrics, every task kind's) and plugins'.

    Once per process: scanning the installed distributions' entry points costs ~20 ms, and the runner asks for
    the human metrics once per sample."""
    import importlib
    from importlib.metadata import entry_points

    for module in ("bench.metrics.human", "bench.tasks.metrics"):
        importlib.import_module(module)
    for ep in entry_points(group=PLUGIN_GROUP):
        importlib.import_module(ep.value)


def get(name: str) -> Metric:
    """The declaration of ``name`` (a results key such as ``psnr-rgb``, or a task metric's own name)."""
    if name not in _REGISTRY:
        _load_declarations()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownMetric(
            f"unknown metric {name!r}: no module declared it (bench.metrics.registry.register); "
            f"known: {', '.join(sorted(_REGISTRY))}"
        ) from None


def for_key(results_key: str) -> Metric:
    """The metric behind a results key: ``psnr-rgb``; ``<task>/<metric>``; ``<task>/<metric>/<class>``."""
    parts = results_key.split("/")
    return get(parts[0] if len(parts) == 1 else parts[1])


def is_task_key(results_key: str) -> bool:
    """Whether a results key holds a task's metric (``<task>/<metric>``) rather than a human one."""
    return "/" in results_key


def human(media: str = IMAGE, names: Iterable[str] | None = None) -> dict[str, Metric]:
    """The human metrics (those with a scorer) for ``media``, all or the ``names`` asked for (in that order)."""
    _load_declarations()
    known = {n: m for n, m in _REGISTRY.items() if media in m.scorers}
    if names is None:
        return known
    out = {}
    for n in names:
        if n not in known:
            kinds = sorted(known)
            raise UnknownMetric(f"unknown {media} metric {n!r}; known: {', '.join(kinds)}")
        out[n] = known[n]
    return out


def declared() -> dict[str, Metric]:
    """Every declared metric, by name."""
    _load_declarations()
    return dict(_REGISTRY)
