"""Shared fixtures: a project folder with its own config, and the CLI run against it."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import Result

from tests.helpers import NOW, SAMPLES, SHARED, invoke


@pytest.fixture
def shared_digests() -> Path:
    """The reference captures in ../shared/digests (skip when absent)."""
    folder = SHARED / "digests"
    if not folder.is_dir():
        pytest.skip("../shared/digests is not here")
    return folder


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder: config.yaml, an empty digests/ and a state/ to be."""
    (tmp_path / "digests").mkdir()
    (tmp_path / "config.yaml").write_text("digests: digests\nstate_dir: state\n")
    return tmp_path


@pytest.fixture
def samples_project(project: Path) -> Path:
    """A project whose digests/ holds our shipped sample digests."""
    for path in SAMPLES.iterdir():
        shutil.copy(path, project / "digests" / path.name)
    return project


RunCli = Callable[..., Result]


@pytest.fixture
def run_cli(project: Path) -> RunCli:
    """Run the CLI against ``project``'s config (or ``config=``) with a fixed clock."""

    def run(*args: str, now: datetime = NOW, config: Path | None = None) -> Result:
        return invoke(config or project / "config.yaml", *args, now=now)

    return run
