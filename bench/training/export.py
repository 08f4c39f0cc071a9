"""``python -m bench train-export RUN_MODEL DEST``: a trained method's modules as a small file others can load.

Why: a training run's ``model.pt`` holds float32 weights and a full config;
what a repository ships must be small, safe to load (``weights_only=True``)
and say what it is. The export writes the state dict in float16 (entropy
models and integer tables exactly as trained, so encoder and decoder build the
same tables) and a JSON sidecar beside it: SHA-256, method, rate, λ, steps per
stage and in total (with the run it started from), training data and
schedule, device, validation figures, and the SHA-256 of the backbone and task
networks it was trained on, which loading checks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from bench.io.files import atomic_torch_save, atomic_write_text

#: state-dict key parts whose tensors stay as trained (their CDF tables derive from them)
FULL_PRECISION = ("entropy_bottleneck", "gaussian_conditional", "entropy_models")
MODULE_FORMAT = "hmc-bench-module/1"


def shippable(state: dict[str, Any]) -> dict[str, Any]:
    """Float tensors in float16 except the entropy models; integer tensors as they are."""
    out = {}
    for key, value in state.items():
        keep = any(part in FULL_PRECISION for part in key.split(".")) or not value.is_floating_point()
        out[key] = value.detach().cpu().clone() if keep else value.detach().cpu().half()
    return out


def _name_only(trained_on: dict[str, Any]) -> dict[str, Any]:
    """File names, not paths: a sidecar must read the same on every machine."""
    out = {}
    for role, rec in trained_on.items():
        f = str(rec.get("file", ""))
        out[role] = {**rec, "file": f if f.startswith("generated:") else Path(f).name}
    return out


def _file_names_only(options: Any) -> Any:
    """Absolute paths (``init_from``, ``init_encoder_from``, a task network's ``model``), at any depth, cut to
    their file names: a shipped sidecar says what a run started from and ran (their SHA-256 are recorded), not
    where they lay on the machine that trained it."""
    if isinstance(options, dict):
        return {k: _file_names_only(v) for k, v in options.items()}
    if isinstance(options, list):
        return [_file_names_only(v) for v in options]
    return Path(options).name if isinstance(options, str) and os.path.isabs(options) else options


def _start_record(start: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a run started from (file name, SHA-256, steps), without the path it lay at."""
    return {**start, "file": Path(str(start["file"])).name} if start else None


def sidecar_record(ckpt: dict[str, Any], weights: Path) -> dict[str, Any]:
    """The sidecar of an exported training run (see the module docstring)."""
    from bench.io.digests import file_sha256

    prov = dict(ckpt.get("provenance") or {})
    if "trained_on" not in prov:
        raise ValueError(
            "the checkpoint records no provenance (trained_on, steps): it was written before checkpoints carried "
            "it; train it again"
        )
    config = ckpt.get("config") or {}
    steps = {k: int(v) for k, v in (prov.get("steps") or {}).items()}
    start = prov.get("init_from") or None
    lambdas = (config.get("recipe") or {}).get("lambdas")
    rate = prov.get("rate")
    lam = None
    if isinstance(lambdas, dict):
        lam = lambdas.get(rate, lambdas.get(str(rate)))
    elif isinstance(lambdas, list) and isinstance(rate, int) and 0 < rate <= len(lambdas):
        lam = lambdas[rate - 1]
    method_cfg = {k: v for k, v in (config.get("method") or {}).items() if k not in ("checkpoints", "backbone")}
    return {
        "format": MODULE_FORMAT,
        "origin": prov.get("origin", "local"),
        "method": prov.get("method"),
        "class": prov.get("class"),
        "architecture": _file_names_only(method_cfg),
        "rate": rate,
        "tasks": prov.get("tasks"),
        "lambda": lam,
        "steps": steps,
        "total_steps": sum(steps.values()) + int((start or {}).get("total_steps") or 0),
        "training": {
            "data": prov.get("data"),
            "schedule": prov.get("schedule"),
            "device": prov.get("device"),
            "threads": prov.get("threads"),
            "init_from": _start_record(start),
            "init_encoder_from": _start_record(prov.get("init_encoder_from")),
            "recipe": _file_names_only({k: v for k, v in (config.get("recipe") or {}).items() if k != "stages"}),
        },
        "validation": ckpt.get("validation") or {},
        "trained_on": _name_only(prov["trained_on"]),
        "code": prov.get("code"),
        "versions": prov.get("versions"),
        "dtype": "float16; entropy models and integer tables as trained",
        "bytes": weights.stat().st_size,
        "sha256": file_sha256(weights),
    }


def export_module(run_model: str | os.PathLike, dest: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``dest`` (a file, or a folder to hold ``model.pt``) and its sidecar from a run's ``model.pt``."""

    from bench.training.loop import load_checkpoint
    from bench.training.weights import sidecar_of

    ckpt = load_checkpoint(run_model)
    target = Path(os.path.expanduser(str(dest)))
    if target.is_dir() or not target.suffix:
        target = target / "model.pt"
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(shippable(ckpt["state_dict"]), target)
    side = sidecar_of(target)
    atomic_write_text(side, json.dumps(sidecar_record(ckpt, target), indent=2, sort_keys=True, default=str) + "\n")
    return target, side


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench train-export",
        description="ship a trained method's modules: fp16 weights + a JSON sidecar (SHA-256, steps, data, λ, "
        "validation, the backbone and task networks it was trained on)",
    )
    parser.add_argument("run_model", help="a training run's model.pt (python -m bench train writes it)")
    parser.add_argument("dest", help="file or folder to write (a folder gets model.pt), e.g. checkpoints/icmh/...")
    args = parser.parse_args(argv)
    try:
        weights, side = export_module(args.run_model, args.dest)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{weights} ({weights.stat().st_size / 1e6:.2f} MB) and {side}")
    return 0
