"""Delivery: hand rendered messages to a Maildir outbox or an SMTP server (or, for a dry
run, to nowhere).

A transport opens connections; a connection sends one message and raises on failure. The
``deliver`` pool runs one thread per connection, retries transient failures with exponential
backoff and jitter, and reports one ``Result`` per message back to the caller's thread, which
records it (SQLite stays on one thread).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import math
import os
import queue
import random
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from newsletter.config import Config, SmtpSettings
from newsletter.errors import DeliveryFailure as Failure
from newsletter.errors import Fatal
from newsletter.models import Envelope, RenderedEmail
from newsletter.pacing import Clock, Pacer, unlimited

AUTH_HINT = "use an app password or the provider's SMTP authorization code"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to deliver."""

    message_id: str
    subscriber: str
    envelope: Envelope
    data: bytes

    @classmethod
    def of(cls, email: RenderedEmail) -> Outgoing:
        """The rendered email, as delivery needs it."""
        return cls(email.message_id, email.subscriber, email.envelope, email.data)


@dataclass(frozen=True, slots=True)
class Result:
    """What happened to one message."""

    outgoing: Outgoing
    delivered: bool
    attempts: int
    error: str | None = None
    code: int | None = None
    permanent: bool = False  # a 5xx (or an address the server cannot take): not retried


class Connection(Protocol):
    """An open connection to where messages go."""

    def send(self, outgoing: Outgoing) -> None:
        """Deliver one message or raise Failure / Fatal."""

    def close(self) -> None:
        """Let go of the connection."""

    def abort(self) -> None:
        """Cut the connection from another thread: a ``send`` in progress fails at once."""


class Transport(Protocol):
    """Something that opens connections; ``parallel`` says how many to use."""

    parallel: int
    where: str  # for messages: the folder or host:port
    message_timeout: float | None  # the most one message may take in all (None: no limit)
    rate_limited: bool  # smtp.rate and smtp.domains apply (not to a folder)

    def connect(self) -> Connection:
        """A new connection (raises Fatal or Failure)."""


def make_transport(config: Config, environ: Mapping[str, str]) -> Transport:
    """The configured delivery: the Maildir outbox or the SMTP server."""
    if config.delivery == "smtp":
        return SmtpTransport(config.smtp, environ)
    return OutboxTransport(config.outbox_dir)


class DryRunTransport:
    """Takes every message and delivers none of them (``send --dry-run``)."""

    parallel = 1
    where = "nowhere (dry run)"
    message_timeout = None
    rate_limited = False

    def connect(self) -> Connection:
        return self

    def send(self, outgoing: Outgoing) -> None:
        """Accepts the message; it goes nowhere."""

    def close(self) -> None:
        """Nothing to let go of."""

    def abort(self) -> None:
        """Nothing to cut."""


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


