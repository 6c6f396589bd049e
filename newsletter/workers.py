"""Sends shared by workers on any number of hosts, through PostgreSQL (``store:
postgresql://...``).

A send run (``newsletter send``, or a run of the scheduler) decides who is served, cuts
their addresses into chunks and records them as jobs of the run (``send_runs``,
``send_chunks``). Any ``newsletter worker``, and the sending process itself, claims a chunk
with ``SELECT ... FOR UPDATE SKIP LOCKED`` for a lease it renews every quarter of its length,
matches, renders and delivers it with the same ``pipeline.Run`` as a single machine, and
records the chunk's report. A worker that dies stops renewing; once its lease runs out
another worker claims the chunk and does it again: digests accepted in it are not sent
again (the ledger records each digest's run, and a unique index allows one digest per
subscriber and run), pending ones go again with the same Message-ID. Lease times are the
database server's clock, so the hosts' clocks do not matter. ``send`` returns once every
chunk of its run is done, so one machine needs no worker at all.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from newsletter import postgres
from newsletter.config import Config, WorkerSettings
from newsletter.errors import BusyError, ConfigError, LeaseLost, NewsletterError
from newsletter.models import (
    CapReached,
    FailedItem,
    SendReport,
    SentItem,
    SkippedItem,
    Subscriber,
)
from newsletter.store import Store, open_store_for, store_url

if TYPE_CHECKING:
    from newsletter.pipeline import Run, World

log = logging.getLogger("newsletter.worker")

_CLAIM = """
UPDATE send_chunks SET status = 'claimed', worker = ?, claims = claims + 1,
    lease_until = clock_timestamp() + make_interval(secs => ?)
WHERE (run, number) = (
    SELECT run, number FROM send_chunks
    WHERE (status = 'queued' OR (status = 'claimed' AND lease_until < clock_timestamp()))
        {RUN}
    ORDER BY run, number LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING run, number, subscribers, claims
"""


@dataclass(frozen=True)
class Chunk:
    """A claimed chunk: its run, number and addresses, and the run's moment and options."""

    run: str
    number: int
    subscribers: tuple[str, ...]
    claims: int  # 1 the first time; more when it is done again after a worker died
    as_of: datetime
    retry_failed: bool

    @property
    def label(self) -> str:
        """How logs name the chunk."""
        return f"{self.run[:8]}/{self.number}"


@dataclass(frozen=True)
class WorkerStatus:
    """A live worker as ``newsletter workers`` lists it."""

    id: str
    host: str
    pid: int
    started: datetime
    seen: datetime
    chunk: str | None
    chunks_done: int
    messages: int

    def per_minute(self, now: datetime) -> float:
        """Messages a minute since it started."""
        minutes = max((now - self.started).total_seconds() / 60, 1 / 60)
        return self.messages / minutes

    def to_json(self, now: datetime) -> dict[str, object]:
        """The worker as ``newsletter workers --json`` prints it."""
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "started": self.started.isoformat(),
            "seen": self.seen.isoformat(),
            "chunk": self.chunk,
            "chunks_done": self.chunks_done,
            "messages": self.messages,
            "per_minute": round(self.per_minute(now), 1),
        }


