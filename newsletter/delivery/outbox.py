"""The Maildir outbox: where digests go without an SMTP server (readable with mutt or
Python's ``mailbox``), written exactly once per Message-ID, a batch per sync of the disk.

A long send writes its messages through the outbox's ``MaildirSpool``: each rendering worker writes
the digests it renders into tmp/ itself, and only the names travel on; handing a batch over
is then one sync of them all and a link each into new/. The bytes never cross a pipe, and the writes
are shared by the workers instead of queued on one thread of the parent."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.delivery.transport import Connection, Outgoing, Transport, TransportKind
from newsletter.errors import DeliveryFailure as Failure
from newsletter.errors import FatalDeliveryError
from newsletter.models import Envelope, RenderedEmail

if TYPE_CHECKING:
    from newsletter.config.settings import Config

# Messages written to the outbox before one sync of them all. On a 2-core VM an fsync a
# message cost 170 us of machine CPU and 334 us of wall time, a syncfs per 64 messages 85 and
# 102 (bench/pipeline.py at 20,000 digests: one writer syncing each 27.5 s, four 18.8 s,
# one in batches 18.3-20.8 s with less CPU taken from the render workers). Since the spool
# (the workers write the files) a batch is one sync, a link each and one sync of new/; 100, as
# the workers' batches (send.produce.BATCH), so that each of theirs is one batch here.
OUTBOX_BATCH = 100


class OutboxTransport(Transport):
    """A Maildir folder (readable with mutt or Python's ``mailbox``).

    Each message is written under a name made from its Message-ID, so handing the same
    message over again (after a kill between the write and its record) finds it there and
    writes no copy: delivery to the outbox is exactly once. That lets the writer take
    messages in batches (``OUTBOX_BATCH``): each written into tmp/, one sync of the disk for
    all, then each linked into new/ and only then reported delivered."""

    batch = OUTBOX_BATCH  # (one connection; no timeout: a local write waits for nothing)

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.where = str(folder)
        self.making = threading.Lock()  # (the writers connect at once: one makes the folder)

    def connect(self) -> Connection:
        self._make()
        try:
            return _MaildirConnection(self.folder)
        except OSError as exc:
            raise _cannot_open(self.folder, exc) from exc

    def spool(self) -> MaildirSpool:
        """Where rendering workers may write messages before they are handed over."""
        self._make()
        return MaildirSpool(self.folder)

    def _make(self) -> None:
        try:
            with self.making:
                _make_maildir(self.folder)
        except OSError as exc:
            raise _cannot_open(self.folder, exc) from exc


def _cannot_open(folder: Path, exc: OSError) -> FatalDeliveryError:
    return FatalDeliveryError(
        f"cannot open the outbox {folder}: {exc.strerror or exc}; check that 'outbox' names "
        "a folder this user can write"
    )


@dataclass(frozen=True)
class MaildirSpool:
    """The outbox's tmp/, written by the rendering workers (it travels to them pickled).

    ``stage`` writes one message, not synced; ``settle`` starts a batch of them on their way to
    disk and lets go of them. The outbox's connection then syncs them (one sync of the disk,
    in the sending process, which mostly waits on the workers: a sync here kept a rendering
    worker off its core for 6-11% of a send, bench/run.py --throughput) and links them into
    new/, after the ledger has them as pending; till then none is delivered (readers look in
    new/ and cur/ only). One left by a kill before that is written again under the same
    name by the next run (the Message-ID, and so the name, follows from subscriber and
    papers)."""

    folder: Path

    def stage(self, email: RenderedEmail) -> int:
        """``email`` in tmp/, not synced yet: its open file."""
        try:
            return _write_file(
                f"{self.folder}/tmp/{file_name(email.message_id)}",
                _stamped(email.envelope, email.data),
            )
        except OSError as exc:
            raise _cannot_write(exc) from exc

    def settle(self, staged: list[int]) -> None:
        """The ``staged`` messages on their way to disk (not waited for), and closed."""
        try:
            for handle in staged:
                _start_writing(handle)
        except OSError as exc:
            raise _cannot_write(exc) from exc
        finally:
            for handle in staged:
                os.close(handle)


def _cannot_write(exc: OSError) -> FatalDeliveryError:
    return FatalDeliveryError(f"cannot write to the outbox: {exc}; free some space and run again")


_MAILDIR_PARTS = ("tmp", "new", "cur")


def _make_maildir(folder: Path) -> None:
    """Make ``folder`` a Maildir: a new or empty folder gets its three subfolders (``mailbox``
    only creates them along with the folder itself); a folder of other files is refused."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    present = [part for part in _MAILDIR_PARTS if (folder / part).is_dir()]
    if len(present) == len(_MAILDIR_PARTS):
        return
    if not present and any(folder.iterdir()):
        raise FatalDeliveryError(
            f"the outbox {folder} holds other files and is not a Maildir (no tmp/, new/, "
            "cur/); point 'outbox' at a new or empty folder"
        )
    for part in _MAILDIR_PARTS:
        (folder / part).mkdir(mode=0o700, exist_ok=True)


