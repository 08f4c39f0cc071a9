"""Run ``python -m bench`` as a user does: a subprocess, in a working directory of the test's choosing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path


def bench(
    *args: str, cwd: Path, env: dict | None = None, timeout: int = 600, without: Iterable[str] = ()
) -> subprocess.CompletedProcess:
    """``python -m bench ARGS`` in ``cwd``: this environment plus ``env``, less the variables named in ``without``."""
    full_env = {k: v for k, v in os.environ.items() if k not in set(without)}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env
    )