class Queue:
    """The runs, chunks and workers tables of a PostgreSQL store."""

    def __init__(self, store: Store) -> None:
        self.db = store.db

    def open_run(
        self, run: str, as_of: datetime, holder: str, retry_failed: bool, chunks: list[list[str]]
    ) -> None:
        """Record a run and its chunks, queued, in one transaction; wake idle workers."""
        options = json.dumps({"retry_failed": retry_failed})
        with self.db.transaction() as db:
            db.execute(
                "INSERT INTO send_runs (id, started, as_of, holder, options, chunks) "
                "VALUES (?, clock_timestamp(), ?, ?, ?, ?)",
                (run, as_of.isoformat(), holder, options, len(chunks)),
            )
            db.executemany(
                "INSERT INTO send_chunks (run, number, subscribers, status, claims) "
                "VALUES (?, ?, ?, 'queued', 0)",
                ((run, number, json.dumps(chunk)) for number, chunk in enumerate(chunks)),
            )
            db.execute("NOTIFY newsletter_chunks")

    def claim(self, worker: str, lease: int, run: str | None = None) -> Chunk | None:
        """Take the first chunk that is queued or whose lease ran out (of ``run`` only, if
        given) for ``lease`` seconds; None when there is none."""
        sql = _CLAIM.format(RUN="AND run = ?" if run else "")
        with self.db.transaction() as db:
            row = db.execute(sql, (worker, lease, *([run] if run else []))).fetchone()
            if row is None:
                return None
            run_id, number, subscribers, claims = row
            as_of, options = db.execute(
                "SELECT as_of, options FROM send_runs WHERE id = ?", (run_id,)
            ).fetchone()
            db.execute(
                "UPDATE workers SET chunk = ?, seen = clock_timestamp() WHERE id = ?",
                (f"{run_id[:8]}/{number}", worker),
            )
        return Chunk(
            run_id,
            number,
            tuple(json.loads(subscribers)),
            claims,
            datetime.fromisoformat(as_of),
            bool(json.loads(options).get("retry_failed")),
        )

    def renew(self, worker: str, chunk: Chunk, lease: int) -> bool:
        """Extend the lease on ``chunk``; False when it is no longer this worker's."""
        cursor = self.db.execute(
            "UPDATE send_chunks SET lease_until = clock_timestamp() + make_interval(secs => ?) "
            "WHERE run = ? AND number = ? AND worker = ? AND status = 'claimed' "
            "AND lease_until > clock_timestamp()",
            (lease, chunk.run, chunk.number, worker),
        )
        self.seen(worker)
        return cursor.rowcount == 1

    def fence(self, worker: str, chunk: Chunk) -> Callable[[Any], None]:
        """The check each pending batch makes in its transaction: the chunk is still this
        worker's and its lease runs (the row stays locked until the batch is recorded)."""

        def check(db: Any) -> None:
            row = db.execute(
                "SELECT worker = ? AND status = 'claimed' AND lease_until > clock_timestamp() "
                "FROM send_chunks WHERE run = ? AND number = ? FOR UPDATE",
                (worker, chunk.run, chunk.number),
            ).fetchone()
            if not (row and row[0]):
                raise LeaseLost(
                    f"the lease on chunk {chunk.label} ran out and another worker took it over"
                )

        return check

    def finish(self, worker: str, chunk: Chunk, report: SendReport) -> bool:
        """Record ``chunk`` done with its report; False when another worker had taken it."""
        with self.db.transaction() as db:
            cursor = db.execute(
                "UPDATE send_chunks SET status = 'done', report = ?, worker = ?, "
                "finished = clock_timestamp(), lease_until = NULL "
                "WHERE run = ? AND number = ? AND worker = ? AND status = 'claimed'",
                (encode(report), worker, chunk.run, chunk.number, worker),
            )
            db.execute(
                "UPDATE workers SET chunk = NULL, chunks_done = chunks_done + 1, "
                "messages = messages + ?, seen = clock_timestamp() WHERE id = ?",
                (len(report.sent), worker),
            )
            db.execute(
                "UPDATE send_runs SET finished = clock_timestamp() WHERE id = ? AND finished "
                "IS NULL AND NOT EXISTS (SELECT 1 FROM send_chunks WHERE run = ? AND status "
                "<> 'done')",
                (chunk.run, chunk.run),
            )
        return cursor.rowcount == 1

    def release(self, worker: str, chunk: Chunk) -> None:
        """Hand ``chunk`` back, queued, for another worker to do (this one is stopping)."""
        self.db.execute(
            "UPDATE send_chunks SET status = 'queued', worker = NULL, lease_until = NULL "
            "WHERE run = ? AND number = ? AND worker = ? AND status = 'claimed'",
            (chunk.run, chunk.number, worker),
        )

    def left(self, run: str) -> int:
        """How many chunks of ``run`` are not done."""
        row = self.db.execute(
            "SELECT count(*) FROM send_chunks WHERE run = ? AND status <> 'done'", (run,)
        ).fetchone()
        return int(row[0])

    def reports(self, run: str) -> list[SendReport]:
        """The reports of the chunks of ``run`` done so far, in chunk order."""
        rows = self.db.execute(
            "SELECT report FROM send_chunks WHERE run = ? AND status = 'done' ORDER BY number",
            (run,),
        )
        return [decode(row[0]) for row in rows]

    def join(self, worker: str) -> None:
        """Note a worker as live."""
        self.db.execute(
            "INSERT INTO workers (id, host, pid, started, seen, chunks_done, messages) "
            "VALUES (?, ?, ?, clock_timestamp(), clock_timestamp(), 0, 0) "
            "ON CONFLICT (id) DO UPDATE SET seen = excluded.seen",
            (worker, socket.gethostname(), os.getpid()),
        )

    def seen(self, worker: str) -> None:
        """The worker is alive."""
        self.db.execute("UPDATE workers SET seen = clock_timestamp() WHERE id = ?", (worker,))

    def leave(self, worker: str) -> None:
        """A worker stopping (one killed is forgotten once unseen for long)."""
        self.db.execute("DELETE FROM workers WHERE id = ?", (worker,))

    def live(self, within: float) -> list[WorkerStatus]:
        """The workers seen in the last ``within`` seconds, those that forgot to leave
        removed after a day."""
        self.db.execute("DELETE FROM workers WHERE seen < clock_timestamp() - interval '1 day'")
        rows = self.db.execute(
            "SELECT id, host, pid, started, seen, chunk, chunks_done, messages FROM workers "
            "WHERE seen > clock_timestamp() - make_interval(secs => ?) ORDER BY host, pid",
            (within,),
        )
        return [WorkerStatus(*row) for row in rows]


