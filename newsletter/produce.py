"""Match and render many subscribers, on every core, streaming the emails out.

Subscribers are cut into chunks; each worker process compiles a matcher for a chunk, renders
its digests and sends them back in small batches through a bounded queue. The caller sees
one ``Produced`` per subscriber and never holds more than a few batches of emails, however
long the list (bench/run.py measures 100,000 subscribers).
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import queue
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from newsletter.config import Config
from newsletter.errors import NewsletterError
from newsletter.matching import History, Matcher, Selection
from newsletter.models import Paper, RenderedEmail, Subscriber
from newsletter.render import Renderer, Templates, load_templates

PARALLEL_FROM = 2000  # below this many subscribers, worker start-up costs more than it saves
CHUNK = 5_000  # subscribers per matcher: bounds the matcher's arrays (and peak memory)
BATCH = 100  # emails per message from a worker
_DONE = "done"


@dataclass(frozen=True, slots=True)
class Produced:
    """One subscriber's outcome: an email, or the reason there is none. The email keeps only
    what delivery needs (its HTML and text parts are inside ``data``): shipping the parts too
    from the workers tripled the bytes through the pipes (bench/run.py)."""

    subscriber: str
    email: RenderedEmail | None
    reason: str | None


@dataclass(frozen=True)
class Order:
    """Everything needed to produce digests for some subscribers (picklable for workers)."""

    subscribers: Sequence[Subscriber]
    papers: Sequence[Paper]
    config: Config
    now: datetime
    history: Mapping[str, History]
    environ: Mapping[str, str]
    templates: Templates | None = None  # loaded (and inlined) when None

    def part(self, subscribers: Sequence[Subscriber]) -> Order:
        """The same order for a subset of the subscribers (and only their history)."""
        history = {s.email: self.history[s.email] for s in subscribers if s.email in self.history}
        return replace(self, subscribers=list(subscribers), history=history)


def default_workers() -> int:
    """One worker per core this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def produce(order: Order, workers: int | None = None) -> Iterator[Produced]:
    """Every subscriber's email (or reason for none), in parallel when the list is long."""
    workers = default_workers() if workers is None else workers
    if workers <= 1 or len(order.subscribers) < PARALLEL_FROM:
        return _produce(order)
    return _produce_parallel(order, workers)


def _produce(order: Order, renderer: Renderer | None = None) -> Iterator[Produced]:
    renderer = renderer or Renderer(order.config, order.environ, order.templates)
    for start in range(0, len(order.subscribers), CHUNK):
        yield from _produce_chunk(order.part(order.subscribers[start : start + CHUNK]), renderer)


def _produce_chunk(chunk: Order, renderer: Renderer) -> Iterator[Produced]:
    """One matcher for the chunk's subscribers; each selection rendered as it is explained."""
    matcher = Matcher(chunk.subscribers, chunk.config.matching)
    for selection in matcher.iter_select(chunk.papers, chunk.now, chunk.history):
        email = renderer.render(selection, chunk.now)
        if email is None:
            yield Produced(selection.subscriber.email, None, no_digest_reason(selection))
        else:
            yield Produced(selection.subscriber.email, replace(email, html="", text=""), None)


def no_digest_reason(selection: Selection) -> str:
    """Why a subscriber gets no email this time."""
    if selection.candidates == 0:
        return "no new papers since the last digest"
    return f"no new matches ({selection.candidates} new papers, none matching)"


_Task = tuple[list[Subscriber], dict[str, History]] | None  # a chunk, or None: stop


def _produce_parallel(order: Order, workers: int) -> Iterator[Produced]:
    # spawn, not fork: the caller may run threads (the scheduler), and a forked child could
    # inherit a lock some other thread held.
    context = multiprocessing.get_context("spawn")
    tasks = context.Queue(maxsize=workers)  # a chunk waiting per worker, cut when there is room
    results = context.Queue(maxsize=4 * workers)  # bounded: workers wait for the consumer
    common = replace(
        order,
        subscribers=[],
        history={},
        papers=list(order.papers),
        environ=dict(order.environ),
        templates=order.templates or load_templates(order.config),
    )
    feeder = _Feeder(tasks, order, min(CHUNK, -(-len(order.subscribers) // workers)), workers)
    processes = []
    for _ in range(workers):
        process = context.Process(target=_worker, args=(common, tasks, results), daemon=True)
        process.start()
        processes.append(process)
    try:
        finished = 0
        while finished < len(processes):
            feeder.feed()
            try:
                item = results.get(timeout=0.5)
            except queue.Empty:
                if not any(p.is_alive() for p in processes):
                    raise NewsletterError("a rendering worker died without a word") from None
                continue
            if item == _DONE:
                finished += 1
            elif isinstance(item, str):
                raise NewsletterError(f"a rendering worker failed: {item}")
            else:
                yield from item
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join()


class _Feeder:
    """Hands the workers chunks of subscribers as they take them, then a stop each: a
    worker holds one chunk at a time, not its share of the whole list."""

    def __init__(self, tasks: multiprocessing.Queue, order: Order, size: int, workers: int):
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


def _worker(common: Order, tasks: multiprocessing.Queue, results: multiprocessing.Queue) -> None:
    """In a worker process: produce each chunk it is given, ship the emails in batches."""
    try:
        renderer = Renderer(common.config, common.environ, common.templates)
        batch: list[Produced] = []
        while (task := tasks.get()) is not None:
            subscribers, history = task
            for item in _produce_chunk(
                replace(common, subscribers=subscribers, history=history), renderer
            ):
                batch.append(item)
                if len(batch) == BATCH:
                    results.put(batch)
                    batch = []
        if batch:
            results.put(batch)
        results.put(_DONE)
    except Exception as exc:  # reported to the parent, which raises it as a NewsletterError
        results.put(f"{type(exc).__name__}: {exc}")
