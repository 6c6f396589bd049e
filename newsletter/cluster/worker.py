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

from newsletter.config.settings import Config, WorkerSettings
from newsletter.errors import BusyError, ConfigError, LeaseLost, NewsletterError
from newsletter.models import (
    CapReached,
    FailedItem,
    SendReport,
    SentItem,
    SkippedItem,
    Subscriber,
)
from newsletter.profiles.load import Profiles
from newsletter.store import postgres
from newsletter.store.papers import Store, is_shared_store, open_store_for, shared_database
from newsletter.store.postgres import WORKERS

if TYPE_CHECKING:
    from newsletter.send.run import Run
    from newsletter.world import World

log = logging.getLogger("newsletter.worker")
CHANNEL = "newsletter_chunks"  # notified when a run opens and when one ends

_CLAIM = """
UPDATE send_chunks SET status = 'claimed', worker = ?, claims = claims + 1,
    lease_until = clock_timestamp() + make_interval(secs => ?)
WHERE (run, number) = (
    SELECT run, number FROM send_chunks
    WHERE (status = 'queued' OR (status = 'claimed' AND (lease_until < clock_timestamp()
            OR NOT {ALIVE})))
        {RUN}
    ORDER BY run, number LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING run, number, subscribers, claims
"""

_CHUNK_WORKER_ALIVE = postgres.alive("send_chunks.worker")


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
            db.execute(f"NOTIFY {CHANNEL}")

    def claim(self, worker: str, lease: int, run: str | None = None) -> Chunk | None:
        """Take the first chunk that is queued or whose lease ran out (of ``run`` only, if
        given) for ``lease`` seconds; None when there is none."""
        sql = _CLAIM.format(RUN="AND run = ?" if run else "", ALIVE=_CHUNK_WORKER_ALIVE)
        with self.db.transaction() as db:
            params = (worker, lease, WORKERS, *([run] if run else []))
            row = db.execute(sql, params).fetchone()
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
            ended = db.execute(
                "UPDATE send_runs SET finished = clock_timestamp() WHERE id = ? AND finished "
                "IS NULL AND NOT EXISTS (SELECT 1 FROM send_chunks WHERE run = ? AND status "
                "<> 'done')",
                (chunk.run, chunk.run),
            )
            if ended.rowcount:  # (the sender waiting for the run's end hears it at once)
                db.execute(f"NOTIFY {CHANNEL}")
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

    def reports(self, run: str, since: datetime | None = None) -> list[SendReport]:
        """The reports of the chunks of ``run`` done so far (since ``since``, a time of
        the server's clock), in chunk order."""
        rows = self.db.execute(
            "SELECT report FROM send_chunks WHERE run = ? AND status = 'done' "
            "AND finished >= coalesce(?::timestamptz, '-infinity') ORDER BY number",
            (run, since),
        )
        return [decode(row[0]) for row in rows]

    def unfinished(self) -> list[str]:
        """The runs with chunks not done, oldest first."""
        rows = self.db.execute(
            "SELECT id FROM send_runs WHERE finished IS NULL ORDER BY started, id"
        )
        return [row[0] for row in rows]

    def clock(self) -> datetime:
        """The database server's time (leases and chunk times are on its clock)."""
        return self.db.execute("SELECT clock_timestamp()").fetchone()[0]

    def join(self, worker: str) -> None:
        """Note a worker as live, and hold its session's lock (see ``postgres.ALIVE``)."""
        self.db.execute("SELECT pg_advisory_lock_shared(?, hashtext(?))", (WORKERS, worker))
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
        """A worker stopping (one killed is forgotten by ``live``: its session is gone)."""
        self.db.execute("DELETE FROM workers WHERE id = ?", (worker,))
        self.db.execute("SELECT pg_advisory_unlock_shared(?, hashtext(?))", (WORKERS, worker))

    def live(self) -> list[WorkerStatus]:
        """The workers whose session is alive; those that died (killed: they could not
        leave) are forgotten."""
        alive = postgres.alive("workers.id")
        self.db.execute(f"DELETE FROM workers WHERE NOT {alive}", (WORKERS,))
        rows = self.db.execute(
            "SELECT id, host, pid, started, seen, chunk, chunks_done, messages FROM workers "
            "ORDER BY host, pid, id"
        )
        return [WorkerStatus(*row) for row in rows]


def worker_id(role: str) -> str:
    """A new worker's id: host, process and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{role}:{uuid.uuid4().hex[:6]}"


def coordinate(run: Run, store: Store, subscribers: Sequence[Subscriber]) -> SendReport:
    """Carry out ``run`` as a shared run: finish the runs an earlier sender left (it died,
    or was stopped), plan this one, queue its chunks, work on them beside any workers, and
    return once all are done, with every chunk's report merged."""
    from newsletter.send.run import Share

    db = shared_database(store)
    if not db.try_lock(postgres.SEND_LOCK):
        raise BusyError(
            f"another send, or the scheduler of `newsletter run`, is sending from {store.where}"
            "; wait for it to finish (newsletter workers shows its progress) and run again"
        )
    try:
        queue = Queue(store)
        worker = Worker(store, run, worker_id(run.holder))
        try:
            reports = _finish_earlier(queue, worker)
            as_of = run.world.now()
            run_id = run.id or uuid.uuid4().hex
            planning = replace(run, share=Share(run_id, as_of, _no_fence))
            skipped, addresses = planning.plan(store, subscribers)
            if addresses and not worker.stopping:
                size = run.config.workers.chunk_size
                chunks = [addresses[i : i + size] for i in range(0, len(addresses), size)]
                queue.open_run(run_id, as_of, run.holder, run.retry_failed, chunks)
                worker.work([run_id])
                reports += queue.reports(run_id)
        finally:
            worker.leave()
        return merge(skipped, [*reports, *worker.handed_back])
    finally:
        db.unlock(postgres.SEND_LOCK)


