"""The Maildir outbox: where digests go without an SMTP server (readable with mutt or
Python's ``mailbox``), written exactly once per Message-ID, a batch per sync of the disk."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

from newsletter.delivery import Connection, Outgoing
from newsletter.errors import DeliveryFailure as Failure
from newsletter.errors import Fatal

# Messages written to the outbox before one sync of them all. On a 2-core VM an fsync a
# message cost 170 us of machine CPU and 334 us of wall time, a syncfs per 64 messages 85 and
# 102 (bench/pipeline.py at 20,000 digests: one writer syncing each 27.5 s, four 18.8 s,
# one in batches 18.3-20.8 s with less CPU taken from the render workers).
OUTBOX_BATCH = 64


class OutboxTransport:
    """A Maildir folder (readable with mutt or Python's ``mailbox``).

    Each message is written under a name made from its Message-ID, so handing the same
    message over again (after a kill between the write and its record) finds it there and
    writes no copy: delivery to the outbox is exactly once. That lets the writer take
    messages in batches (``OUTBOX_BATCH``): each written into tmp/, one sync of the disk for
    all, then each linked into new/ and only then reported delivered."""

    parallel = 1
    batch = OUTBOX_BATCH
    message_timeout = None  # a local write: nothing to wait for
    rate_limited = False

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.where = str(folder)
        self.making = threading.Lock()  # (the writers connect at once: one makes the folder)

    def connect(self) -> Connection:
        try:
            with self.making:
                _make_maildir(self.folder)
            return _MaildirConnection(self.folder)
        except OSError as exc:
            raise Fatal(
                f"cannot open the outbox {self.folder}: {exc.strerror or exc}; check that "
                "'outbox' names a folder this user can write"
            ) from exc


_MAILDIR_PARTS = ("tmp", "new", "cur")


def _make_maildir(folder: Path) -> None:
    """Make ``folder`` a Maildir: a new or empty folder gets its three subfolders (``mailbox``
    only creates them along with the folder itself); a folder of other files is refused."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    present = [part for part in _MAILDIR_PARTS if (folder / part).is_dir()]
    if len(present) == len(_MAILDIR_PARTS):
        return
    if not present and any(folder.iterdir()):
        raise Fatal(
            f"the outbox {folder} holds other files and is not a Maildir (no tmp/, new/, "
            "cur/); point 'outbox' at a new or empty folder"
        )
    for part in _MAILDIR_PARTS:
        (folder / part).mkdir(mode=0o700, exist_ok=True)


class _MaildirConnection:
    """Writes as the Maildir rules say: into tmp/, synced, then linked into new/."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        # Names a mail reader has moved to cur/ (with ":2,<flags>" added): delivered too.
        self.read = {name.partition(":")[0] for name in os.listdir(folder / "cur")}

    def send(self, outgoing: Outgoing) -> None:
        self.send_many([outgoing])

    def send_many(self, batch: list[Outgoing]) -> None:
        """Write every message of ``batch``; all are on disk when this returns."""
        try:
            written = [self._write(outgoing) for outgoing in batch]
            _sync([path for path in written if path is not None], self.folder)
            for temporary in written:
                if temporary is not None:
                    # (already there: handed over before, and written then; not a second copy)
                    with contextlib.suppress(FileExistsError):
                        os.link(temporary, self.folder / "new" / temporary.name)
                    os.unlink(temporary)
            _sync_folder(self.folder / "new")
        except OSError as exc:
            raise Failure(f"cannot write to the outbox: {exc}", None, permanent=False) from exc

    def _write(self, outgoing: Outgoing) -> Path | None:
        """The message in tmp/ (not synced yet); None when a reader has it already."""
        name = f"{hashlib.sha256(outgoing.message_id.encode()).hexdigest()[:32]}.newsletter"
        if name in self.read:
            return None
        # As a delivering server would: the envelope sender becomes the Return-Path.
        stamped = b"Return-Path: <%s>\r\n%s" % (outgoing.envelope.sender.encode(), outgoing.data)
        temporary = self.folder / "tmp" / name
        _write_file(temporary, stamped, synced=_SYNCFS is None)
        return temporary

    def close(self) -> None:
        """Nothing stays open between messages."""

    def abort(self) -> None:
        """A local write finishes on its own."""


def _write_file(path: Path, data: bytes, synced: bool) -> None:
    """``data`` in a new file at ``path`` (one left by a killed run is replaced)."""
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(handle, view) :]
        if synced:
            os.fsync(handle)
    finally:
        os.close(handle)


def _load_syncfs() -> Callable[[int], int] | None:
    """Linux's syncfs(2): every dirty file of one file system to disk in one call (one
    journal commit, not one a file); None where there is none."""
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (AttributeError, OSError):
        return None


_SYNCFS = _load_syncfs()


def _sync(written: list[Path], folder: Path) -> None:
    """The files ``written`` into ``folder`` (without syncing each) on disk."""
    if not written or _SYNCFS is None:
        return  # (each file was synced as it was written)
    handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _SYNCFS(handle) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error))
    finally:
        os.close(handle)


def _sync_folder(folder: Path) -> None:
    """The names just linked into ``folder`` on disk."""
    handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
