"""The queue of shared runs in PostgreSQL: runs, their chunks (claimed with SELECT ... FOR
UPDATE SKIP LOCKED under a lease) and the live workers; a chunk's report as the database
keeps it."""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from newsletter.errors import LeaseLost
from newsletter.reports import (
    CapReached,
    FailedItem,
    SendReport,
    SentItem,
    SkippedItem,
    WorkerStatus,
)
from newsletter.store import postgres
from newsletter.store.papers import Store, shared_database
from newsletter.store.postgres import WORKERS

if TYPE_CHECKING:
    pass


CHANNEL = "newsletter_chunks"  # notified when a run opens and when one ends


_CLAIM = """
UPDATE send_chunks SET status = 'claimed', worker = ?, claims = claims + 1,
    lease_until = clock_timestamp() + make_interval(secs => ?)
WHERE (run, number) = (
    SELECT run, number FROM send_chunks
    WHERE (status = 'queued' OR (status = 'claimed' AND (lease_until < clock_timestamp()
            OR NOT {ALIVE} OR worker = ?)))
        {RUN}
    ORDER BY run, number LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING run, number, subscribers, claims
"""


# More queued chunks of the claimed one's run, for the same claim (``Queue.claim``).
_CLAIM_MORE = """
UPDATE send_chunks SET status = 'claimed', worker = ?, claims = claims + 1,
    lease_until = clock_timestamp() + make_interval(secs => ?)
WHERE (run, number) IN (
    SELECT run, number FROM send_chunks WHERE run = ? AND status = 'queued'
    ORDER BY number LIMIT ? FOR UPDATE SKIP LOCKED)
RETURNING number, subscribers, claims
"""


_CHUNK_WORKER_ALIVE = postgres.alive("send_chunks.worker")
_WORKER_ALIVE = postgres.alive("workers.id")


@dataclass(frozen=True)
class Chunk:
    """What one claim took: chunks of one run (their numbers and addresses), and the run's
    moment and options. Sent as one, and recorded done together."""

    run: str
    numbers: tuple[int, ...]
    subscribers: tuple[str, ...]
    claims: int  # 1 the first time; more when it is done again after a worker died
    as_of: datetime
    retry_failed: bool

    @property
    def label(self) -> str:
        """How logs name the chunk (several: the first and the last)."""
        first, last = self.numbers[0], self.numbers[-1]
        return f"{self.run[:8]}/{first}" + (f"-{last}" if last != first else "")


