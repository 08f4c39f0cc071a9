"""Content digests: what a file, an array or a config *is*, as a short string that changes when it does.

A result is keyed by the content of what produced it (sample pixels, weight
files, configs), never by names or paths alone: the same name with new
content must never meet an old number. Hashing is SHA-256 throughout.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

#: (resolved path, size, mtime_ns) -> SHA-256: a file is hashed once per process unless it changes
_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (cached per process while its size and modification time stay the same)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_DIGESTS:
        digest = hashlib.sha256()
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _FILE_DIGESTS[key] = digest.hexdigest()
    return _FILE_DIGESTS[key]


def array_sha256(array: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes (and a video clip's frame rate, which its bytes carry)."""
    fps = getattr(array, "fps", None) or ""
    h = hashlib.sha256(f"{array.dtype}{array.shape}{fps}".encode())
    h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def json_sha256(value: Any) -> str:
    """SHA-256 of a JSON-able value in canonical form (sorted keys)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def short(digest: str, n: int = 12) -> str:
    """The first ``n`` hex digits: what folder names and messages show."""
    return digest[:n]


def module_digest(module: Any) -> str:
    """SHA-256 over a torch module's state dict (names, dtypes, shapes, bytes): weights held in memory."""
    import torch

    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
