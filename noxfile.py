"""Sessions: tests (the README's test command), lint, slow checks, speed benchmark.

nox -s tests          # what CI runs
nox -s lint
nox -s slow           # longer checks (marked `slow`)
nox -s bench -- DIR   # speed vs CompressAI's benchmark on a folder (e.g. Kodak)
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.default_venv_backend = "venv"


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("python", "-m", "pytest", "-m", "not slow", *session.posargs)


@nox.session(python="3.11")
def slow(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("python", "-m", "pytest", "-m", "slow", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("python", "benchmarks/speed_vs_compressai.py", *session.posargs)
