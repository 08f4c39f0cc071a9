"""What a weight file is, for results and for loading: its SHA-256, where it comes from, how it was trained.

Every learned number depends on weight files (a codec's, a module trained on
top of a backbone, a task network's). Results name each one (``meta.weights``)
with its SHA-256 and, when a JSON sidecar sits beside it (``name.json``, written
by ``train-codec export`` and ``train-export``), what the sidecar says: the
architecture, training steps and data, validation figures, the SHA-256 of the
backbone a module was trained on, and whether the file is a published model
or one trained locally. Loading a module onto another backbone than the one
it was trained on is refused here (:func:`check_trained_on`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from bench.io.digests import file_sha256

#: origin of a file: published by its authors (a model zoo, a paper's release), trained with this harness, or
#: neither known (a user's own file without a sidecar)
PUBLISHED, LOCAL, UNKNOWN = "published", "local", "unknown"


class WeightsMismatch(RuntimeError):
    """A trained module's file does not belong to the backbone (or task network) it is loaded onto."""


def sidecar_of(weights: str | os.PathLike) -> Path:
    """``name.pth`` / ``model.pt`` -> ``name.json`` / ``model.json``: the sidecar that describes the file."""
    return Path(weights).with_suffix(".json")


def read_sidecar(weights: str | os.PathLike) -> dict[str, Any] | None:
    """The sidecar's contents, or None when there is none (a malformed sidecar is an error naming it)."""
    side = sidecar_of(weights)
    if not side.is_file():
        return None
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{side}: not a JSON weights sidecar ({exc})") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"{side}: not a JSON weights sidecar (found {type(meta).__name__})")
    return meta


def origin_of(sidecar: dict[str, Any] | None, default: str = UNKNOWN) -> str:
    """``published``/``local``/``unknown``: the sidecar's word, a sidecar with a training record is ours."""
    if sidecar is None:
        return default
    if "origin" in sidecar:
        return str(sidecar["origin"])
    return LOCAL if "training" in sidecar else default


def describe(role: str, path: str | os.PathLike, default_origin: str = UNKNOWN, **extra: Any) -> dict[str, Any]:
    """One entry of ``meta.weights``: role, file name, SHA-256, origin and the sidecar's training record."""
    p = Path(path)
    side = read_sidecar(p)
    entry: dict[str, Any] = {"role": role, "file": p.name, "sha256": file_sha256(p)}
    entry["origin"] = origin_of(side, default_origin)
    if side:
        for key in ("arch", "architecture", "quality", "lmbda", "lambda", "steps", "total_steps", "validation"):
            if key in side:
                entry[key] = side[key]
        training = side.get("training") or {}
        for key in ("data", "device", "patch_size", "crop", "batch_size", "init_from", "schedule"):
            if key in training:
                entry[key] = training[key]
        if "trained_on" in side:
            entry["trained_on"] = {k: v.get("sha256") for k, v in side["trained_on"].items() if isinstance(v, dict)}
        built_on = weights_built_on(side)
        if built_on:
            entry["built_on"] = built_on
    entry.update(extra)
    return entry


def weights_built_on(sidecar: dict[str, Any]) -> list[str]:
    """The weights a trained file was built on: the backbone it depends on and the files it started from
    (``init_from``, ``init_encoder_from``), named without their quality (``bmshj2018-hyperprior-mse``); a start
    from another run of the same method (``model.pt``, ``last.pt``) is its own chain, not a base."""
    training = sidecar.get("training") or {}
    records = [training.get("init_from"), training.get("init_encoder_from")]
    records.append((sidecar.get("trained_on") or {}).get("backbone"))
    names = {
        re.sub(r"-q\d+\.\w+$", "", str(r["file"]))
        for r in records
        if isinstance(r, dict) and r.get("file") and Path(str(r["file"])).name not in ("model.pt", "last.pt")
    }
    return sorted(names)


def total_steps(entry: dict[str, Any]) -> int | None:
    """Training steps behind a weight file's record, summed over stages and its ``init_from`` chain: a sidecar's
    ``total_steps``, or a run's own steps plus those of the file it started from."""
    if entry.get("total_steps") is not None:
        return int(entry["total_steps"])
    steps = entry.get("steps")
    if steps is None:
        return None
    own = sum(int(v) for v in steps.values()) if isinstance(steps, dict) else int(steps)
    start = entry.get("init_from") if isinstance(entry.get("init_from"), dict) else {}
    return own + int(start.get("total_steps") or 0)