def _finish_earlier(queue: Queue, worker: Worker) -> list[SendReport]:
    """Work the runs left unfinished (their sender died or was stopped; the lock says none
    is coordinating them now) to the end; the reports of the chunks done meanwhile."""
    since = queue.clock()
    runs = queue.unfinished()
    for run_id in runs:
        log.info("finishing run %s, left unfinished by an earlier send", run_id[:8])
    worker.work(runs)
    return [report for run_id in runs for report in queue.reports(run_id, since)]


def _no_fence(db: Any) -> None:
    """Planning records no digest: nothing to fence."""


class Worker:
    """Claims chunks and sends them: for one run (``send``) or any (``newsletter worker``).

    ``base`` gives what each chunk's Run takes from its caller (stop event, transport, retry
    policy, progress callback)."""

    def __init__(self, store: Store, base: Run, name: str) -> None:
        from newsletter.send.wiring import make_renderer

        self.config = base.config
        self.world = base.world
        self.renderer = make_renderer(self.config, self.world.environ)  # (once, not a chunk)
        self.store = store
        self.base = base
        self.name = name
        self.queue = Queue(store)
        self.settings: WorkerSettings = self.config.workers
        self.handed_back: list[SendReport] = []  # what chunks handed back had sent
        self._loaded: tuple[object, Profiles, dict[str, Subscriber]] | None = None
        self.queue.join(name)  # (listed by `newsletter workers` from here on)
        shared_database(store).listen(CHANNEL)

    @property
    def stopping(self) -> bool:
        return self.base.stop is not None and self.base.stop.is_set()

    def work(self, runs: Sequence[str] | None = None) -> None:
        """Claim and send chunks of ``runs`` until each is done, in turn (None: of any run,
        until stopped)."""
        for run in runs if runs is not None else [None]:
            while not self.stopping:
                chunk = self.queue.claim(self.name, self.settings.lease, run)
                if chunk is not None:
                    self.send(chunk)
                elif run is not None and self.queue.left(run) == 0:
                    break
                else:
                    self._idle()

    def leave(self) -> None:
        """No longer listed as live (``newsletter workers``)."""
        self.queue.leave(self.name)

    def _idle(self) -> None:
        """Until a run opens or ends (a notification), or ``poll`` seconds pass (a lease
        may have run out meanwhile)."""
        shared_database(self.store).wait(self.settings.poll)

    def send(self, chunk: Chunk) -> None:
        """Send one claimed chunk under a renewed lease, then record it done."""
        from newsletter.send.run import Run, Share

        profiles, known = self._profiles()
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
                    self._give_back(chunk)
                    raise
                log.warning("chunk %s: %s; left to the worker that took it over", chunk.label, exc)
                return
            except BaseException:
                self._give_back(chunk)
                raise
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

    def _profiles(self) -> tuple[Profiles, dict[str, Subscriber]]:
        """The profile file and its subscribers by address, loaded again only when the
        file changed (a chunk after another would otherwise load it each time)."""
        from newsletter.profiles.cache import profiles_of

        path = self.config.subscribers
        stat = path.stat() if path.exists() else None
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino) if stat else None
        if self._loaded is None or self._loaded[0] != stamp or stamp is None:
            profiles = profiles_of(self.config)
            known = {s.email.casefold(): s for s in profiles.subscribers}
            self._loaded = (stamp, profiles, known)
        return self._loaded[1], self._loaded[2]

    def _give_back(self, chunk: Chunk) -> None:
        """After a failure: hand ``chunk`` back at once rather than when its lease ends (if
        the database still answers; if not, the lease ends)."""
        try:
            self.queue.release(self.name, chunk)
        except Exception:
            log.debug("handing chunk %s back failed", chunk.label, exc_info=True)

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
    served = {item.subscriber for r in reports for item in (*r.sent, *r.failed)}
    # (a run that finished an earlier one: who that one served, this one's plan skipped)
    first = replace(first, skipped=tuple(s for s in first.skipped if s.subscriber not in served))
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
    from newsletter.send.run import Run

    if not is_shared_store(config, world.environ):
        raise ConfigError(
            "workers share sends through PostgreSQL: set 'store: postgresql://...' in the "
            "config (and move the SQLite store there with newsletter migrate-store)"
        )
    name = worker_id("worker")
    with open_store_for(config, world.environ) as store:
        worker = Worker(store, Run(config, world, holder="worker", stop=stop), name)
        log.info("worker %s: waiting for chunks in %s", name, store.where)
        try:
            worker.work()
        finally:
            worker.leave()
    log.info("worker %s: stopped", name)


def live_workers(config: Config, world: World) -> list[WorkerStatus]:
    """The live workers (none on SQLite)."""
    with open_store_for(config, world.environ) as store:
        if store.db.shared() is None:
            return []
        return Queue(store).live()
