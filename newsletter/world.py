"""What the program takes from outside: the clock, the environment, free disk space, the HTTP
client, sleeping (tests pass their own)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.config.settings import FetchSettings

if TYPE_CHECKING:
    import httpx


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def _http_client(settings: FetchSettings) -> httpx.Client:
    # (imported here: only a fetch needs httpx, 40 ms of every start)
    from newsletter.sources.fetch import make_client

    return make_client(settings)


@dataclass(frozen=True)
class World:
    """What the program takes from outside: the clock and the environment (tests pass
    their own)."""

    now: Callable[[], datetime] = _utc_now
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    free_bytes: Callable[[Path], int] = _free_bytes  # free space on the disk holding a path
    http: Callable[[FetchSettings], httpx.Client] = _http_client  # for fetching sources
    sleep: Callable[[float], None] = time.sleep  # between retries of a fetch; pacing sends
    monotonic: Callable[[], float] = time.monotonic  # pacing sends (smtp.rate)