class SmtpTransport:
    """An SMTP server; certificates verified, STARTTLS required when configured."""

    rate_limited = True

    def __init__(self, settings: SmtpSettings, environ: Mapping[str, str]) -> None:
        self.settings = settings
        self.parallel = settings.connections
        self.message_timeout = settings.message_timeout
        self.where = f"{settings.host}:{settings.effective_port}"
        self.password = (
            environ.get(settings.password_env or "", "") if settings.password_env else ""
        )
        if settings.username and settings.password_env and not self.password:
            raise Fatal(
                f"${settings.password_env} is empty; export the SMTP password in that variable"
            )

    def tls_context(self) -> ssl.SSLContext:
        """Verifying context (smtplib verifies nothing by default), with ``ca_file`` if set."""
        cafile = str(self.settings.ca_file) if self.settings.ca_file else None
        return ssl.create_default_context(cafile=cafile)

    def connect(self) -> _SmtpConnection:
        """A connection that opens on first use (so that the whole conversation, greeting
        and login included, runs where the pool's watchdog can cut it)."""
        return _SmtpConnection(self)

    def new_client(self) -> smtplib.SMTP:
        """An smtplib client, not connected yet."""
        settings = self.settings
        client = (
            smtplib.SMTP_SSL(timeout=settings.timeout, context=self.tls_context())
            if settings.security == "ssl"
            else smtplib.SMTP(timeout=settings.timeout)
        )
        # The name TLS verifies the certificate against; smtplib sets it only when given the
        # host up front, which would connect at once.
        client._host = settings.host  # type: ignore[attr-defined]
        return client

    def open(self, client: smtplib.SMTP) -> None:
        """Connect ``client``: greeting, STARTTLS, login; Fatal or Failure when it cannot."""
        settings = self.settings
        try:
            code, greeting = client.connect(settings.host, settings.effective_port)
            if code != 220:  # (smtplib checks this only when given the host up front)
                raise smtplib.SMTPConnectError(code, greeting)
            # Many small writes per message: do not let Nagle hold them back.
            client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if settings.security == "starttls":
                _greet(client, self.where)
                if not client.has_extn("starttls"):
                    client.close()
                    raise Fatal(
                        f"{self.where} does not offer STARTTLS; refusing to send in plain text "
                        "(set smtp.security: ssl or none if that is really intended)"
                    )
                client.starttls(context=self.tls_context())
                client.ehlo()
            if settings.username:
                client.login(settings.username, self.password)
        except smtplib.SMTPAuthenticationError as exc:
            raise Fatal(
                f"{self.where} refused the login for {settings.username!r} "
                f"({exc.smtp_code} {_text(exc.smtp_error)}); {AUTH_HINT}"
            ) from exc
        except ssl.SSLCertVerificationError as exc:
            raise Fatal(
                f"{self.where}: the server's certificate is not trusted ({exc.verify_message}); "
                "set smtp.ca_file to your CA's certificate"
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            client.close()
            problem = self._connect_problem(exc)
            code = getattr(exc, "smtp_code", None)  # a refusing greeting (421 busy) has one
            raise Failure(
                f"cannot connect to {self.where}: {problem}", code, False, reconnect=True
            ) from exc

    def describe(self) -> str:
        """What a successful ``connect`` did, for ``validate --connect``."""
        settings = self.settings
        security = {"ssl": "TLS", "starttls": "STARTTLS", "none": "no encryption"}
        login = f"logged in as {settings.username!r}" if settings.username else "no login"
        return f"{self.where}: connected, {security[settings.security]}, {login}"

    def _connect_problem(self, exc: BaseException) -> str:
        """What went wrong while connecting, and what to check."""
        settings, port = self.settings, self.settings.effective_port
        if isinstance(exc, ssl.SSLError) and settings.security == "ssl":
            return (
                f"the TLS handshake failed: the server does not start with TLS on port {port}; "
                "use security: starttls (usually port 587) or security: none (port 25)"
            )
        if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):
            # (smtplib turns a timeout while reading the greeting into "disconnected")
            tls = (
                ""
                if settings.security == "ssl"
                else ("if this port expects TLS from the start (465), set security: ssl; ")
            )
            return (
                f"the server did not answer within {settings.timeout} s: {tls}check the host "
                "and port, and that no firewall blocks the connection"
            )
        if isinstance(exc, ConnectionRefusedError):
            return f"the connection was refused: nothing listens on port {port}; check the port"
        if isinstance(exc, socket.gaierror):
            return f"cannot find the host {settings.host!r} ({exc.strerror}); check smtp.host"
        if isinstance(exc, smtplib.SMTPConnectError):
            return (
                f"the server refused the session ({exc.smtp_code} {_text(exc.smtp_error)}); "
                "it is busy or limits connections: the message is tried again later"
            )
        return _describe(exc)


def _greet(client: smtplib.SMTP, where: str) -> None:
    """EHLO; a server that refuses it (421: busy, shutting down) is not one that lacks
    STARTTLS: that is a transient failure with its code."""
    code, reply = client.ehlo()
    if code != 250:
        client.close()
        raise Failure(
            f"cannot connect to {where}: the server refused EHLO ({code} {_text(reply)}); "
            "the message is tried again later",
            code,
            permanent=False,
            reconnect=True,
        )


