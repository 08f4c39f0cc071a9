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
from bench.training.export import shippable
from bench.training.weights import sidecar_of


def shippable_state_dict(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``update(force=True)``, then float16 transforms and full-precision entropy models (as every export)."""
    with torch.no_grad():
        net.update(force=True)
    return shippable(net.state_dict())


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
        "sha256": file_sha256(weights),
    }
    side = sidecar_of(weights)
    side.write_text(json.dumps(meta, indent=2) + "\n")
    return weights, side
