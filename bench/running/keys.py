"""A row's identity: everything that decides its numbers, and the keys made from it.

A number must never meet inputs other than its own. The identity has two levels:

- the **run key** names a rows folder ``<dataset>/<method>/<key>/``: the resolved
  method config (not its rate list, name or description: rate-point jobs fill
  the same rows), the resolved dataset config (not ``root``: where the data
  lives is not what it is; each sample's content is keyed below; in both, a
  path to a file counts by the file's SHA-256 and a path to a folder not at
  all, see :func:`portable`), the human
  metrics, the versions of the codec libraries and of what decodes inputs and
  computes metrics, the harness's :data:`MEASUREMENT_VERSION`, and the device
  and precision of a method that runs in torch;
- every **row** carries the digest of its sample's content (``content``: the
  file's bytes, or the decoded pixels for generated samples) and of the
  weight files its rate point uses (``weights``: SHA-256 of each backbone,
  trained module and task network in the method). A row counts only where
  both equal today's: a changed file or weight file is measured again, and
  the old row stays in the log, never used.

A machine task's rows add the **task key** (its resolved config with the device
resolved, its weight files' SHA-256, its versions and precision); predictions
on uncompressed samples are keyed by the task key and the dataset's key.
The README's table "A row's identity" says the same for users.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.io.digests import array_sha256, file_sha256, json_sha256, short
from bench.provenance import installed_versions

log = logging.getLogger("bench")

#: bump when a change to the harness changes the numbers rows hold (v2: rows carry content and weight digests)
MEASUREMENT_VERSION = 2
#: method options that do not change what one (sample, rate) row measures
NOT_IN_METHOD_KEY = ("rates", "description", "name")
#: dataset options that say where data lives, not what it is (the samples' content is in every row)
NOT_IN_DATASET_KEY = ("root",)
#: task options that change only speed
NOT_IN_TASK_KEY = ("batch_size", "threads")
#: packages that decode inputs and compute the human metrics (their versions are in every run key)
MEASUREMENT_PACKAGES = ("numpy", "pillow", "opencv-python-headless", "scikit-image", "av")
#: a weight "file" that is generated, not read (seeded test networks): its description is its identity
GENERATED = "generated:"


def _without(config: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    drop = set(keys)
    return {k: portable(v) for k, v in config.items() if k not in drop}


def portable(value: Any) -> Any:
    """A config value as identity: a path to a file becomes the file's SHA-256, a path to a folder ``<folder>``.

    Where something lives is not what it is: the same weights or labels at another path (another machine, a
    moved checkout) give the same key, and other bytes at the same path give another. What a folder holds is
    keyed where it is read (each sample's content, each weight file's SHA-256).
    """
    if isinstance(value, Mapping):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(v) for v in value]
    if isinstance(value, str) and ("/" in value or "\\" in value) and not value.startswith(("http:", "https:")):
        try:
            p = Path(value).expanduser()
            if p.is_file():
                return "sha256:" + file_sha256(p)
            if p.is_dir():
                return "<folder>"
        except OSError:
            return value
    return value


def key_of(identity: Mapping[str, Any]) -> str:
    """The short key (folder name) of an identity."""
    return short(json_sha256(dict(identity)))


def cache_key(identity: Mapping[str, Any]) -> str:
    """What decides a method's bytes (its config, versions, device; not the dataset nor the metrics)."""
    return key_of({k: identity[k] for k in ("method", "versions", "measurement_version", "device")})


def weight_digests(files: Mapping[str, Path | str]) -> dict[str, str]:
    """Role -> SHA-256 of each weight file (a ``generated:`` description stays as it is)."""
    out = {}
    for role, f in files.items():
        if isinstance(f, str) and f.startswith(GENERATED):
            out[role] = f
        else:
            out[role] = file_sha256(f)
    return out


def weights_key(files: Mapping[str, Path | str]) -> str:
    """What a row records in ``weights``: one digest over the rate point's weight files ('' when it has none)."""
    return short(json_sha256(weight_digests(files))) if files else ""


def sample_content(path: str | Path | None, pixels: Any = None) -> str:
    """A sample's ``content`` digest: of the file's bytes when it is one file, else of the decoded pixels."""
    if path is not None and Path(path).is_file():
        return "file:" + short(file_sha256(path), 32)
    if pixels is None:
        raise ValueError("a sample's content needs its file or its pixels")
    return "pixels:" + short(array_sha256(pixels), 32)