class _SmtpConnection:
    def __init__(self, transport: SmtpTransport) -> None:
        self.transport = transport
        self.where = transport.where
        self.client = transport.new_client()
        self.opened = False

    def open(self) -> _SmtpConnection:
        """Connect, if not yet connected."""
        if not self.opened:
            self.transport.open(self.client)
            self.opened = True
        return self

    def send(self, outgoing: Outgoing) -> None:
        self.open()
        envelope = outgoing.envelope
        options = ["SMTPUTF8"] if envelope.smtputf8 else []
        if envelope.smtputf8 and not self._supports("smtputf8"):
            raise Failure(
                f"{self.where} does not offer SMTPUTF8, so it cannot take the non-ASCII address "
                f"{envelope.recipient}",
                None,
                permanent=True,
            )
        try:
            refused = self.client.sendmail(
                envelope.sender, [envelope.recipient], outgoing.data, mail_options=options
            )
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()))
            raise Failure(f"{code} {_text(reply)}", code, permanent=code >= 500) from exc
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
            raise Failure(
                f"{exc.smtp_code} {_text(exc.smtp_error)}", exc.smtp_code, exc.smtp_code >= 500
            ) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise Failure(
                f"{self.where} cannot take this address ({exc}); it needs SMTPUTF8",
                None,
                permanent=True,
            ) from exc
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPResponseException, OSError) as exc:
            raise Failure(_describe(exc), None, permanent=False, reconnect=True) from exc
        if refused:
            code, reply = next(iter(refused.values()))
            raise Failure(f"{code} {_text(reply)}", code, permanent=code >= 500)

    def abort(self) -> None:
        sock = self.client.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # the blocked read or write returns at once

    def _supports(self, extension: str) -> bool:
        try:
            self.client.ehlo_or_helo_if_needed()
        except (smtplib.SMTPException, OSError) as exc:
            raise Failure(_describe(exc), None, permanent=False, reconnect=True) from exc
        return self.client.has_extn(extension)

    def close(self) -> None:
        if not self.opened:
            self.client.close()
            return
        try:
            self.client.quit()
        except (smtplib.SMTPException, OSError):
            self.client.close()


@dataclass(frozen=True)
class Retry:
    """Backoff: ``delay`` before the first retry, doubling, with +-50% jitter."""

    attempts: int = 3
    delay: float = 1.0
    sleep: Callable[[float], None] = lambda seconds: threading.Event().wait(seconds)
    rng: random.Random = field(default_factory=random.Random)

    def pause(self, attempt: int) -> None:
        """Wait before attempt ``attempt + 1``."""
        self.sleep(self.delay * 2 ** (attempt - 1) * self.rng.uniform(0.5, 1.5))


class _Halt:
    """Set when the caller asks to stop (its event) or this pool must (a fatal error, the
    end); the caller's event is only ever read: a daemon's stop outlives one run."""

    def __init__(self, caller: threading.Event | None) -> None:
        self.caller = caller
        self.own = threading.Event()

    def is_set(self) -> bool:
        return self.own.is_set() or (self.caller is not None and self.caller.is_set())

    def set(self) -> None:
        self.own.set()


STOP_GRACE = 5.0  # seconds a message in flight may still take once a stop is asked for
_WATCH_EVERY = 0.1


class _Watchdog:
    """Cuts the connection of a message that has taken longer than the transport's
    ``message_timeout`` in all, or that is still going ``STOP_GRACE`` after a stop: a server
    that drips a byte a second never trips a socket timeout, and must not hold a run (or a
    SIGTERM) for minutes."""

    def __init__(self, limit: float | None, halt: _Halt) -> None:
        self.limit = limit
        self.halt = halt
        self.lock = threading.Lock()
        self.busy: dict[int, tuple[Connection, float]] = {}  # worker -> connection, start
        self.cut: dict[int, str] = {}  # worker -> why its message was cut
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def begin(self, connection: Connection) -> None:
        """The calling worker starts a message on ``connection``."""
        with self.lock:
            self.busy[threading.get_ident()] = (connection, time.monotonic())

    def finish(self) -> str | None:
        """The calling worker's message is over; why it was cut, if it was."""
        key = threading.get_ident()
        with self.lock:
            self.busy.pop(key, None)
            return self.cut.pop(key, None)

    def _watch(self) -> None:
        stopped_at: float | None = None
        while not self.done.wait(_WATCH_EVERY):
            now = time.monotonic()
            if stopped_at is None and self.halt.is_set():
                stopped_at = now
            with self.lock:
                for key, (connection, started) in list(self.busy.items()):
                    reason = self._verdict(now - started, stopped_at and now - stopped_at)
                    if reason:
                        del self.busy[key]
                        self.cut[key] = reason
                        connection.abort()

    def _verdict(self, running: float, since_stop: float | None) -> str | None:
        if self.limit is not None and running > self.limit:
            return f"the message took longer than {self.limit:g} s in all (smtp.message_timeout)"
        if since_stop is not None and since_stop > STOP_GRACE:
            return "the run was stopped while the message was still on its way"
        return None


