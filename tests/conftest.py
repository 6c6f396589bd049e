"""Shared fixtures: a project folder with its own config, and the CLI run against it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import Result

from tests import helpers
from tests.helpers import NOW, SAMPLES, SHARED, invoke
from tests.pg_cluster import PASSWORD, PASSWORD_ENV, Cluster, find_bindir
from tests.shop import SHOP_PROFILES


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


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """A private PostgreSQL cluster for this test session (skip when PostgreSQL is not
    installed; CI installs it, and there a missing server fails instead)."""
    bindir = find_bindir()
    try:
        import psycopg  # noqa: F401
    except ImportError:
        bindir = None
    if bindir is None:
        why = "PostgreSQL or psycopg is not installed (apt-get install postgresql; .ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests: {why}")
        pytest.skip(why)
    cluster = Cluster.start(bindir)
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> Iterator[str]:
    """A fresh database in the private cluster (dropped after the test); its URL."""
    url = pg_cluster.database()
    yield url
    pg_cluster.drop(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def each_store(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test on each store: the SQLite file, then a PostgreSQL database (given to
    every command the test runs through $NEWSLETTER_STORE, as a deployment may)."""
    if request.param == "sqlite":
        yield "sqlite"
        return
    url = request.getfixturevalue("pg_url")
    helpers.STORE_ENV.update({"NEWSLETTER_STORE": url, PASSWORD_ENV: PASSWORD})
    try:
        yield url
    finally:
        helpers.STORE_ENV.clear()


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    shutil.copytree(SAMPLES, tmp_path / "digests")
    (tmp_path / "subscribers.yaml").write_text(SHOP_PROFILES)
    (tmp_path / "config.yaml").write_text("sender: Research digest <digest@example.org>\n")
    return tmp_path
