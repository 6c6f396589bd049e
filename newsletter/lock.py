"""One send at a time per state folder: an advisory lock the OS releases if we die."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from newsletter.errors import BusyError

LOCK_FILE = "newsletter.lock"


@contextmanager
def state_lock(state_dir: Path, what: str = "send") -> Iterator[None]:
    """Hold the state folder's lock, or raise BusyError saying who holds it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / LOCK_FILE
    handle = path.open("a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise BusyError(
                f"{path} is held by {holder}; another send or the scheduler is running on this "
                "state folder. Wait for it to finish (or stop it) and run again."
            ) from exc
        handle.seek(0)
        handle.truncate()
        handle.write(f"newsletter {what} (pid {os.getpid()})")
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the lock