def deliver(
    transport: Transport,
    outgoing: Iterable[Outgoing],
    retry: Retry,
    stop: threading.Event | None = None,
    pacer: Pacer | None = None,
) -> Iterator[list[Result]]:
    """Send every message over ``transport.parallel`` connections, as fast as ``pacer``
    allows; yield the Results as they come, a list of those that came together (in the
    caller's thread). Once ``stop`` is set,
    or a cap of the pacer is reached, messages in flight finish and nothing more is handed
    over. A Fatal error stops everything and is raised here."""
    stop = _Halt(stop)
    pacer = pacer or unlimited(Clock(time.monotonic, retry.sleep), datetime.now(UTC))
    # One message waiting per connection, no more: while the caller is busy composing (not
    # recording), a connection can have at most one accepted and one on the wire that are not
    # recorded yet, which bounds the copies a kill can cause to two a connection.
    # (A transport that writes in batches is exactly once: it may have a batch waiting.)
    batch = getattr(transport, "batch", 1)
    todo: queue.Queue[Outgoing | None] = queue.Queue(maxsize=max(transport.parallel, batch))
    watchdog = _Watchdog(getattr(transport, "message_timeout", None), stop)
    watchdog.thread.start()
    pool = _Pool(transport, retry, stop, watchdog)
    workers = [
        threading.Thread(target=_worker, args=(pool, todo, pool.done), daemon=True)
        for _ in range(transport.parallel)
    ]
    for worker in workers:
        worker.start()
    flow = _Flow(pool, pacer, workers)
    try:
        waiting: list[Outgoing] = []  # taken from ``outgoing``, not handed over yet
        items = iter(outgoing)
        more = True
        while not stop.is_set() and not pacer.check_caps():
            while more and len(waiting) < pacer.lookahead:
                # Report what was accepted before the caller composes the next message: an
                # accepted message is unrecorded only until the next hand-over.
                yield from flow.drain()
                item = next(items, None)
                if item is None:
                    more = False
                else:
                    waiting.append(item)
            if not waiting:
                break
            index, wait = pacer.next_ready(waiting)
            if index is None:
                yield from flow.pause(wait)
                continue
            item = waiting.pop(index)
            pacer.handed(item)
            yield from flow.hand_over(todo, item)
        for _ in workers:
            _put_until(todo, None, workers)
        yield from flow.wait_for_workers()
    finally:
        stop.set()
        watchdog.done.set()


PAUSE_SLICE = 0.05  # seconds: results are reported (recorded) at least this often


class _Flow:
    """The caller's side of one ``deliver``: hands over, and reports results as they come,
    each burst as one list (the caller records a burst in one transaction)."""

    def __init__(self, pool: _Pool, pacer: Pacer, workers: list[threading.Thread]) -> None:
        self.done = pool.done
        self.stop = pool.stop
        self.pacer = pacer
        self.workers = workers
        self.finished = 0  # workers that have said goodbye (their None)

    def hand_over(self, todo: queue.Queue, item: Outgoing) -> Iterator[list[Result]]:
        """Put ``item`` in the queue (reporting results while it is full), then report."""
        while True:
            yield from self.drain()
            try:
                todo.put(item, timeout=PAUSE_SLICE)
                break
            except queue.Full:
                if self.stop.is_set() or not any(w.is_alive() for w in self.workers):
                    break
        yield from self.drain()

    def pause(self, seconds: float) -> Iterator[list[Result]]:
        """Wait up to ``seconds`` on the pacer's clock (for ever: until a result comes),
        reporting results meanwhile."""
        if math.isinf(seconds):
            with contextlib.suppress(queue.Empty):
                yield from self.drain(self.done.get(timeout=PAUSE_SLICE))
        else:
            self.pacer.sleep(min(seconds, PAUSE_SLICE))
            yield from self.drain()

    def drain(self, first: object = None) -> Iterator[list[Result]]:
        """Report every result that has come (after ``first``, one already taken)."""
        burst = [result for result in [self._take(first)] if result is not None]
        while True:
            try:
                result = self._take(self.done.get_nowait())
            except queue.Empty:
                break
            if result is not None:
                burst.append(result)
        if burst:
            yield burst

    def wait_for_workers(self) -> Iterator[list[Result]]:
        """Report results until every worker has said goodbye."""
        while self.finished < len(self.workers):
            yield from self.drain(self.done.get())

    def _take(self, result: object) -> Result | None:
        if result is None:
            return None
        if result is _GOODBYE:
            self.finished += 1
            return None
        if isinstance(result, BaseException):
            self.stop.set()
            raise result
        assert isinstance(result, Result)
        self.pacer.finished(result.outgoing)
        return result