def worker_id(role: str) -> str:
    """A new worker's id: host, process and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{role}:{uuid.uuid4().hex[:6]}"


def coordinate(run: Run, store: Store, subscribers: Sequence[Subscriber]) -> SendReport:
    """Carry out ``run`` as a shared run: plan it, queue its chunks, work on them beside any
    workers, and return once all are done, with every chunk's report merged."""
    from newsletter.pipeline import Share

    db = store.db
    if not db.try_lock(postgres.SEND_LOCK):  # type: ignore[attr-defined]
        raise BusyError(
            f"another send, or the scheduler of `newsletter run`, is sending from {store.where}"
            "; wait for it to finish (newsletter workers shows its progress) and run again"
        )
    try:
        as_of = run.world.now()
        run_id = uuid.uuid4().hex
        planning = replace(run, share=Share(run_id, as_of, _no_fence))
        skipped, addresses = planning.plan(store, subscribers)
        if not addresses:
            return skipped
        size = run.config.workers.chunk_size
        chunks = [addresses[i : i + size] for i in range(0, len(addresses), size)]
        queue = Queue(store)
        queue.open_run(run_id, as_of, run.holder, run.retry_failed, chunks)
        worker = Worker(store, run, worker_id(run.holder))
        worker.work(run_id)
        return merge(skipped, [*queue.reports(run_id), *worker.handed_back])
    finally:
        db.unlock(postgres.SEND_LOCK)  # type: ignore[attr-defined]


def _no_fence(db: Any) -> None:
    """Planning records no digest: nothing to fence."""


