"""Delivery: the messages' way out, whatever the transport (the Maildir outbox in
``outbox``, an SMTP server in ``smtp``, or nowhere for a dry run).

A transport opens connections; a connection sends one message (or, for a transport that is
exactly once, a batch) and raises on failure. The ``deliver`` pool runs one thread per
connection, retries transient failures with exponential backoff and jitter, and reports the
``Result``s back to the caller's thread as they come, which records them (SQLite stays on one
thread).
"""

from __future__ import annotations

import contextlib
import math
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Protocol

from newsletter.delivery.pacing import Clock, Pacer, unlimited
from newsletter.delivery.transport import Connection, Outgoing, Result, Transport
from newsletter.errors import DeliveryFailure as Failure


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


class StopSignal(Protocol):
    """What asks a delivery to stop: a ``threading.Event``, or anything else that says
    whether it is set (a worker's stop or its lease lost, ``send.shared.AnyEvent``)."""

    def is_set(self) -> bool: ...


class _Halt:
    """Set when the caller asks to stop (its event) or this pool must (a fatal error, the
    end); the caller's event is only ever read: a daemon's stop outlives one run."""

    def __init__(self, caller: StopSignal | None) -> None:
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

    def __init__(self, limit: float | None, halt: _Halt, grace: float | None = STOP_GRACE) -> None:
        self.limit = limit
        self.halt = halt
        self.grace = grace  # None: after a stop, only ``limit`` bounds a message
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
        if since_stop is not None and self.grace is not None and since_stop > self.grace:
            return "the run was stopped while the message was still on its way"
        return None


def deliver(
    transport: Transport,
    outgoing: Iterable[Outgoing],
    retry: Retry,
    stop: StopSignal | None = None,
    pacer: Pacer | None = None,
    grace: float | None = STOP_GRACE,
) -> Iterator[list[Result]]:
    """Send every message over ``transport.parallel`` connections, as fast as ``pacer``
    allows; yield the Results as they come, a list of those that came together (in the
    caller's thread). Once ``stop`` is set,
    or a cap of the pacer is reached, messages in flight finish (within ``grace`` seconds
    of the stop; None: within the transport's ``message_timeout`` only) and nothing more is
    handed over. A FatalDeliveryError error stops everything and is raised here."""
    stop = _Halt(stop)
    pacer = pacer or unlimited(Clock(time.monotonic, retry.sleep), datetime.now(UTC))
    if _in_batches(transport, pacer):
        yield from _deliver_in_batches(transport, outgoing, retry, stop)
        return
    # One message waiting per connection, no more: while the caller is busy composing (not
    # recording), a connection can have at most one accepted and one on the wire that are not
    # recorded yet, which bounds the copies a kill can cause to two a connection.
    # (A transport that writes in batches is exactly once: it may have a batch waiting.)
    batch = transport.batch
    todo: queue.Queue[Outgoing | None] = queue.Queue(maxsize=max(transport.parallel, batch))
    watchdog = _Watchdog(transport.message_timeout, stop, grace)
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


def _in_batches(transport: Transport, pacer: Pacer) -> bool:
    """Whether ``transport`` takes its messages in batches on one connection, with nothing
    to pace and nothing to watch (the outbox): then the caller's thread writes each batch
    itself. A thread and a queue between them cost more than the writing (bench/pipeline.py:
    ~1.5 s of CPU at 20,000 digests, on the cores the rendering workers need)."""
    return (
        transport.batch > 1
        and transport.parallel == 1
        and transport.message_timeout is None
        and pacer.limits_nothing
    )


def _deliver_in_batches(
    transport: Transport, outgoing: Iterable[Outgoing], retry: Retry, stop: _Halt
) -> Iterator[list[Result]]:
    """``deliver`` for a transport that is exactly once in batches, in the caller's thread:
    a batch is taken, written, and its results reported before the next is taken."""
    pool = _Pool(transport, retry, stop, _Watchdog(None, stop))  # (a watchdog never started)
    connection: Connection | None = None
    items, size = iter(outgoing), transport.batch
    try:
        while not stop.is_set() and (batch := list(islice(items, size))):
            connection, results = _send_batch(pool, connection, batch)
            yield results
    finally:
        stop.set()
        if connection is not None:
            connection.close()


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
            more, ended = _waiting(todo, pool.transport.batch - 1)
            if more:
                connection, results = _send_batch(pool, connection, [item, *more])
            else:
                connection, result = _send_with_retries(pool, connection, item)
                results = [result]
            for result in results:
                done.put(result)
    except BaseException as exc:  # FatalDeliveryError, or a bug: surface it in the caller's thread
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
        connection.send_many(batch)
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
