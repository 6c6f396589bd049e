"""Match and render many subscribers, on every core, streaming the emails out.

Subscribers are cut into chunks; each worker process compiles a matcher for a chunk, renders
its digests and sends them back in small batches through a bounded queue. The caller sees
one ``Produced`` per subscriber and never holds more than a few batches of emails, however
long the list (bench/run.py measures 100,000 subscribers).
"""

from __future__ import annotations

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
from newsletter.render import Renderer

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


def default_workers() -> int:
    """One worker per core this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def produce(
    subscribers: Sequence[Subscriber],
    papers: Sequence[Paper],
    config: Config,
    now: datetime,
    history: Mapping[str, History],
    environ: Mapping[str, str],
    workers: int | None = None,
) -> Iterator[Produced]:
    """Every subscriber's email (or reason for none), in parallel when the list is long."""
    workers = default_workers() if workers is None else workers
    if workers <= 1 or len(subscribers) < PARALLEL_FROM:
        yield from _produce(subscribers, papers, config, now, history, environ)
        return
    yield from _produce_parallel(subscribers, papers, config, now, history, environ, workers)


def _produce(
    subscribers: Sequence[Subscriber],
    papers: Sequence[Paper],
    config: Config,
    now: datetime,
    history: Mapping[str, History],
    environ: Mapping[str, str],
) -> Iterator[Produced]:
    renderer = Renderer(config, environ)
    for start in range(0, len(subscribers), CHUNK):
        chunk = subscribers[start : start + CHUNK]
        mine = {s.email: history[s.email] for s in chunk if s.email in history}
        for selection in Matcher(chunk, config.matching).iter_select(papers, now, mine):
            email = renderer.render(selection, now)
            if email is None:
                yield Produced(selection.subscriber.email, None, no_digest_reason(selection))
            else:
                yield Produced(selection.subscriber.email, replace(email, html="", text=""), None)


def no_digest_reason(selection: Selection) -> str:
    """Why a subscriber gets no email this time."""
    if selection.candidates == 0:
        return "no new papers since the last digest"
    return f"no new matches ({selection.candidates} new papers, none matching)"


def _produce_parallel(
    subscribers: Sequence[Subscriber],
    papers: Sequence[Paper],
    config: Config,
    now: datetime,
    history: Mapping[str, History],
    environ: Mapping[str, str],
    workers: int,
) -> Iterator[Produced]:
    # spawn, not fork: the caller may run threads (the scheduler), and a forked child could
    # inherit a lock some other thread held.
    context = multiprocessing.get_context("spawn")
    results = context.Queue(maxsize=4 * workers)  # bounded: workers wait for the consumer
    size = min(CHUNK, -(-len(subscribers) // workers))
    chunks = [subscribers[i : i + size] for i in range(0, len(subscribers), size)]
    processes = []
    for index in range(workers):
        mine = [chunk for n, chunk in enumerate(chunks) if n % workers == index]
        wanted = {s.email for chunk in mine for s in chunk}
        past = {email: record for email, record in history.items() if email in wanted}
        process = context.Process(
            target=_worker,
            args=(mine, list(papers), config, now, past, dict(environ), results),
            daemon=True,
        )
        process.start()
        processes.append(process)
    try:
        finished = 0
        while finished < len(processes):
            try:
                item = results.get(timeout=1.0)
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


def _worker(
    chunks: list[Sequence[Subscriber]],
    papers: list[Paper],
    config: Config,
    now: datetime,
    history: dict[str, History],
    environ: dict[str, str],
    results: multiprocessing.Queue,
) -> None:
    """In a worker process: produce the chunks, ship the emails in batches."""
    try:
        batch: list[Produced] = []
        for chunk in chunks:
            for item in _produce(chunk, papers, config, now, history, environ):
                batch.append(item)
                if len(batch) == BATCH:
                    results.put(batch)
                    batch = []
        if batch:
            results.put(batch)
        results.put(_DONE)
    except Exception as exc:  # reported to the parent, which raises it as a NewsletterError
        results.put(f"{type(exc).__name__}: {exc}")