class Queue:
    """The runs, chunks and workers tables of a PostgreSQL store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db

    def open_run(
        self, run: str, as_of: datetime, holder: str, retry_failed: bool, chunks: list[list[str]]
    ) -> None:
        """Record a run and its chunks, queued, in one transaction; wake idle workers."""
        options = json.dumps({"retry_failed": retry_failed})
        with self.db.transaction() as db:
            opened = db.execute(
                "INSERT INTO send_runs (id, started, as_of, holder, options, chunks) "
                "VALUES (?, clock_timestamp(), ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (run, as_of.isoformat(), holder, options, len(chunks)),
            )
            if opened.rowcount == 0:  # (recorded by a try whose commit's answer was lost)
                return
            db.executemany(
                "INSERT INTO send_chunks (run, number, subscribers, status, claims) "
                "VALUES (?, ?, ?, 'queued', 0)",
                ((run, number, json.dumps(chunk)) for number, chunk in enumerate(chunks)),
            )
            db.execute(f"NOTIFY {CHANNEL}")

    def claim(self, worker: str, lease: int, run: str | None = None, most: int = 1) -> Chunk | None:
        """Take the first chunk that is queued or whose lease ran out (of ``run`` only, if
        given) for ``lease`` seconds, and with it more queued chunks of its run, up to
        ``most`` subscribers in all: half this worker's share of what is queued (guided
        scheduling: big claims while much is left, single chunks at the end, so the
        workers finish together). None when there is none.

        Each chunk cost its worker ~75 ms of planning, matching start-up and waiting on the
        database, during which its rendering workers idled (bench/workers.py)."""
        sql = _CLAIM.format(RUN="AND run = ?" if run else "", ALIVE=_CHUNK_WORKER_ALIVE)
        with self.db.transaction() as db:
            # (a worker claiming its own chunk lost it to a lost connection: it is idle)
            params = (worker, lease, WORKERS, worker, *([run] if run else []))
            row = db.execute(sql, params).fetchone()
            if row is None:
                return None
            run_id, number, subscribers, claims = row
            taken = [(number, json.loads(subscribers), claims)]
            more = self._more(db, run_id, most // max(len(taken[0][1]), 1) - 1)
            if more:
                rows = db.execute(_CLAIM_MORE, (worker, lease, run_id, more)).fetchall()
                taken += sorted((n, json.loads(subs), c) for n, subs, c in rows)
            as_of, options = db.execute(
                "SELECT as_of, options FROM send_runs WHERE id = ?", (run_id,)
            ).fetchone()
            chunk = Chunk(
                run_id,
                tuple(n for n, _, _ in taken),
                tuple(address for _, subs, _ in taken for address in subs),
                max(c for _, _, c in taken),
                datetime.fromisoformat(as_of),
                bool(json.loads(options).get("retry_failed")),
            )
            db.execute(
                "UPDATE workers SET chunk = ?, seen = clock_timestamp() WHERE id = ?",
                (chunk.label, worker),
            )
        return chunk

    def _more(self, db: Any, run: str, most: int) -> int:
        """How many more queued chunks of ``run`` one claim takes (at most ``most``)."""
        if most < 1:
            return 0
        queued = db.execute(
            "SELECT count(*) FROM send_chunks WHERE run = ? AND status = 'queued'", (run,)
        ).fetchone()[0]
        live = db.execute(f"SELECT count(*) FROM workers WHERE {_WORKER_ALIVE}", (WORKERS,))
        workers = max(int(live.fetchone()[0]), 1)
        return min(most, int(queued) // (2 * workers))

    def renew(self, worker: str, chunk: Chunk, lease: int) -> bool:
        """Extend the lease on ``chunk``; False when it is no longer this worker's."""
        cursor = self.db.execute(
            "UPDATE send_chunks SET lease_until = clock_timestamp() + make_interval(secs => ?) "
            "WHERE run = ? AND number = ANY(?) AND worker = ? AND status = 'claimed' "
            "AND lease_until > clock_timestamp()",
            (lease, chunk.run, list(chunk.numbers), worker),
        )
        self.seen(worker)
        return cursor.rowcount == len(chunk.numbers)

    def fence(self, worker: str, chunk: Chunk) -> Callable[[Any], None]:
        """The check each pending batch makes in its transaction: the chunk is still this
        worker's and its lease runs (the row stays locked until the batch is recorded)."""

        def check(db: Any) -> None:
            if not _held(db, worker, chunk):
                raise LeaseLost(
                    f"the lease on chunk {chunk.label} ran out and another worker took it over"
                )

        return check

    def finish(self, worker: str, chunk: Chunk, report: SendReport) -> bool:
        """Record ``chunk`` done with its report; False when another worker had taken it."""
        with self.db.transaction() as db:
            if not _held(db, worker, chunk, lease_ended=True):
                return False
            # The report on the first chunk; the others' are empty (a run's reports merge).
            db.execute(
                "UPDATE send_chunks SET status = 'done', worker = ?, "
                "report = CASE WHEN number = ? THEN ? ELSE ? END, "
                "finished = clock_timestamp(), lease_until = NULL "
                "WHERE run = ? AND number = ANY(?)",
                (
                    worker,
                    chunk.numbers[0],
                    encode(report),
                    encode(SendReport((), (), ())),
                    chunk.run,
                    list(chunk.numbers),
                ),
            )
            db.execute(
                "UPDATE workers SET chunk = NULL, chunks_done = chunks_done + ?, "
                "messages = messages + ?, seen = clock_timestamp() WHERE id = ?",
                (len(chunk.numbers), len(report.sent), worker),
            )
            ended = db.execute(
                "UPDATE send_runs SET finished = clock_timestamp() WHERE id = ? AND finished "
                "IS NULL AND NOT EXISTS (SELECT 1 FROM send_chunks WHERE run = ? AND status "
                "<> 'done')",
                (chunk.run, chunk.run),
            )
            if ended.rowcount:  # (the sender waiting for the run's end hears it at once)
                db.execute(f"NOTIFY {CHANNEL}")
        return True

    def release(self, worker: str, chunk: Chunk) -> None:
        """Hand ``chunk`` back, queued, for another worker to do (this one is stopping)."""
        self.db.execute(
            "UPDATE send_chunks SET status = 'queued', worker = NULL, lease_until = NULL "
            "WHERE run = ? AND number = ANY(?) AND worker = ? AND status = 'claimed'",
            (chunk.run, list(chunk.numbers), worker),
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
        """Note a worker as live, and hold its session's lock (see ``postgres.ALIVE``), on
        each new connection too."""
        shared_database(self.store).keep(("worker", worker), lambda: self._join(worker))

    def _join(self, worker: str) -> None:
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
        shared_database(self.store).forget(("worker", worker))
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


def _held(db: Any, worker: str, chunk: Chunk, lease_ended: bool = False) -> bool:
    """Are all of ``chunk``'s chunks still ``worker``'s, under a lease that runs (or
    ran out, if ``lease_ended``: nobody took them over)? Their rows stay locked until
    the transaction ends."""
    rows = db.execute(
        "SELECT worker = ? AND status = 'claimed' "
        "AND (? OR lease_until > clock_timestamp()) "
        "FROM send_chunks WHERE run = ? AND number = ANY(?) FOR UPDATE",
        (worker, lease_ended, chunk.run, list(chunk.numbers)),
    ).fetchall()
    return len(rows) == len(chunk.numbers) and all(row[0] for row in rows)


def worker_id(role: str) -> str:
    """A new worker's id: host, process and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{role}:{uuid.uuid4().hex[:6]}"


def merge(first: SendReport, reports: Sequence[SendReport]) -> SendReport:
    """One report of a whole run: ``first`` (the planning's skips) and every chunk's, each
    subscriber once: sent over failed over skipped by a chunk over skipped by the plan (a
    chunk done again lists what its first claim sent; a run that finished an earlier one
    meets its subscribers again)."""
    everything = [*reports, first]
    listed: set[str] = set()

    def once(items: Iterable) -> tuple:
        kept = []
        for item in items:
            key = item.subscriber.casefold()
            if key not in listed:
                listed.add(key)
                kept.append(item)
        return tuple(kept)

    sent = once(item for r in everything for item in r.sent)
    failed = once(item for r in everything for item in r.failed)
    skipped = once(item for r in everything for item in r.skipped)
    capped = next((r.capped for r in reports if r.capped is not None), None)
    return SendReport(
        sent,
        skipped,
        failed,
        where=next((r.where for r in reports if r.where), ""),
        capped=capped,
        held=sum(r.held for r in reports),
        stopped=any(r.stopped for r in reports),
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
            "failed": [
                [f.subscriber, f.error, f.code, f.permanent, f.refusal] for f in report.failed
            ],
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


@dataclass(frozen=True)
class RunChunk:
    """A chunk of a run shared by workers (PostgreSQL): the run's id and moment (every chunk
    is made as of it), and the fence of the chunk's lease (raises once it is lost)."""

    run: str
    as_of: datetime
    fence: Callable[[Any], None]
