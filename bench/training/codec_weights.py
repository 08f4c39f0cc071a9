"""Shippable codec weights: fp16 state dicts with entropy tables, a checksum and their figures.

Why: a trained codec is only useful to others if its file is small, safe to
load (``torch.load(weights_only=True)``), decodes the same everywhere, and
says what it is. ``export`` therefore

- runs ``update(force=True)`` so the quantized CDF tables travel with the
  weights (the decoder never rebuilds them, so encoder and decoder agree);
- stores the transforms in float16 and the entropy models (their parameters,
  the scale table and the integer CDF tables) exactly as trained: the tables
  stay consistent with the parameters they were computed from;
- writes a JSON sidecar beside the ``.pth``: architecture, quality, lambda,
  steps, training data, the validation figures, and the file's SHA-256.

:func:`read_state_dict` is how the harness reads such a file: it checks the
sidecar's SHA-256 when there is one and fails with a clear message when the
bytes differ.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from bench.io.digests import file_sha256
from bench.io.files import atomic_torch_save
from bench.provenance import installed_versions
from bench.training.weights import ChecksumMismatch, sidecar_of, verified_sidecar

#: submodules whose tensors are kept at full precision (their tables derive from them)
ENTROPY_MODULES = ("entropy_bottleneck", "gaussian_conditional")


ChecksumError = ChecksumMismatch


def sha256_of(path: str | os.PathLike) -> str:
    """SHA-256 of a weights file (what its sidecar records)."""
    return file_sha256(path)


def sidecar_path(weights: str | os.PathLike) -> Path:
    """``name.pth`` -> ``name.json`` (the sidecar that describes it)."""
    return sidecar_of(weights)


def verify_checksum(weights: str | os.PathLike) -> dict[str, Any] | None:
    """The sidecar's contents after checking the file against its ``sha256``; None if there is no sidecar."""
    return verified_sidecar(weights)


def read_state_dict(weights: str | os.PathLike) -> dict[str, torch.Tensor]:
    """An exported state dict, checksum-verified when a sidecar is beside it; tensors as stored."""
    verify_checksum(weights)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{weights}: expected a state dict, found {type(state).__name__}")
    return state


def to_float32(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Half-precision tensors back to float32 (integer CDF tables untouched)."""
    return {k: v.float() if v.dtype in (torch.float16, torch.bfloat16) else v for k, v in state.items()}


def shippable_state_dict(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``update(force=True)``, then float16 transforms and full-precision entropy models."""
    with torch.no_grad():
        net.update(force=True)
    out = {}
    for key, value in net.state_dict().items():
        value = value.detach().cpu()
        keep = any(part in ENTROPY_MODULES for part in key.split("."))
        out[key] = value.clone() if keep or not value.is_floating_point() else value.half()
    return out


def _versions() -> dict[str, str]:
    return installed_versions("torch", "compressai")


def _validation_record(run_dir: Path, step: int) -> dict[str, Any]:
    """The last ``history.jsonl`` line at or before ``step``."""
    history = run_dir / "history.jsonl"
    best: dict[str, Any] = {}
    if history.is_file():
        for line in history.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("step", 0) <= step and "val_bpp" in rec:
                best = rec
    return best


def export_run(
    run_dir: str | os.PathLike,
    checkpoint: str = "last",
    out_dir: str | os.PathLike = "weights",
    name: str | None = None,
) -> tuple[Path, Path]:
    """Write ``<out_dir>/<name>.pth`` (fp16 + tables) and its JSON sidecar from a training run."""
    from bench.training.codec import TrainError, build_model, describe_init, read_checkpoint

    run_dir = Path(os.path.expanduser(str(run_dir)))
    if checkpoint not in ("last", "best"):
        raise TrainError(f"checkpoint must be last or best, not {checkpoint!r}")
    ckpt = read_checkpoint(run_dir / f"{checkpoint}.pt")
    cfg = ckpt["config"]
    net = build_model(cfg)
    net.load_state_dict(ckpt["model"])
    state = shippable_state_dict(net.eval())

    out_dir = Path(os.path.expanduser(str(out_dir)))
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = name or f"{cfg['model']}-{cfg['metric']}-q{cfg['quality']}"
    weights = out_dir / f"{stem}.pth"
    atomic_torch_save(state, weights)
    val = _validation_record(run_dir, ckpt["step"])
    init = ckpt.get("init")
    if init is None and cfg.get("init_from"):  # a checkpoint from before runs recorded their start
        start = Path(os.path.expanduser(str(cfg["init_from"])))
        init = describe_init(start) if start.is_file() else {"file": start.name}
    meta = {
        "arch": cfg["model"],
        "metric": cfg["metric"],
        "quality": cfg["quality"],
        "N": int(net.g_a[0].weight.shape[0]) if hasattr(net, "g_a") else cfg["N"],
        "M": int(net.g_a[-1].weight.shape[0]) if hasattr(net, "g_a") else cfg["M"],
        "lmbda": cfg["lmbda"],
        "steps": ckpt["step"],
        "total_steps": ckpt["step"] + int((init or {}).get("total_steps") or 0),  # with the run it started from
        "checkpoint": checkpoint,
        "training": {
            "data": ckpt.get("data", {}),
            "patch_size": cfg["patch_size"],
            "batch_size": cfg["batch_size"],
            "lr": cfg["lr"],
            "lr_drop": cfg["lr_drop"],
            "seed": cfg["seed"],
            "init_from": init,
            "train_seconds": round(ckpt["elapsed_s"]),
        },
        "validation": {k: v for k, v in val.items() if k.startswith("val_") or k in ("step", "lr")},
        "dtype": "float16 transforms; entropy models (parameters, scale table, int32 CDF tables) as trained",
        "versions": _versions(),
        "bytes": weights.stat().st_size,
        "sha256": sha256_of(weights),
    }
    side = sidecar_path(weights)
    side.write_text(json.dumps(meta, indent=2) + "\n")
    return weights, side


def fetch_release(folder: str | os.PathLike, release_url: str | None, qualities: list[int], pattern: str) -> list[Path]:
    """The ``.pth`` files of ``qualities`` in ``folder``, each verified against its committed sidecar
    (downloaded from ``release_url`` first when missing): :func:`bench.training.weights.fetch_release`."""
    from bench.training.weights import fetch_release as fetch_files

    folder = Path(os.path.expanduser(str(folder)))
    return fetch_files([folder / pattern.format(quality=q) for q in qualities], release_url)
