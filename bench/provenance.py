"""Where a number came from: code version, package versions, machine, time."""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import json
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

TRACKED_PACKAGES = (
    "hmc-bench",
    "numpy",
    "pillow",
    "opencv-python-headless",
    "imagecodecs",
    "pillow-heif",
    "hydra-core",
    "pandas",
    "torch",
    "torchvision",
    "compressai",
    "bjontegaard",
)


def installed_versions(*names: str) -> dict[str, str]:
    """Versions of the named distributions that are installed, read from metadata (nothing is imported)."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str]:
    """Python and the tracked packages' versions."""
    return {"python": platform.python_version(), **installed_versions(*names)}


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        res = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout.decode(errors="replace") if res.returncode == 0 else None


def git_state(path: Path | None = None) -> dict[str, Any]:
    """Commit of the checkout holding the code, and a hash of uncommitted changes."""
    here = path or Path(__file__).resolve().parent
    commit = _git(["rev-parse", "HEAD"], here)
    if commit is None:
        return {"commit": None}
    diff = _git(["diff", "HEAD"], here) or ""
    return {
        "commit": commit.strip(),
        "dirty": bool(diff),
        "diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if diff else None,
    }


def provenance(device: str = "cpu") -> dict[str, Any]:
    return {
        "git": git_state(),
        "versions": package_versions(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "device": device,
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def config_hash(config: dict[str, Any]) -> str:
    """Short stable hash of a resolved config (what makes results comparable)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