_GOODBYE = object()  # a worker's last word on the ``done`` queue


def _put_until(todo: queue.Queue, item: object, workers: list[threading.Thread]) -> None:
    while any(w.is_alive() for w in workers):
        try:
            todo.put(item, timeout=0.05)
            return
        except queue.Full:
            continue


@dataclass(frozen=True)
class _Pool:
    """What every worker of one ``deliver`` shares."""

    transport: Transport
    retry: Retry
    stop: _Halt
    watchdog: _Watchdog
    done: queue.Queue[object] = field(default_factory=queue.Queue)  # Result, error, goodbye


def _worker(pool: _Pool, todo: queue.Queue, done: queue.Queue) -> None:
    """One connection: send what comes, reconnecting and retrying as needed."""
    connection: Connection | None = None
    try:
        ended = False
        while not ended and (item := todo.get()) is not None:
            if pool.stop.is_set():
                continue  # drain quietly: nothing more goes out after a stop or fatal error
            more, ended = _waiting(todo, getattr(pool.transport, "batch", 1) - 1)
            if more:
                connection, results = _send_batch(pool, connection, [item, *more])
            else:
                connection, result = _send_with_retries(pool, connection, item)
                results = [result]
            for result in results:
                done.put(result)
    except BaseException as exc:  # Fatal, or a bug: surface it in the caller's thread
        done.put(exc)
    finally:
        if connection is not None:
            connection.close()
        done.put(_GOODBYE)


def _waiting(todo: queue.Queue, most: int) -> tuple[list[Outgoing], bool]:
    """Up to ``most`` more messages already in the queue, and whether its end came."""
    items: list[Outgoing] = []
    while len(items) < most:
        try:
            item = todo.get_nowait()
        except queue.Empty:
            break
        if item is None:
            return items, True
        items.append(item)
    return items, False


def _send_batch(
    pool: _Pool, connection: Connection | None, batch: list[Outgoing]
) -> tuple[Connection | None, list[Result]]:
    """All of ``batch`` in one go (``send_many``); after a failure, each on its own, with
    retries (a transport that batches is exactly once: what was written is not again)."""
    try:
        if connection is None:
            connection = pool.transport.connect()
        connection.send_many(batch)  # type: ignore[attr-defined]
        return connection, [Result(item, True, 1) for item in batch]
    except Failure:
        results = []
        for item in batch:
            connection, result = _send_with_retries(pool, connection, item)
            results.append(result)
        return connection, results


def _send_with_retries(
    pool: _Pool, connection: Connection | None, item: Outgoing
) -> tuple[Connection | None, Result]:
    retry, stop = pool.retry, pool.stop
    failure: Failure | None = None
    attempt = 0
    while attempt < retry.attempts:
        attempt += 1
        try:
            if connection is None:
                connection = pool.transport.connect()
            _send_watched(pool.watchdog, connection, item)
            return connection, Result(item, True, attempt)
        except Failure as exc:
            failure = exc
            if exc.reconnect or connection is None:
                if connection is not None:
                    connection.close()
                connection = None
            if exc.permanent:
                return connection, Result(item, False, attempt, str(exc), exc.code, True)
            if stop.is_set():
                break  # the message stays pending for the next run
            if attempt < retry.attempts:
                retry.pause(attempt)
    assert failure is not None
    return connection, Result(item, False, attempt, str(failure), failure.code, False)


def _send_watched(watchdog: _Watchdog, connection: Connection, item: Outgoing) -> None:
    """``connection.send(item)``, cut by the watchdog if it takes too long."""
    watchdog.begin(connection)
    try:
        connection.send(item)
    except Failure as exc:
        cut = watchdog.finish()
        if cut:
            message = f"{cut}; the connection was cut and the message is tried again later"
            raise Failure(message, None, permanent=False, reconnect=True) from exc
        raise
    finally:
        watchdog.finish()  # (again after a failure: nothing left to pop)


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out waiting for the server"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return f"the server closed the connection ({exc})"
    return f"{type(exc).__name__}: {exc}"