class Worker:
    """Claims chunks and sends them: for one run (``send``) or any (``newsletter worker``).

    ``base`` gives what each chunk's Run takes from its caller (stop event, transport, retry
    policy, progress callback)."""

    def __init__(self, store: Store, base: Run, name: str) -> None:
        from newsletter.pipeline import make_renderer

        self.config = base.config
        self.world = base.world
        self.renderer = make_renderer(self.config, self.world.environ)  # (once, not a chunk)
        self.store = store
        self.base = base
        self.name = name
        self.queue = Queue(store)
        self.settings: WorkerSettings = self.config.workers
        self.handed_back: list[SendReport] = []  # what chunks handed back had sent
        self.queue.join(name)  # (listed by `newsletter workers` from here on)

    @property
    def stopping(self) -> bool:
        return self.base.stop is not None and self.base.stop.is_set()

    def work(self, run: str | None = None) -> None:
        """Claim and send chunks until ``run`` is done (None: until stopped)."""
        try:
            while not self.stopping:
                chunk = self.queue.claim(self.name, self.settings.lease, run)
                if chunk is not None:
                    self.send(chunk)
                elif run is not None and self.queue.left(run) == 0:
                    return
                else:
                    self._idle()
        finally:
            self.queue.leave(self.name)

    def _idle(self) -> None:
        self.queue.seen(self.name)
        if self.base.stop is not None:
            self.base.stop.wait(self.settings.poll)
        else:
            self.world.sleep(self.settings.poll)

    def send(self, chunk: Chunk) -> None:
        """Send one claimed chunk under a renewed lease, then record it done."""
        from newsletter.pipeline import Run, Share, profiles_of

        profiles = profiles_of(self.config)
        known = {s.email.casefold(): s for s in profiles.subscribers}
        chosen = [known[a.casefold()] for a in chunk.subscribers if a.casefold() in known]
        missing = [a for a in chunk.subscribers if a.casefold() not in known]
        lost = threading.Event()
        halt = Either(self.base.stop, lost)  # (delivery only ever asks is_set)
        share = Share(chunk.run, chunk.as_of, self.queue.fence(self.name, chunk))
        run = Run(
            self.config,
            self.world,
            ignore_schedule=True,  # (the run decided who is due)
            retry_failed=chunk.retry_failed,
            holder=self.base.holder,
            stop=halt,  # type: ignore[arg-type]
            on_result=self.base.on_result,
            retry=self.base.retry,
            transport=self.base.transport,
            share=share,
        )
        with self._lease(chunk, lost):
            try:
                report = run.chunk(self.store, chosen, self.renderer)
            except NewsletterError as exc:
                if not (lost.is_set() or isinstance(exc, LeaseLost)):
                    raise
                log.warning("chunk %s: %s; left to the worker that took it over", chunk.label, exc)
                return
        if halt.is_set():  # stopping, or the lease lost: the rest is for another worker
            self.queue.release(self.name, chunk)
            self.handed_back.append(report)
            sent = len(report.sent)
            log.info("chunk %s: handed back (%d sent before stopping)", chunk.label, sent)
            return
        report = _with_missing(report, missing, profiles.path.name)
        if not self.queue.finish(self.name, chunk, report):
            log.warning("chunk %s was taken over before it was recorded done", chunk.label)
            return
        log.info(
            "chunk %s: %d sent, %d skipped, %d failed%s",
            chunk.label,
            len(report.sent),
            len(report.skipped),
            len(report.failed),
            f" (claim {chunk.claims}: done again after a worker stopped)"
            if chunk.claims > 1
            else "",
        )

    @contextmanager
    def _lease(self, chunk: Chunk, lost: threading.Event) -> Iterator[None]:
        """Renew the lease on ``chunk`` every quarter of its length, on a connection of its
        own, until the block ends; set ``lost`` once another worker may have taken it."""
        done = threading.Event()
        lease = self.settings.lease

        def renew() -> None:
            with open_store_for(self.config, self.world.environ) as own:
                queue = Queue(own)
                while not done.wait(lease / 4):
                    if not queue.renew(self.name, chunk, lease):
                        lost.set()
                        return

        thread = threading.Thread(target=renew, name=f"lease {chunk.label}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()


class Either:
    """Set when any of its events is: a worker's stop, or the loss of a chunk's lease."""

    def __init__(self, *events: threading.Event | None) -> None:
        self.events = [event for event in events if event is not None]

    def is_set(self) -> bool:
        """Is any of the events set?"""
        return any(event.is_set() for event in self.events)


def _with_missing(report: SendReport, missing: list[str], file: str) -> SendReport:
    """Add a skip for each address of the chunk this worker's profile file lacks."""
    if not missing:
        return report
    reason = (
        f"not in {file} on {socket.gethostname()}: every host must have the same profile "
        "file (deploy it with the config)"
    )
    skipped = report.skipped + tuple(SkippedItem(address, reason) for address in missing)
    return replace(report, skipped=skipped)


def merge(first: SendReport, reports: Sequence[SendReport]) -> SendReport:
    """One report of a whole run: ``first`` (the planning's skips) and every chunk's."""
    everything = [first, *reports]
    capped = next((r.capped for r in reports if r.capped is not None), None)
    return SendReport(
        tuple(item for r in everything for item in r.sent),
        tuple(item for r in everything for item in r.skipped),
        tuple(item for r in everything for item in r.failed),
        where=next((r.where for r in reports if r.where), ""),
        capped=capped,
        held=sum(r.held for r in reports),
    )


def encode(report: SendReport) -> str:
    """A chunk's report as the database keeps it."""
    capped = report.capped
    return json.dumps(
        {
            "sent": [[s.subscriber, list(s.papers), s.message_id, s.resent] for s in report.sent],
            "skipped": [
                [s.subscriber, s.reason, s.until.isoformat() if s.until else None]
                for s in report.skipped
            ],
            "failed": [[f.subscriber, f.error, f.code, f.permanent] for f in report.failed],
            "where": report.where,
            "held": report.held,
            "capped": [capped.limit, capped.cap, capped.resets_at.isoformat()] if capped else None,
        }
    )


def decode(text: str) -> SendReport:
    """A chunk's report read back."""
    data = json.loads(text)
    capped = data["capped"]
    return SendReport(
        tuple(SentItem(s, tuple(p), m, r) for s, p, m, r in data["sent"]),
        tuple(
            SkippedItem(s, r, datetime.fromisoformat(u) if u else None)
            for s, r, u in data["skipped"]
        ),
        tuple(FailedItem(*item) for item in data["failed"]),
        where=data["where"],
        capped=CapReached(capped[0], capped[1], datetime.fromisoformat(capped[2]))
        if capped
        else None,
        held=data["held"],
    )


def serve_worker(config: Config, world: World, stop: threading.Event) -> None:
    """``newsletter worker``: claim and send chunks of any run until ``stop``."""
    from newsletter.pipeline import Run

    if store_url(config, world.environ) == "sqlite":
        raise ConfigError(
            "workers share sends through PostgreSQL: set 'store: postgresql://...' in the "
            "config (and move the SQLite store there with newsletter migrate-store)"
        )
    name = worker_id("worker")
    with open_store_for(config, world.environ) as store:
        worker = Worker(store, Run(config, world, holder="worker", stop=stop), name)
        log.info("worker %s: waiting for chunks in %s", name, store.where)
        worker.work()
    log.info("worker %s: stopped", name)


def live_workers(config: Config, world: World) -> list[WorkerStatus]:
    """The workers seen within two leases."""
    with open_store_for(config, world.environ) as store:
        if store.db.dialect != "postgresql":
            return []
        return Queue(store).live(2 * config.workers.lease)
