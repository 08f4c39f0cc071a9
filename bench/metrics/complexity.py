"""Complexity: multiply-accumulates per pixel of learned encoders, decoders and task networks, and peak memory.

MACs are counted with torch's own FLOP formulas (``torch.utils.flop_counter.flop_registry``, those of
``FlopCounterMode``, which counts a multiply-accumulate as two FLOPs) while the code runs once on a real sample,
seen at torch's dispatcher (:func:`mac_counter`; ``FlopCounterMode`` itself also tracks modules, which fails
under ``torch.inference_mode``, where codecs run): convolutions, matrix products and attention. Element-wise
operations and the entropy coder's arithmetic (rANS runs in C++ outside torch) are not counted, as in the
kMAC/pixel figures of the learned-compression literature. Code that does not run in torch
(a conventional codec, an onnxruntime or TFLite network) has no count: ``None``, never 0.

Peak memory is the process's resident-set high-water mark during one call: on Linux the mark is reset before the
call (``/proc/self/clear_refs``) and read after it (``VmHWM``); on a CUDA device it is torch's peak allocation.
Elsewhere it is ``None``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def count_macs(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, int | None]:
    """``fn(*args)`` and the multiply-accumulates torch ran for it (None when torch is not installed)."""
    try:
        counter = mac_counter()
    except ImportError:
        return fn(*args, **kwargs), None
    with counter:
        result = fn(*args, **kwargs)
    return result, counter.flops // 2


def mac_counter() -> Any:
    """A dispatch mode that sums the FLOPs of every operation torch has a formula for."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class MACCounter(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.flops = 0

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            formula = flop_registry.get(func._overloadpacket)
            if formula is None:  # e.g. aten.conv2d, which inference mode dispatches undecomposed: count its parts
                with self:
                    out = func.decompose(*args, **kwargs)
                if out is not NotImplemented:
                    return out
            out = func(*args, **kwargs)
            if formula is not None:
                self.flops += int(formula(*args, **kwargs, out_val=out))
            return out

    return MACCounter()


def kmac_per_pixel(macs: int | None, pixels: int) -> float | None:
    """Thousands of MACs per pixel (a clip: per pixel of every frame)."""
    return None if macs is None or pixels <= 0 else macs / 1000.0 / pixels


def _vm_hwm_kib() -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class Peak:
    """Peak memory of one call, in MiB (None where this platform cannot say)."""

    mib: float | None = None


@contextlib.contextmanager
def peak_memory(device: str = "cpu") -> Iterator[Peak]:
    """Measure the peak memory of the enclosed call (see the module docstring)."""
    peak = Peak()
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats(device)
        yield peak
        peak.mib = torch.cuda.max_memory_allocated(device) / 2**20
        return
    try:
        _CLEAR_REFS.write_text("5")  # resets VmHWM to the current resident set
        can = True
    except OSError:
        can = False
    yield peak
    if can:
        kib = _vm_hwm_kib()
        peak.mib = None if kib is None else kib / 1024.0