def budget_label(entry: dict[str, Any]) -> str:
    """A short label of how a weight file came to be: ``published``, or ``local, 8465 steps, cpu``."""
    origin = entry.get("origin", UNKNOWN)
    if origin != LOCAL:
        return origin
    steps = total_steps(entry)
    parts = [LOCAL]
    if steps is not None:
        parts.append(f"{steps} steps")
    if entry.get("device"):
        parts.append(str(entry["device"]))
    return ", ".join(parts)


def check_trained_on(
    module_file: str | os.PathLike, trained_on: dict[str, Any] | None, role: str, actual: str | os.PathLike | str
) -> None:
    """Refuse a module trained on another ``role`` (e.g. ``backbone``) than the file it is loaded onto.

    ``trained_on`` is the module file's record (``{role: {"file", "sha256"}}``); ``actual`` the path of the
    weights it would run with now, or a token such as ``seeded:N=8,M=8,seed=0`` for generated weights.
    """
    actual_sha = file_sha256(actual) if Path(str(actual)).is_file() else str(actual)
    actual_name = str(actual)
    record = (trained_on or {}).get(role)
    if not isinstance(record, dict) or not record.get("sha256"):
        raise WeightsMismatch(
            f"{module_file} does not record the {role} it was trained on, so it cannot be checked against "
            f"{actual_name}; retrain it (python -m bench train ...) or export it again with its training run "
            "(python -m bench train-export ...)"
        )
    if record["sha256"] != actual_sha:
        raise WeightsMismatch(
            f"{module_file} was trained on the {role} {record.get('file', '?')} (SHA-256 {record['sha256'][:12]}), "
            f"but this run's {role} is {actual_name} (SHA-256 {actual_sha[:12]}): load it onto the {role} it was "
            "trained on, or train it for this one"
        )


class ChecksumMismatch(ValueError):
    """A weights file whose bytes are not the ones its sidecar describes."""


def verified_sidecar(weights: str | os.PathLike) -> dict[str, Any] | None:
    """The sidecar after checking the file against its ``sha256``; None when there is no sidecar."""
    side = read_sidecar(weights)
    if side is None:
        return None
    expected = side.get("sha256")
    if not isinstance(expected, str):
        raise ChecksumMismatch(f"{sidecar_of(weights)}: a weights sidecar needs a 'sha256' field")
    actual = file_sha256(weights)
    if actual != expected:
        raise ChecksumMismatch(
            f"{weights}: SHA-256 {actual} does not match {expected} in {sidecar_of(weights).name}; "
            "the file is corrupt or not the one its sidecar describes (fetch or export it again)"
        )
    return side


def load_trained(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """A trained module's state dict (float32) and its record (``trained_on``, steps, data, validation).

    Reads either an exported file (fp16 state dict + sidecar, checksum verified) or a training run's
    ``model.pt`` (its ``provenance``); always with ``weights_only=True``.
    """
    import torch

    side = verified_sidecar(path)
    obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict or a training checkpoint, found {type(obj).__name__}")
    record: dict[str, Any] = dict(side) if side is not None else dict(obj.get("provenance") or {})
    state = obj["state_dict"] if isinstance(obj.get("state_dict"), dict) else obj
    state = {k: v.float() if v.dtype in (torch.float16, torch.bfloat16) else v for k, v in state.items()}
    return state, record


def fetch_release(files: list[Path], release_url: str | None) -> list[Path]:
    """Make every file present and verified against its committed sidecar's SHA-256.

    A file that is missing is downloaded from ``release_url`` (the project's published weights) when one is
    configured; one that is present is checked as it is. The sidecar must exist: it is what a download is
    verified against.
    """
    from bench.fetch import FetchError, download

    out = []
    for target in files:
        if not sidecar_of(target).is_file():
            raise FetchError(f"{sidecar_of(target)}: no sidecar, so no checksum to verify {target.name} against")
        if not target.is_file():
            if not release_url:
                raise FetchError(
                    f"{target} is missing and no release_url is configured to download it from; train and "
                    "export it (README, 'Training'), or copy the released file there"
                )
            download(f"{release_url.rstrip('/')}/{target.name}", target)
        try:
            verified_sidecar(target)
        except ChecksumMismatch as exc:
            raise FetchError(str(exc)) from exc
        out.append(target)
    return out


def read_state_dict(weights: str | os.PathLike) -> dict[str, Any]:
    """An exported state dict as stored, checksum-verified when a sidecar is beside it."""
    import torch

    verified_sidecar(weights)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{weights}: expected a state dict, found {type(state).__name__}")
    return state


def to_float32(state: dict[str, Any]) -> dict[str, Any]:
    """Half-precision tensors back to float32 (integer CDF tables untouched): how shipped weights run."""
    import torch

    return {k: v.float() if v.dtype in (torch.float16, torch.bfloat16) else v for k, v in state.items()}