class _MaildirConnection(Connection):
    """Writes as the Maildir rules say: into tmp/, synced, then linked into new/."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        # (paths as strings: pathlib took more CPU than the links themselves, bench/pipeline.py)
        self.tmp, self.new = f"{folder}/tmp", f"{folder}/new"
        # Names a mail reader has moved to cur/ (with ":2,<flags>" added): delivered too.
        self.read = {name.partition(":")[0] for name in os.listdir(folder / "cur")}

    def send(self, outgoing: Outgoing) -> None:
        self.send_many([outgoing])

    def send_many(self, batch: list[Outgoing]) -> None:
        """Write every message of ``batch`` (a staged one is in tmp/ already); all are on
        disk when this returns."""
        written: list[int] = []
        try:
            for outgoing in batch:
                handle = self._staged(outgoing) if outgoing.staged else self._write(outgoing)
                if handle is not None:
                    written.append(handle)
            _sync(written, self.folder)
            for outgoing in batch:
                self._link(file_name(outgoing.message_id))
            _sync_folder(self.new)
        except OSError as exc:
            raise Failure(f"cannot write to the outbox: {exc}", None, permanent=False) from exc
        finally:
            for handle in written:
                os.close(handle)

    def _write(self, outgoing: Outgoing) -> int | None:
        """The message in tmp/, still open and not synced yet; None when a reader has it
        already."""
        name = file_name(outgoing.message_id)
        if name in self.read:
            return None
        return _write_file(f"{self.tmp}/{name}", _stamped(outgoing.envelope, outgoing.data))

    def _staged(self, outgoing: Outgoing) -> int | None:
        """The message a rendering worker wrote into tmp/ (``MaildirSpool``), open to be
        synced here; None when it is not there (a reader has it in cur/ from before)."""
        try:
            return os.open(f"{self.tmp}/{file_name(outgoing.message_id)}", os.O_RDONLY)
        except FileNotFoundError:
            if file_name(outgoing.message_id) in self.read:
                return None
            raise

    def _link(self, name: str) -> None:
        """The message ``name`` of tmp/ into new/ (a reader's copy in cur/ stays the one)."""
        temporary = f"{self.tmp}/{name}"
        if name not in self.read:
            # (already there: handed over before, and written then; not a second copy)
            with contextlib.suppress(FileExistsError):
                os.link(temporary, f"{self.new}/{name}")
        with contextlib.suppress(FileNotFoundError):  # (not written: a reader had it)
            os.unlink(temporary)

    def close(self) -> None:
        """Nothing stays open between messages."""

    def abort(self) -> None:
        """A local write finishes on its own."""


def file_name(message_id: str) -> str:
    """The outbox's file name for a message: the same for each copy of it."""
    return f"{hashlib.sha256(message_id.encode()).hexdigest()[:32]}.newsletter"


def _stamped(envelope: Envelope, data: bytes) -> tuple[bytes, bytes]:
    """As a delivering server would: the envelope sender becomes the Return-Path (the
    file's parts: ``data`` is not copied to be written)."""
    return b"Return-Path: <%s>\r\n" % envelope.sender.encode(), data


def _write_file(path: str, parts: tuple[bytes, ...]) -> int:
    """``parts`` one after the other in a new file at ``path`` (one left by a killed run is
    replaced), still open: its handle."""
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        written = os.writev(handle, parts)
        if written < sum(map(len, parts)):  # (rare: a signal, or a disk filling up)
            view = memoryview(b"".join(parts))[written:]
            while view:
                view = view[os.write(handle, view) :]
    except BaseException:
        os.close(handle)
        raise
    return handle


def _load_syncfs() -> Callable[[int], int] | None:
    """Linux's syncfs(2): every dirty file of one file system to disk in one call (one
    journal commit, not one a file); None where there is none."""
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (AttributeError, OSError):
        return None


_SYNCFS = _load_syncfs()


def _sync(written: list[int], folder: Path) -> None:
    """The files ``written`` into ``folder`` on disk, and out of the page cache."""
    if not written:
        return
    if _SYNCFS is None:
        for handle in written:
            os.fsync(handle)
    else:
        _syncfs(folder)
    for handle in written:
        _drop_cached(handle)


def _syncfs(folder: Path) -> None:
    """Every dirty file of the file system holding ``folder`` on disk."""
    handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _SYNCFS is None or _SYNCFS(handle) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error))
    finally:
        os.close(handle)


def _start_writing(handle: int) -> None:
    """Start writing a file's pages to disk without waiting for them (Linux starts the
    writeback when told the pages are not needed), so that the sync of its batch finds
    less to do."""
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(handle, 0, 0, os.POSIX_FADV_DONTNEED)


def _drop_cached(handle: int) -> None:
    """Drop a synced file's pages from the page cache: a digest is read by someone else,
    later or never, and a send of 100,000 would otherwise push 5 GB of other files out of
    memory. Reusing the freed pages for the next batch is also cheaper than taking new ones
    (bench/outbox.py: a third of the kernel time on a 2-core VM)."""
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(handle, 0, 0, os.POSIX_FADV_DONTNEED)


def _sync_folder(folder: Path) -> None:
    """The names just linked into ``folder`` on disk."""
    handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _make(config: Config, environ: Mapping[str, str]) -> OutboxTransport:
    return OutboxTransport(config.outbox_dir)


KIND = TransportKind("outbox", _make)
