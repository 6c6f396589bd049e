"""A shop to break things in: a project of the shipped sample digests and two subscribers,
sent to from the command line, and the helpers its fault tests share (a small real disk to
fill, an SMTP config, a daemon in a child process)."""

from __future__ import annotations

import contextlib
import mailbox
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.digest_text import capture, card
from tests.helpers import NOW, child_env, command, invoke

SHOP_PROFILES = """\
subscribers:
  - email: ada@example.org
    keywords: [pruning, "knowledge distillation", "compress*"]
  - email: grace@example.org
    keywords: [transformer, "zero-shot"]
"""


def smtp_config(project: Path, port: int, **smtp: object) -> Path:
    settings = {"host": "127.0.0.1", "port": port, "security": "none", "timeout": 5}
    settings.update({"retry_delay": 0, "max_attempts": 1}, **smtp)
    lines = "".join(f"  {key}: {value}\n" for key, value in settings.items())
    path = project / "config.yaml"
    path.write_text("sender: Research digest <digest@example.org>\ndelivery: smtp\nsmtp:\n" + lines)
    return path


def send_now(project: Path, *args: str, now=NOW, environ=None):
    return invoke(project / "config.yaml", "send", "--now", *args, now=now, environ=environ)


def outbox_messages(project: Path) -> list:
    return list(mailbox.Maildir(project / "outbox", create=False))


@contextmanager
def small_disk(folder: Path, size: str = "16m") -> Iterator[Path]:
    """A real, small filesystem (tmpfs) at ``folder``, to fill up for real."""
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(disk: Path) -> Path:
    """Write to ``disk`` until it is full; the file that filled it."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as handle:
        for size in (65536, 4096, 1):  # to the last byte
            with contextlib.suppress(OSError):
                while True:
                    handle.write(b"\0" * size)
    return filler


def new_digest(shop: Path) -> None:
    (shop / "digests" / "later.txt").write_text(
        capture(card("Pruning transformers, again and better"), listing="Mar 12")
    )


def start_daemon(project: Path, log: Path) -> subprocess.Popen:
    with log.open("w") as sink:
        return subprocess.Popen(
            [*command(project / "config.yaml"), "run"], stderr=sink, env=child_env()
        )