def device_identity(method: Any, device: str) -> dict[str, Any]:
    """Device and precision of a method that runs in torch (numbers may differ across them); {} otherwise."""
    if not getattr(method, "uses_torch", False):
        return {}
    out = {"device": device, "precision": str(getattr(method, "precision", "float32"))}
    if device.startswith("cuda"):
        import torch

        out["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return out


def run_identity(
    method_cfg: Mapping[str, Any],
    dataset_cfg: Mapping[str, Any],
    metrics: list[str],
    codec_versions: Mapping[str, str],
    device: Mapping[str, Any],
) -> dict[str, Any]:
    """The parts of the run key (see the module docstring)."""
    return {
        "method": _without(method_cfg, NOT_IN_METHOD_KEY),
        "dataset": _without(dataset_cfg, NOT_IN_DATASET_KEY),
        "metrics": list(metrics),
        "versions": {**installed_versions(*MEASUREMENT_PACKAGES), **dict(codec_versions)},
        "measurement_version": MEASUREMENT_VERSION,
        "device": dict(device),
    }


def resolved_task_device(task_cfg: Mapping[str, Any]) -> str | None:
    """The device a task config asks for, ``auto`` resolved as the tasks resolve it (CUDA when torch sees one)."""
    from bench.devices import resolve_device

    device = task_cfg.get("device")
    return device if device is None else resolve_device(device)


def task_identity(task_cfg: Mapping[str, Any], task: Any) -> dict[str, Any]:
    """The parts of a task key: config (device resolved), weights, versions, precision, measurement version."""
    cfg = _without(task_cfg, NOT_IN_TASK_KEY)
    device = resolved_task_device(task_cfg)
    if "device" in cfg:
        cfg["device"] = device
    precision = "float32"
    if task_cfg.get("autocast"):
        precision = "float16" if str(device).startswith("cuda") else "bfloat16"
    return {
        "task": cfg,
        "weights": weight_digests(task.weight_files()),
        "versions": dict(task.versions()),
        "precision": precision,
        "measurement_version": MEASUREMENT_VERSION,
    }


@dataclass(frozen=True)
class RowStamp:
    """Today's content of every sample and weights of every rate point: which rows count.

    A row counts when its ``content`` equals its sample's and (unless ``weights`` is None, for predictions on
    uncompressed samples) its ``weights`` equals its rate point's.
    """

    contents: Mapping[str, str]
    weights: Mapping[str, str] | None = None

    def row_fields(self, sample: str, rate: Any) -> dict[str, str]:
        out = {"content": self.contents.get(sample, "")}
        if self.weights is not None:
            out["weights"] = self.weights.get(str(rate), "")
        return out

    def counts(self, row: Mapping[str, Any]) -> bool:
        sample = row.get("sample")
        if sample not in self.contents or row.get("content") != self.contents[sample]:
            return False
        return self.weights is None or row.get("weights") == self.weights.get(str(row.get("rate")))


def differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two identities differ (``method.quality``, ``versions.pillow``, ...)."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            path = f"{prefix}.{k}" if prefix else str(k)
            if k not in old or k not in new:
                out.append(path)
            else:
                out.extend(differences(old[k], new[k], path))
        return out
    return [] if old == new else [prefix or "(whole)"]


IDENTITY_FILE = "identity.json"


def previous_identity(method_dir: Path, current_key: str) -> tuple[Path, dict[str, Any] | None] | None:
    """The most recent other rows folder of this (dataset, method) and its identity (None: written before v2)."""
    if not method_dir.is_dir():
        return None
    others = [d for d in method_dir.iterdir() if d.is_dir() and d.name != current_key and (d / "rows.jsonl").exists()]
    if not others:
        return None
    latest = max(others, key=lambda d: (d / "rows.jsonl").stat().st_mtime)
    path = latest / IDENTITY_FILE
    try:
        return latest, json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except ValueError:
        return latest, None


def describe_previous(method_dir: Path, current_key: str, identity: Mapping[str, Any]) -> str | None:
    """One line saying that another identity's rows exist here and what differs, or None."""
    found = previous_identity(method_dir, current_key)
    if found is None:
        return None
    folder, old = found
    if old is None:
        what = "it was written by an earlier harness version (no identity.json)"
    else:
        diff = differences(old, dict(identity))
        shown = ", ".join(diff[:6]) + (f" and {len(diff) - 6} more" if len(diff) > 6 else "")
        what = f"it differs in {shown}"
    return f"a previous run with another identity is in {folder} (not reused: {what})"
