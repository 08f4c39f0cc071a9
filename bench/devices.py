"""Which torch device a run computes on: ``auto`` is CUDA when torch sees a GPU, else the CPU."""

from __future__ import annotations


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; any other name as given (``cuda:1``, ``cpu``)."""
    if str(device) != "auto":
        return str(device)
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"
