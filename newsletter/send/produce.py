"""Match and render many subscribers on every core, streaming the emails out.

Subscribers are cut into chunks; each worker process compiles a matcher for a chunk, renders
its digests and sends them back in small batches through a bounded queue. The caller sees
one ``Produced`` per subscriber and never holds more than a few batches of emails, however
long the list (bench/run.py measures 100,000 subscribers). A worker's error reaches the
caller as the same exception class (a template mistake is a TemplateError with or without
workers), and stops every other worker at once.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import pickle
import queue
import signal
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from newsletter.config.settings import MatchSettings
from newsletter.delivery.transport import Spool
from newsletter.errors import NewsletterError, WorkerError
from newsletter.files.pickling import pickled_as_tuple
from newsletter.matching.keywords import Keyword
from newsletter.matching.matcher import Matcher, Scans
from newsletter.models import History, Paper, RenderedEmail, Selection, Subscriber
from newsletter.render.renderer import Renderer
from newsletter.schedule.slots import Timetable

PARALLEL_FROM = 2000  # below this many subscribers, worker start-up costs more than it saves
KEPT_PARALLEL_FROM = 100  # the same for workers already running (a Producer's)
CHUNK = 5_000  # subscribers per matcher: bounds the matcher's arrays (and peak memory)
BATCH = 100  # emails per message from a worker
AHEAD_MAX = 8  # items of ``RenderPool.map_ahead`` waiting for the workers at most
STOP_SECONDS = 5.0  # how long a stopped worker may take to exit before it is killed


@pickled_as_tuple
@dataclass(frozen=True, slots=True)
class Produced:
    """One subscriber's outcome: an email, or the reason there is none. The email keeps only
    what delivery needs (its HTML and text parts are inside ``data``): shipping the parts too
    from the workers tripled the bytes through the pipes (bench/run.py)."""

    subscriber: str
    email: RenderedEmail | None
    reason: str | None


@dataclass(frozen=True)
class RenderOrder:
    """Everything needed to produce digests for some subscribers (picklable for workers: the
    renderer travels as its settings and template sources, and compiles again there)."""

    subscribers: Sequence[Subscriber]
    papers: Sequence[Paper]
    matching: MatchSettings
    renderer: Renderer
    now: datetime
    history: Mapping[str, History]  # by casefolded address
    timetable: Timetable = field(default_factory=Timetable)  # when the next digests come
    spool: Spool | None = None  # where the workers write the emails (None: they travel back)
    # every keyword of the profiles whose chunks follow (a chunk worker's): scanned for at
    # once, so that the papers' scan serves each chunk (matching.matcher.Scans)
    vocabulary: tuple[Keyword, ...] = ()

    def part(self, subscribers: Sequence[Subscriber]) -> RenderOrder:
        """The same order for a subset of the subscribers (and only their history)."""
        keys = (s.email.casefold() for s in subscribers)
        history = {key: self.history[key] for key in keys if key in self.history}
        return replace(self, subscribers=list(subscribers), history=history)


@dataclass(frozen=True, slots=True)
class _Failed:
    """A worker's last word: the error that stopped it."""

    error: NewsletterError


_DONE = "done"
_SAME = "same"  # the order's common part is the one before
_Task = tuple[list[Subscriber], dict[str, History]] | None  # a chunk, or None: stop


def default_workers() -> int:
    """One worker per core this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class Produces(Protocol):
    """What produces a sending's orders (a RenderPool started ahead, or a Producer)."""

    def produce(self, order: RenderOrder) -> Iterator[Produced]:
        """Every subscriber's email (or reason for none)."""
        ...


def produce(
    order: RenderOrder, workers: int | None = None, pool: RenderPool | None = None
) -> Iterator[Produced]:
    """Every subscriber's email (or reason for none), in parallel when the list is long: on
    ``pool`` (workers started ahead, stopped here either way unless kept) or on workers
    started now."""
    count = _parallel_workers(len(order.subscribers), len(pool.processes) if pool else workers)
    if not count:
        if pool:
            pool.stop()
        return _produce(order, Scans())
    return _produce_parallel(order, pool or RenderPool(count))


