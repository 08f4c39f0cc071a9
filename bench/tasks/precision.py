"""Mixed precision for torch task networks (the ``autocast`` option of their configs).

Under autocast, matmuls and convolutions run in a 16-bit float (bfloat16 on
the CPU, whose autocast supports nothing else; float16 on CUDA, the fast
path of its tensor cores) while reductions stay in float32. Predictions are
made from float32 copies of the outputs, so rows hold the same plain JSON
either way; the numbers move slightly, which is why ``autocast`` is part of
the task's config hash.
"""

from __future__ import annotations

import contextlib
from typing import Any

#: the 16-bit type autocast uses on each device type
AUTOCAST_DTYPES = {"cpu": "bfloat16", "cuda": "float16"}


def autocast(device: Any, enabled: bool) -> contextlib.AbstractContextManager:
    """``torch.autocast`` on ``device``'s type (bf16 on CPU, fp16 on CUDA) when ``enabled``, else a no-op."""
    if not enabled:
        return contextlib.nullcontext()
    import torch

    device_type = torch.device(device).type
    if device_type not in AUTOCAST_DTYPES:
        raise ValueError(f"autocast: no 16-bit type for device {device!r} (supported: {sorted(AUTOCAST_DTYPES)})")
    return torch.autocast(device_type, dtype=getattr(torch, AUTOCAST_DTYPES[device_type]))
