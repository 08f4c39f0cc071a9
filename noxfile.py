"""Sessions: tests (the README's test command), lint, slow checks, speed benchmark.

nox -s tests          # what CI runs
nox -s lint
nox -s slow           # longer checks (marked `slow`)
nox -s ray            # multirun on a local Ray instance (hydra-ray-launcher, in its own venv)
nox -s bench -- DIR   # speed vs CompressAI's benchmark on a folder (e.g. Kodak)
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.default_venv_backend = "venv"


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.install("--no-deps", "mediapipe==0.10.21", "facenet-pytorch==2.6.0")  # they pin old numpy/torch
    session.run("python", "-m", "pytest", "-m", "not slow", *session.posargs)


@nox.session(python="3.11")
def slow(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("python", "-m", "pytest", "-m", "slow", *session.posargs)


@nox.session(python="3.11")
def ray(session: nox.Session) -> None:
    """hydra-ray-launcher pins cloudpickle<3 (so joblib<1.6): it gets this venv, not the dev one."""
    session.install("-e", ".[ray]", "pytest>=8")  # not .[test]: its pytorch-msssim pulls torch, unused here
    session.run("python", "-c", "import hydra_plugins.hydra_ray_launcher.ray_launcher")  # fail, never skip
    session.run("python", "-m", "pytest", "-m", "ray", "tests/test_ray.py", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("python", "benchmarks/speed_vs_compressai.py", *session.posargs)