class Producer:
    """Produces the orders of a sender that makes one after another (a chunk worker: a
    chunk of a run, then the next): its rendering workers stay up from one order to the
    next, and so do the keyword scans of the papers, in them or here. A chunk of 200 is too
    short to start workers for, and scanning the papers for each took more than half of
    its time (bench/workers.py)."""

    def __init__(
        self, workers: int | None = None, idle: bool = False, pool: RenderPool | None = None
    ) -> None:
        """(``pool``: kept workers started ahead, to use first.)"""
        if pool is not None:
            workers = len(pool.processes)
        self.count = default_workers() if workers is None else workers
        self.idle = idle
        self.pool = pool
        self.scans = Scans()
        self.vocabulary: tuple[Keyword, ...] = ()  # the keywords of every profile served

    def produce(self, order: RenderOrder) -> Iterator[Produced]:
        """Every subscriber's email (or reason for none); on the workers when there are
        enough subscribers to share."""
        order = replace(order, vocabulary=self.vocabulary)
        if self.count < 2 or len(order.subscribers) < KEPT_PARALLEL_FROM:
            self.scans.learn(order.vocabulary)
            return _produce(order, self.scans)
        if self.pool is None or self.pool.stopped:  # (an order cut short stops its pool)
            self.pool = RenderPool(self.count, self.idle, kept=True)
        return _produce_parallel(order, self.pool)

    def stop(self) -> None:
        """End the workers (a new order starts them again)."""
        if self.pool is not None:
            self.pool.stop()


def _parallel_workers(subscribers: int, workers: int | None, least: int = PARALLEL_FROM) -> int:
    """How many worker processes a list of ``subscribers`` is worth (``workers``, or one
    per core): none for a list shorter than ``least``, or with one core."""
    count = default_workers() if workers is None else workers
    return count if count > 1 and subscribers >= least else 0


def _produce(order: RenderOrder, scans: Scans) -> Iterator[Produced]:
    for start in range(0, len(order.subscribers), CHUNK):
        for batch in _batches(order.part(order.subscribers[start : start + CHUNK]), scans):
            yield from batch


def _batches(chunk: RenderOrder, scans: Scans) -> Iterator[list[Produced]]:
    """The chunk's outcomes, ``BATCH`` at a time; with a spool, the emails of each batch are
    written and on disk before it goes on, and carry no bytes."""
    batch: list[Produced] = []
    staged: list[Any] = []
    for item in _produce_chunk(chunk, scans):
        if item.email is not None:
            item = Produced(item.subscriber, _shipped(item.email, chunk.spool, staged), None)
        batch.append(item)
        if len(batch) == BATCH:
            _settle(chunk.spool, staged)
            yield batch
            batch, staged = [], []
    if batch:
        _settle(chunk.spool, staged)
        yield batch


def _shipped(email: RenderedEmail, spool: Spool | None, staged: list[Any]) -> RenderedEmail:
    """What goes on of ``email``: its bytes without the parts (those are inside them), or
    with a spool, written there (noted in ``staged``) and only its name."""
    if spool is None:
        return replace(email, html="", text="")
    staged.append(spool.stage(email))
    return replace(email, html="", text="", data=b"", staged=True)


def _settle(spool: Spool | None, staged: list[Any]) -> None:
    if spool is not None and staged:
        spool.settle(staged)


def _produce_chunk(chunk: RenderOrder, scans: Scans) -> Iterator[Produced]:
    """One matcher for the chunk's subscribers (on ``scans``: the papers' scan is kept for
    the next chunk); each selection rendered as it is explained."""
    matcher = Matcher(chunk.subscribers, chunk.matching, scans)
    for selection in matcher.iter_select(chunk.papers, chunk.now, chunk.history):
        subscriber = selection.subscriber
        next_send = chunk.timetable.next_fire(subscriber, chunk.now)
        email = chunk.renderer.render(selection, chunk.now, next_send)
        if email is None:
            record = chunk.history.get(subscriber.email.casefold())
            reason = no_digest_reason(selection, record, chunk.matching.lookback_days)
            yield Produced(subscriber.email, None, reason)
        else:
            yield Produced(subscriber.email, email, None)


def no_digest_reason(selection: Selection, history: History | None, lookback_days: int) -> str:
    """Why a subscriber gets no email this time (and, after a refusal for good, that its
    papers are held back and how to offer them again)."""
    reason = _nothing_to_send(selection, history, lookback_days)
    refused = history.refused if history is not None else None
    if refused is None:
        return reason
    papers = "paper" if refused.papers == 1 else "papers"
    return (
        f"{reason}; the last digest ({refused.papers} {papers}) was refused for good on "
        f"{refused.at:%Y-%m-%d} ({refused.error}), and its papers are not offered again: "
        "newsletter send --retry-failed offers them again"
    )


def _nothing_to_send(selection: Selection, history: History | None, lookback_days: int) -> str:
    had_digest = history is not None and history.last_digest_at is not None
    if selection.candidates == 0:
        if had_digest:
            return "no new papers since the last digest"
        return f"no papers from the last {_days(lookback_days)} to choose from"
    papers = "paper" if selection.candidates == 1 else "papers"
    window = f"{selection.candidates} {papers} of the last {_days(lookback_days)}"
    if had_digest:
        return f"no new matches ({window} not sent yet, none matching)"
    return f"no matches ({window}, none matching)"


