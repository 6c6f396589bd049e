"""The project's own promises: CI runs the README's test command; the code is lint-clean."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest

from tests.helpers import ROOT


def readme_commands() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    return [block.strip() for block in blocks]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    commands = readme_commands()
    test_command = next(c for c in commands if "pytest" in c)
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines


def test_readme_main_command_runs_the_shipped_samples() -> None:
    main = readme_commands()[0]
    assert main.startswith("python3 -m venv .venv")
    assert main.endswith("newsletter send --now")


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]])
def test_ruff(args: list[str]) -> None:
    """Lint runs with the interpreter running the tests (the test extra installs ruff); in CI
    a missing ruff is a failure, not a skip."""
    if importlib.util.find_spec("ruff") is None:
        if os.environ.get("CI"):
            pytest.fail("ruff is not installed, and CI must lint: pip install -e '.[test]'")
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
