"""How much computation a method and its tasks take: kMAC per pixel, counted once per rate point on one sample.

Counting runs the code under torch's operation counter (``bench.metrics.complexity``), which is slower than a
plain run, so it is done apart from the sweep: one extra encode and decode of the first sample at each rate
point, and one prediction of each task on it. The figures go into ``meta.complexity`` and the per-rate
``results`` (``kmac_enc``, ``kmac_dec``); what does not run in torch has none (``None``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from bench.datasets.base import ImageDataset, Sample
from bench.methods.base import HUMAN, Bitstream, Method
from bench.metrics.complexity import count_macs, kmac_per_pixel
from bench.tasks.base import Task

log = logging.getLogger(__name__)


def pixels_of(image: Any) -> int:
    """Pixels of an image, or of every frame of a clip."""
    shape = image.shape
    return int(shape[0] * shape[1]) if len(shape) == 3 else int(shape[0] * shape[1] * shape[2])


def _received(method: Method, written: Bitstream, target: str) -> Bitstream:
    names = method.streams_for(target, written)
    return Bitstream({n: written.streams[n] for n in names}, height=written.height, width=written.width)


def method_complexity(method: Method, image: Any, rates: Sequence[Any], targets: Sequence[str]) -> dict[str, Any]:
    """Per rate point: kMAC/pixel of the encoder and of the decode each target receives."""
    pixels = pixels_of(image)
    out: dict[str, Any] = {}
    if not method.uses_torch:  # nothing for torch to count
        return {str(r): {"encoder": None, "decoder": dict.fromkeys(targets)} for r in rates}
    for rate in rates:
        written, enc = count_macs(method.encode, image, rate)
        dec: dict[str, float | None] = {}
        for target in targets:
            _, macs = count_macs(method.decode, _received(method, written, target), target)
            dec[target] = kmac_per_pixel(macs, pixels)
        out[str(rate)] = {"encoder": kmac_per_pixel(enc, pixels), "decoder": dec}
    return out


def task_complexity(task: Task, image: Any) -> float | None:
    """kMAC/pixel of one prediction of ``task``'s network, where it runs in torch (or has a torch twin)."""
    probe = task.torch_probe()
    if probe is None:
        return None
    _, macs = count_macs(probe, [image])
    return kmac_per_pixel(macs, pixels_of(image))


def profile(method: Method, dataset: ImageDataset, samples: Sequence[Sample], tasks: Sequence[Task]) -> dict[str, Any]:
    """``meta.complexity`` of a run, from its first sample that loads; {} when none does or counting fails."""
    for sample in samples:
        try:
            image = dataset.load(sample)
        except Exception:  # noqa: BLE001 - an unreadable sample fails in the sweep with its reason
            continue
        try:
            targets = [HUMAN, *(t.name for t in tasks)]
            rates = method_complexity(method, image, method.rates, targets)
            nets = {t.name: task_complexity(t, image) for t in tasks}
        except Exception as exc:  # noqa: BLE001 - complexity is a figure beside the results, never their end
            log.warning("complexity not counted: %s: %s", type(exc).__name__, exc)
            return {"error": f"{type(exc).__name__}: {exc}"}
        return {
            "sample": sample.id,
            "pixels": pixels_of(image),
            "unit": "kMAC/pixel (torch's FLOP formulas, a MAC = 2 FLOPs; entropy coding not counted)",
            "rates": rates,
            "tasks": nets,
        }
    return {}
