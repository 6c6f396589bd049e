"""One send at a time per state folder: an advisory lock the OS releases if we die."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from newsletter.errors import BusyError, StoreError

LOCK_FILE = "newsletter.ledger.lock"
PROFILES_LOCK = "profiles.lock"


@contextmanager
def state_lock(state_dir: Path, what: str = "send") -> Iterator[None]:
    """Hold the state folder's lock, or raise BusyError saying who holds it.

    The lock is on the folder itself, which a cleaner cannot unlink from under its holder
    while the store lives in it; the lock file only tells others who holds it."""
    path = state_dir / LOCK_FILE
    try:
        make_private_folder(state_dir)
        folder = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise StoreError(folder_problem(state_dir, exc)) from exc
    try:
        try:
            fcntl.flock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = _holder(path)
            raise BusyError(
                f"{path} is held by {holder}; another send or the scheduler is running on this "
                "state folder. Wait for it to finish (or stop it) and run again."
            ) from exc
        try:
            note = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(note, "w") as handle:
                handle.write(f"newsletter {what} (pid {os.getpid()})")
        except OSError as exc:
            raise StoreError(folder_problem(state_dir, exc)) from exc
        yield
    finally:
        os.close(folder)  # closing releases the lock


@contextmanager
def profiles_lock(state_dir: Path, exclusive: bool) -> Iterator[None]:
    """Hold the profile file's lock: exclusive to edit it, shared to read it for a send.

    An edit and a send's reading of subscribers.yaml never overlap. This lock is held for
    milliseconds, so a visitor saving preferences waits for a send's read, never for a
    whole send (which holds the state lock for minutes)."""
    path = state_dir / PROFILES_LOCK
    try:
        make_private_folder(state_dir)
        handle = os.open(path, os.O_RDONLY | os.O_CREAT, 0o600)  # flock needs no write access
    except OSError as exc:
        if not exclusive and not path.exists():
            yield  # a lock file nobody could create: nobody is editing (a read-only disk)
            return
        raise StoreError(folder_problem(state_dir, exc)) from exc
    try:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(handle)  # closing releases the lock


def make_private_folder(folder: Path) -> None:
    """Create ``folder`` readable by its owner only (it holds addresses and messages)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)


def folder_problem(folder: Path, exc: OSError) -> str:
    """What is wrong with the state folder, and the fix."""
    reason = exc.strerror or str(exc)
    if isinstance(exc, FileExistsError | NotADirectoryError):
        reason = "a file is in the way, where a folder should be"
    return (
        f"cannot use the state folder {folder}: {reason}; 'state_dir' in the config must name "
        "a folder this user can create and write"
    )


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "another process"
    except OSError:
        return "another process"