def _days(count: int) -> str:
    return "day" if count == 1 else f"{count} days"


class RenderPool:
    """Rendering worker processes, started before their order is known: a run starts them
    first, so that they start Python and import while it ingests and plans (about half a
    second of a 20,000-subscriber send, bench/pipeline.py). Used by one ``produce``, which
    stops them at its end, unless ``kept`` (a Producer's: for the next order; an order
    cut short stops it all the same); ``stop`` also lets go of a pool that was not needed.

    The order's common part reaches each worker through a queue, not the arguments of the
    process: those are written to the child before ``start`` returns, so a megabyte of
    papers and templates held the caller until the child had imported everything."""

    def __init__(self, count: int, idle: bool = False, kept: bool = False) -> None:
        # spawn, not fork: the caller may run threads (the scheduler), and a forked child
        # could inherit a lock some other thread held.
        context = multiprocessing.get_context("spawn")
        self.setup: multiprocessing.Queue = context.Queue()  # the order's common part, each
        self.tasks: multiprocessing.Queue = context.Queue(maxsize=count)  # a chunk a worker
        self.results: multiprocessing.Queue = context.Queue(maxsize=4 * count)  # bounded
        channels = (self.setup, self.tasks, self.results)
        self.processes = [
            context.Process(target=_worker, args=(*channels, idle)) for _ in range(count)
        ]
        self.stopped = False
        self.kept = kept
        self.common: RenderOrder | None = None  # the last order's common part, as shipped
        for process in self.processes:
            process.daemon = True
            process.start()

    def produce(self, order: RenderOrder) -> Iterator[Produced]:
        """``order``'s emails, on these workers when it is long enough (``produce``)."""
        return produce(order, pool=self)

    def __enter__(self) -> RenderPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def map_ahead(self, function: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        """``function`` (importable by name) of each of ``items``, in their order, worked out
        in the workers while they wait for their order (a first send's profile file is
        checked there). While ``AHEAD_MAX`` items wait for the workers (which may still be
        starting up), the caller works the next one out itself instead of waiting."""
        finished: dict[int, Any] = {}
        waiting = following = 0  # items the workers have; the next result to give
        ended = object()
        try:
            for index, item in enumerate(itertools.chain(items, [ended])):
                if item is ended:
                    while waiting:
                        waiting -= self._collect(finished, wait=True)
                elif waiting >= AHEAD_MAX:
                    finished[index] = function(item)
                else:
                    self.setup.put((function, index, item))
                    waiting += 1
                waiting -= self._collect(finished, wait=False)
                while following in finished:
                    yield finished.pop(following)
                    following += 1
        except BaseException:
            self.stop()  # results may still be on their way: the pool is no use any more
            raise

    def _collect(self, finished: dict[int, Any], wait: bool) -> int:
        """The results of ``map_ahead`` that have come back, into ``finished``; how many
        (with ``wait``, at least one)."""
        count = 0
        while True:
            blocking = wait and not count
            try:
                item = self.results.get(timeout=0.5) if blocking else self.results.get_nowait()
            except queue.Empty:
                if not blocking:
                    return count
                # (all, not any: a worker that is done waits for the next order)
                if not all(process.is_alive() for process in self.processes):
                    raise WorkerError("a rendering worker died without a word") from None
                continue
            if isinstance(item, _Failed):
                raise item.error
            index, value = item
            finished[index] = value
            count += 1

    def stop(self) -> None:
        """End the workers now, and let go of the queues without waiting on them: a chunk
        still in the task queue's pipe, with no worker left to read it, would otherwise keep
        this process from exiting (multiprocessing joins a queue's feeder thread at exit)."""
        if self.stopped:
            return
        self.stopped = True
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        for channel in (self.setup, self.tasks, self.results):
            channel.cancel_join_thread()
            channel.close()
        for process in self.processes:
            process.join(STOP_SECONDS)
            if process.is_alive():
                process.kill()
                process.join()


def start_workers(
    subscribers: int, workers: int | None = None, idle: bool = False, kept: bool = False
) -> RenderPool | None:
    """RenderPool for a run of ``subscribers``, started now (``idle``: on CPU nothing else
    wants, ``_yield_the_cpu``; ``kept``: for a Producer); None when ``produce`` (or the
    Producer) would not use them (one core, or too short a list)."""
    count = _parallel_workers(subscribers, workers, KEPT_PARALLEL_FROM if kept else PARALLEL_FROM)
    return RenderPool(count, idle, kept) if count else None


def _yield_the_cpu() -> None:
    """Run this process only on CPU that nothing else wants (SCHED_IDLE on Linux, else the
    lowest priority). Set once the worker has imported, so it still starts up at once.

    For a send over SMTP (send.run.Run): each of the server's four replies a message wakes
    a thread of the run, which should get a core at once. Rendering workers that wake after
    a pause (their queue was full) took those cores first: two processes busy a fifth of
    the time cut what ``deliver`` sends by 17% at nice 0, 15% at nice 10, 9-15% as
    SCHED_BATCH, and by nothing as SCHED_IDLE (BENCHMARKS.md). The workers render ahead
    into a bounded queue, so they lose nothing by waiting for a free core."""
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return
    with contextlib.suppress(AttributeError, OSError):
        os.nice(19)


def _produce_parallel(order: RenderOrder, pool: RenderPool) -> Iterator[Produced]:
    count = len(pool.processes)
    common = replace(order, subscribers=[], history={}, papers=list(order.papers))
    feeder = _Feeder(pool.tasks, order, min(CHUNK, -(-len(order.subscribers) // count)), count)
    complete = False
    try:
        # Pickled here, once: a queue pickles in its feeder thread, where a failure would
        # only be printed, and the workers would wait for it for ever. A kept pool's
        # workers keep the last one (a chunk worker's chunks share their papers).
        shipped = _SAME if common == pool.common else _pickled(common)
        pool.common = common
        for _ in pool.processes:
            pool.setup.put(shipped)
        finished = 0
        while finished < count:
            feeder.feed()
            try:
                item = pool.results.get(timeout=0.5)
            except queue.Empty:
                if not all(p.is_alive() for p in pool.processes):  # (see _collect)
                    raise WorkerError("a rendering worker died without a word") from None
                continue
            if item == _DONE:
                finished += 1
            elif isinstance(item, _Failed):
                raise item.error
            else:
                yield from item
        complete = True
    finally:
        if not (complete and pool.kept):
            pool.stop()


def _pickled(common: RenderOrder) -> bytes:
    return pickle.dumps(common, protocol=pickle.HIGHEST_PROTOCOL)


class _Feeder:
    """Hands the workers chunks of subscribers as they take them, then a stop each: a
    worker holds one chunk at a time, not its share of the whole list."""

    def __init__(self, tasks: multiprocessing.Queue, order: RenderOrder, size: int, workers: int):
        self.tasks = tasks
        chunks = (
            order.part(order.subscribers[i : i + size])
            for i in range(0, len(order.subscribers), size)
        )
        items: Iterator[_Task] = (
            (list(chunk.subscribers), dict(chunk.history)) for chunk in chunks
        )
        self.items = itertools.chain(items, itertools.repeat(None, workers))
        self.waiting: _Task | str = next(self.items)

    def feed(self) -> None:
        """Put chunks on the queue while it has room."""
        while self.waiting != _DONE:
            try:
                self.tasks.put_nowait(self.waiting)
            except queue.Full:
                return
            self.waiting = next(self.items, _DONE)


def _end_with_the_sender() -> None:
    """End this worker when the process that started it dies: a sender killed (SIGKILL, the
    OOM killer) cannot stop its workers, and the queues' pipes never close (each worker
    holds both ends), so they waited for ever."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(1)

    threading.Thread(target=watch, name="sender watch", daemon=True).start()


def _worker(
    setup: multiprocessing.Queue,
    tasks: multiprocessing.Queue,
    results: multiprocessing.Queue,
    idle: bool = False,
) -> None:
    """In a worker process: produce each chunk it is given, ship the emails in batches;
    then wait for the next order (a kept pool's), with the papers' scan kept."""
    # Ctrl-C reaches the whole process group: the sender decides (it stops gracefully, and
    # ends the workers itself).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _end_with_the_sender()
    if idle:
        _yield_the_cpu()
    scans = Scans()
    common: RenderOrder | None = None
    try:
        while True:
            item = setup.get()
            if isinstance(item, tuple):  # work before the order
                function, index, argument = item
                results.put((index, function(argument)))
                continue
            if item != _SAME:
                common = pickle.loads(item)
                scans.learn(common.vocabulary)
            assert common is not None  # (the same as before: there was one before)
            while (task := tasks.get()) is not None:
                subscribers, history = task
                order = replace(common, subscribers=subscribers, history=history)
                for batch in _batches(order, scans):
                    results.put(batch)
            results.put(_DONE)
    except NewsletterError as exc:
        results.put(_Failed(exc))
    except Exception as exc:  # a bug: the parent raises it with this traceback
        detail = "".join(traceback.format_exception(exc)).rstrip()
        results.put(_Failed(WorkerError(f"a rendering worker failed: {exc!r}\n{detail}")))
