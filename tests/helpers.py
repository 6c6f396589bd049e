"""What every test module shares: paths, one clock, one way to run the command line in this
process and one to build its command line for a child process."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from newsletter.cli import cli
from newsletter.config.settings import Config
from newsletter.store.backend import open_store_for
from newsletter.store.papers import Store
from newsletter.store.sqlite import open_store
from newsletter.world import World

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "digests"
SHARED = ROOT.parent / "shared"
NOW = datetime(2026, 3, 12, 12, 0, tzinfo=UTC)  # the tests' clock: a Thursday
# Where the store is, for the tests run on each store (the fixture ``each_store``): empty for
# the SQLite file of the state folder; NEWSLETTER_STORE and its password for PostgreSQL.
STORE_ENV: dict[str, str] = {}


def invoke(
    config: Path | None,
    *args: str,
    now: datetime = NOW,
    environ: dict[str, str] | None = None,
    world: World | None = None,
) -> Result:
    """Run ``newsletter [--config CONFIG] ARGS`` in this process with a fixed clock and an
    environment of its own (empty unless given), or in ``world``."""
    environ = {**STORE_ENV, **(environ if environ is not None else {})}
    world = world or World(now=lambda: now, environ=environ)
    options = ["--config", str(config)] if config is not None else []
    return CliRunner().invoke(cli, [*options, *args], obj=world)


def command(config: Path | None) -> list[str]:
    """The command line that runs ``newsletter [--config CONFIG]`` in a child process."""
    options = ["--config", str(config)] if config is not None else []
    return [sys.executable, "-m", "newsletter", *options]


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child process that imports this checkout's package."""
    return {**os.environ, "PYTHONPATH": str(ROOT), **STORE_ENV, **extra}


def open_project_store(project: Path) -> Store:
    """The store a send in ``project`` uses: the SQLite file of its state folder, or the
    test's PostgreSQL database (``each_store``)."""
    if not STORE_ENV:
        return open_store(project / "state")
    return open_store_for(Config(path=project / "config.yaml"), STORE_ENV)


def shared_sample(name: str) -> Path:
    """A recorded real response in ../shared/samples; the test skips when it is not there."""
    path = SHARED / "samples" / name
    if not path.exists():
        pytest.skip(f"{path} is not here (../shared holds the recorded responses)")
    return path


def readers_of_pruning(folder: Path, addresses: Iterable[str]) -> Path:
    """``folder`` made a project of our sample digests and ``addresses`` reading about
    pruning (no config.yaml yet); ``folder``."""
    shutil.copytree(SAMPLES, folder / "digests")
    entries = "".join(f"  - email: {address}\n    keywords: [pruning]\n" for address in addresses)
    (folder / "subscribers.yaml").write_text("subscribers:\n" + entries)
    return folder


def wait_for(condition: Callable[[], bool], seconds: float = 20.0) -> bool:
    """Poll ``condition`` until it holds or ``seconds`` pass; whether it held."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


class FakeClock:
    """A clock that moves only when slept on (``sleep`` returns at once): hours of pacing in
    no time. ``now`` and ``monotonic`` move together."""

    def __init__(self, start: datetime = NOW) -> None:
        self.start = start
        self.elapsed = 0.0
        self.lock = threading.Lock()

    def monotonic(self) -> float:
        with self.lock:
            return self.elapsed

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.monotonic())

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.elapsed += seconds

    def world(self, **given: object) -> World:
        """A World on this clock (and an empty environment unless given)."""
        given.setdefault("environ", {})
        return World(now=self.now, sleep=self.sleep, monotonic=self.monotonic, **given)  # type: ignore[arg-type]


def legacy_token(secret: str, purpose: str, address: str, day: date) -> str:
    """A token as release 0.1 signed it: the address in base64url in the key's place."""
    issued = (day - date(1970, 1, 1)).days
    message = "\0".join([purpose, address.casefold(), str(issued)]).encode()
    mac = hmac.new(secret.encode(), message, hashlib.sha256).digest()[:16]
    b64 = [base64.urlsafe_b64encode(x).decode().rstrip("=") for x in (address.encode(), mac)]
    return f"{b64[0]}.{issued}.{b64[1]}"
