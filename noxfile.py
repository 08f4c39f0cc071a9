"""Sessions: the longer checks CI runs after the README's test command, lint, and the speed benchmark.

nox -s slow ray       # what CI runs after the README's two commands (README, "Two commands on a fresh machine")
nox -s slow           # tests marked `slow` (the leaderboard page in headless Chromium among them), in this environment
nox -s ray            # multirun on a local Ray instance (hydra-ray-launcher, in its own venv)
nox -s lint
nox -s bench -- DIR   # speed vs CompressAI's benchmark on a folder (e.g. Kodak)
"""

from __future__ import annotations

import os
import shutil

import nox

nox.options.sessions = ["lint", "slow"]
nox.options.default_venv_backend = "venv"


@nox.session(venv_backend="none")
def slow(session: nox.Session) -> None:
    """Tests marked ``slow``, in the environment the README's test command made (no second install).

    The leaderboard page tests need a Chromium: where there is none and this runs as root on Debian, it is
    installed from Debian's packages; elsewhere those tests skip and say how to get one.
    """
    if not any(shutil.which(n) for n in ("chromium", "chromium-browser")) and shutil.which("apt-get"):
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            session.run("apt-get", "update", "-qq", external=True)
            session.run("apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium", external=True)
    session.run("python", "-m", "pytest", "-q", "-m", "slow", *session.posargs, external=True)


@nox.session(python="3.11")
def ray(session: nox.Session) -> None:
    """hydra-ray-launcher pins cloudpickle<3 (so joblib<1.6): it gets this venv, not the dev one."""
    session.install("-U", "pip")
    session.install("-e", ".[ray]", "pytest>=8")  # not .[test]: its pytorch-msssim pulls torch, unused here
    session.run("python", "-c", "import hydra_plugins.hydra_ray_launcher.ray_launcher")  # fail, never skip
    session.run("python", "-m", "pytest", "-m", "ray", "tests/running/test_ray.py", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")


@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    """Speed against CompressAI's own benchmark, in this environment (the `dev` extra installed)."""
    session.run("python", "benchmarks/speed_vs_compressai.py", *session.posargs, external=True)
