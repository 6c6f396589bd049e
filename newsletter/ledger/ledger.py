"""The delivery ledger: what was sent to whom, in the store's file.

A digest is recorded as *pending* (its Message-ID, subscriber and papers in order) before it
is handed over, a batch of them in one commit, and as *sent* as soon as the server accepted
it (with those accepted at the same time, in one commit); so a crash leaves at most the
digests that were on their way, and the next run hands those over again: the same
Message-ID, the same papers, rendered again from the record (``send.sending``). The bytes
themselves are not stored: writing ~50 KB per message twice cost more than rendering it
(bench/ledger.py). Rows written before that keep their bytes and are resent byte for byte.
``DryRunLedger`` reads the same history and records nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from newsletter.ledger.link_keys import keep_keys, unknown_keys
from newsletter.matching.explained import unpack
from newsletter.models import History, Refused, SentDigest
from newsletter.render.envelope import digest_key
from newsletter.render.tokens import Signer
from newsletter.store.papers import Store, rows_among
from newsletter.store.schema import pack_papers, unpack_papers


@dataclass(frozen=True, slots=True)
class Pending:
    """A digest handed to delivery but not (known to be) accepted yet."""

    message_id: str
    subscriber: str  # casefolded address
    data: bytes | None  # the bytes, for rows recorded before schema 7; None: render again
    paper_ids: tuple[str, ...]  # in the order sent
    attempts: int
    created_at: datetime  # the digest's Date


@dataclass(frozen=True, slots=True)
class Handover:
    """A new digest about to be handed over, as the ledger records it first."""

    message_id: str
    subscriber: str
    paper_ids: tuple[str, ...]
    explained: bytes | None = None  # what matched (``matching.explained``, packed)


class Ledger:
    """What was sent to whom: the ``deliveries`` tables of a Store.

    A chunk of a shared run (``workers``) gives its ``run``: each digest records it, and the
    store refuses a second digest for a subscriber in one run. ``fence`` is called inside
    each pending batch's transaction and raises when the chunk's lease was lost, so nothing
    more is handed over by a worker another has replaced."""

    def __init__(
        self, store: Store, run: str | None = None, fence: Callable[[Any], None] | None = None
    ) -> None:
        self.store = store
        self.db = store.db
        self.run = run
        self.fence = fence

    def history(
        self,
        retry_failed: bool = False,
        since: datetime | None = None,
        only: Sequence[str] | None = None,
    ) -> dict[str, History]:
        """Per subscriber (casefolded address; ``only`` these, if given): when the last
        digest was accepted, the papers not to offer again (sent, pending, and failed unless
        ``retry_failed``; only those first seen after ``since``, if given), and when sends
        saw and served them."""
        blocked = ("sent", "pending") if retry_failed else ("sent", "pending", "failed")
        marks = ",".join("?" * len(blocked))
        last: dict[str, datetime | None] = {}
        papers: dict[str, set[str]] = {}
        for subscriber, sent_at in self._among(
            "SELECT subscriber, max(sent_at) FROM deliveries WHERE status = 'sent' {AND} "
            "GROUP BY subscriber",
            "subscriber",
            (),
            only,
        ):
            last[subscriber] = datetime.fromisoformat(sent_at)
        recent = self._first_seen_after(since) if since else None
        for subscriber, packed in self._among(
            f"SELECT subscriber, papers FROM deliveries WHERE status IN ({marks}) {{AND}}",
            "subscriber",
            blocked,
            only,
        ):
            offered = unpack_papers(packed)
            if recent is not None:
                offered = tuple(paper for paper in offered if paper in recent)
            papers.setdefault(subscriber, set()).update(offered)
        seen = {
            subscriber: (moment(first), moment(served))
            for subscriber, first, served in self._among(
                "SELECT subscriber, first_seen, last_served FROM subscribers WHERE 1 = 1 {AND}",
                "subscriber",
                (),
                only,
            )
        }
        refused = {} if retry_failed else self._refused(last, only)
        return {
            subscriber: History(
                last.get(subscriber),
                frozenset(papers.get(subscriber, ())),
                *seen.get(subscriber, (None, None)),
                refused.get(subscriber),
            )
            for subscriber in last.keys() | papers.keys() | seen.keys()
        }

    def _refused(
        self, last: dict[str, datetime | None], only: Sequence[str] | None
    ) -> dict[str, Refused]:
        """Per subscriber whose newest digest was refused for good after their last one
        went out: that refusal (few rows: a refusal for good is rare)."""
        newest: dict[str, Refused] = {}
        for subscriber, updated, error, packed in self._among(
            "SELECT subscriber, updated_at, last_error, papers FROM deliveries"
            " WHERE status = 'failed' {AND}",
            "subscriber",
            (),
            only,
        ):
            at = datetime.fromisoformat(updated)
            sent_at = last.get(subscriber)
            if (sent_at is None or at > sent_at) and (
                subscriber not in newest or at > newest[subscriber].at
            ):
                papers = len(unpack_papers(packed))
                newest[subscriber] = Refused(at, error or "refused", papers)
        return newest

    def _first_seen_after(self, since: datetime) -> frozenset[str]:
        rows = self.db.execute("SELECT id FROM papers WHERE first_seen > ?", (since.isoformat(),))
        return frozenset(row[0] for row in rows)

    def record_seen(self, subscribers: Sequence[str], now: datetime) -> None:
        """Note the subscribers no send has seen before (their schedule starts now)."""
        with self._writing() as db:
            db.executemany(
                "INSERT INTO subscribers (subscriber, first_seen) VALUES (?, ?)"
                " ON CONFLICT DO NOTHING",
                ((email.casefold(), now.isoformat()) for email in subscribers),
            )

    def record_link_keys(self, signer: Signer, subscribers: Sequence[str], now: datetime) -> None:
        """Keep the link keys of these subscribers that the store lacks (their digests'
        links name them by key)."""
        keys = unknown_keys(self.db, signer, subscribers)
        if keys:
            with self._writing() as db:
                keep_keys(db, keys, now)

    def record_served(self, subscribers: Sequence[str], now: datetime) -> None:
        """These subscribers were served now: given a digest, or found to have none."""
        with self._writing() as db:
            _served(db, [email.casefold() for email in subscribers], now.isoformat())

    def _among(
        self, sql: str, column: str, params: Sequence[object], only: Sequence[str] | None
    ) -> list[tuple]:
        return rows_among(self.db, sql, column, params, only)

    def pending(self, only: Sequence[str] | None = None) -> list[Pending]:
        """Digests recorded as pending (crashed or deferred runs; of ``only`` these
        subscribers, if given), oldest first."""
        rows = self._among(
            "SELECT message_id, subscriber, data, attempts, created_at, papers FROM deliveries "
            "WHERE status = 'pending' {AND}",
            "subscriber",
            (),
            only,
        )
        rows.sort(key=lambda row: (row[4], row[0]))
        return [
            Pending(
                message_id,
                subscriber,
                bytes(data) if data is not None else None,
                unpack_papers(packed),
                attempts,
                datetime.fromisoformat(created),
            )
            for message_id, subscriber, data, attempts, created, packed in rows
        ]

    def sent_since(self, start: datetime) -> list[datetime]:
        """When each digest accepted after ``start`` was accepted, oldest first (what the
        caps of ``smtp.rate`` count)."""
        stamp = start.isoformat()
        if self.db.shared() is None:
            rows = self.db.execute(_SENT_SINCE, (stamp,)).fetchall()
        else:  # (no index on sent_at there: see _SENT_SINCE_IN_RUNS)
            rows = self.db.execute(_SENT_SINCE_IN_RUNS, (start, stamp, stamp)).fetchall()
        return sorted(datetime.fromisoformat(row[0]) for row in rows)

    def _papers(self, message_id: str) -> tuple[str, ...]:
        row = self.db.execute(
            "SELECT papers FROM deliveries WHERE message_id = ?", (message_id,)
        ).fetchone()
        return unpack_papers(row[0]) if row else ()

    def record_pending(self, digests: Sequence[Handover], now: datetime) -> None:
        """Before handing digests to the server: each, with its papers in order, in one
        commit (and their subscribers count as served). One row a digest: its papers are
        packed into it (``store.pack_papers``)."""
        stamp = now.isoformat()
        keys = [digest.subscriber.casefold() for digest in digests]
        run = self.run
        with self._writing() as db:
            if self.fence is not None:
                self.fence(db)
            _served(db, keys, stamp)
            db.executemany(
                "INSERT INTO deliveries (message_id, subscriber, status, created_at, updated_at,"
                " run, papers, explained_packed) VALUES (?, ?, 'pending', ?, ?, ?, ?, ?)"
                " ON CONFLICT (message_id) DO UPDATE SET status = 'pending',"
                " created_at = excluded.created_at, updated_at = excluded.updated_at,"
                " data = NULL, run = excluded.run, papers = excluded.papers,"
                " explained = NULL, explained_packed = excluded.explained_packed",
                (
                    (d.message_id, key, stamp, stamp, run, pack_papers(d.paper_ids), d.explained)
                    for d, key in zip(digests, keys, strict=True)
                ),
            )

    def done_in_run(self, only: Sequence[str]) -> dict[str, tuple[str, str, str | None]]:
        """Of ``only`` these subscribers, those whose digest of this run was accepted or
        failed for good (a chunk done again after its worker died): subscriber ->
        (message id, status, error)."""
        if self.run is None:
            return {}
        rows = self._among(
            "SELECT subscriber, message_id, status, last_error FROM deliveries "
            "WHERE run = ? AND status IN ('sent', 'failed') {AND}",
            "subscriber",
            (self.run,),
            only,
        )
        return {
            subscriber: (message_id, status, error)
            for subscriber, message_id, status, error in rows
        }

    def sent_in_runs(self, runs: Sequence[str]) -> set[str]:
        """The subscribers (casefolded) whose digest of one of ``runs`` was accepted."""
        marks = ",".join("?" * len(runs))
        if not runs:
            return set()
        rows = self.db.execute(
            f"SELECT subscriber FROM deliveries WHERE status = 'sent' AND run IN ({marks})",
            tuple(runs),
        )
        return {row[0] for row in rows}

    def papers_of(self, message_id: str) -> tuple[str, ...]:
        """The papers of a recorded digest, in the order sent."""
        return self._papers(message_id)

    def record_retry(self, message_id: str, now: datetime) -> None:
        """A pending digest is about to be handed over again: a write that must succeed
        first, so that a ledger that cannot be written gets no more copies out."""
        with self._writing() as db:
            db.execute(  # (and now of this run, if any: the run that hands it over)
                "UPDATE deliveries SET updated_at = ?, run = coalesce(?, run) WHERE message_id = ?",
                (now.isoformat(), self.run, message_id),
            )

    def record_sent(self, accepted: Sequence[tuple[str, int]], now: datetime) -> None:
        """The server accepted these digests (message id, attempts), in one commit: their
        papers count as sent from now on."""
        stamp = now.isoformat()
        # Relaxed: a record lost to a crash of the database's machine leaves its digest
        # pending, handed over again as it was (the same Message-ID and bytes), as after a
        # kill between acceptance and record (send.sending._HeldResults); the pending
        # record before the hand-over is what must be on disk. Waiting for the disk took
        # a PostgreSQL send ~8 ms a batch (bench/workers.py).
        with self._writing(relaxed=True) as db:
            db.executemany(
                "UPDATE deliveries SET status = 'sent', attempts = attempts + ?, sent_at = ?,"
                " updated_at = ?, last_error = NULL, code = NULL, data = NULL"
                " WHERE message_id = ?",
                ((attempts, stamp, stamp, message_id) for message_id, attempts in accepted),
            )

    def record_failure(
        self,
        message_id: str,
        attempts: int,
        error: str,
        code: int | None,
        permanent: bool,
        now: datetime,
    ) -> None:
        """A permanent failure is not retried (unless asked); a transient one stays pending."""
        status = "failed" if permanent else "pending"
        with self._writing() as db:
            db.execute(
                "UPDATE deliveries SET status = ?, attempts = attempts + ?, last_error = ?,"
                " code = ?, updated_at = ?,"
                " data = CASE WHEN ? = 'failed' THEN NULL ELSE data END WHERE message_id = ?",
                (status, attempts, error, code, now.isoformat(), status, message_id),
            )

    def _writing(self, relaxed: bool = False) -> AbstractContextManager:
        """Where the record methods write: one transaction of the store each."""
        return self.store.transaction(relaxed)

    def digests_of(self, subscriber: str) -> list[SentDigest]:
        """``subscriber``'s digests, newest first, each with its papers in the order sent."""
        rows = self.db.execute(
            "SELECT message_id, status, created_at, sent_at, last_error, papers, explained,"
            " explained_packed FROM deliveries"
            " WHERE subscriber = ? ORDER BY created_at DESC, message_id",
            (subscriber.casefold(),),
        ).fetchall()
        return [self._digest(*row) for row in rows]

    def digest(self, key: str) -> tuple[str, SentDigest] | None:
        """The digest whose key (``envelope.digest_key``) is ``key``, with its subscriber."""
        row = self.db.execute(
            "SELECT subscriber, message_id, status, created_at, sent_at, last_error, papers, "
            "explained, explained_packed "
            "FROM deliveries WHERE message_id >= ? AND message_id < ? LIMIT 1",
            (f"<digest.{key}@", f"<digest.{key}A"),  # "A" sorts after "@"
        ).fetchone()
        if row is None:
            return None
        return row[0], self._digest(*row[1:])

    def _digest(
        self,
        message_id: str,
        status: str,
        created: str,
        sent: str | None,
        error: str | None,
        packed: str | None,
        explained: str | None,
        packed_explained: bytes | None,
    ) -> SentDigest:
        return SentDigest(
            message_id=message_id,
            key=digest_key(message_id),
            status=status,
            created_at=datetime.fromisoformat(created),
            sent_at=moment(sent),
            papers=unpack_papers(packed),
            error=error,
            explained=explained if explained is not None else unpack(packed_explained),
        )

    def totals(self) -> dict[str, tuple[datetime | None, int]]:
        """Per subscriber: when their last digest was accepted, and how many papers sent."""
        rows = self.db.execute(
            "SELECT subscriber, sent_at, papers FROM deliveries WHERE status = 'sent'"
        )
        last: dict[str, str] = {}
        counts: dict[str, int] = {}
        for key, sent_at, packed in rows:
            last[key] = max(last.get(key, sent_at), sent_at)
            counts[key] = counts.get(key, 0) + len(unpack_papers(packed))
        return {key: (moment(last[key]), counts[key]) for key in last}

    def rows(self, subscriber: str | None = None) -> list[dict[str, object]]:
        """Ledger rows per subscriber and paper (for reports and tests)."""
        where, args = (
            ("WHERE d.subscriber = ?", (subscriber.casefold(),)) if subscriber else ("", ())
        )
        cursor = self.db.execute(
            "SELECT subscriber, message_id, status, attempts, sent_at, last_error, code, papers"
            f" FROM deliveries d {where}",
            args,
        )
        rows = [
            {
                "subscriber": key,
                "paper_id": paper,
                "message_id": message_id,
                "status": status,
                "attempts": attempts,
                "sent_at": sent_at,
                "last_error": error,
                "code": code,
            }
            for key, message_id, status, attempts, sent_at, error, code, packed in cursor
            for paper in unpack_papers(packed)
        ]
        return sorted(rows, key=lambda row: (row["subscriber"], row["paper_id"], row["message_id"]))


_SENT_SINCE = "SELECT sent_at FROM deliveries WHERE status = 'sent' AND sent_at > ?"


# A shared store (PostgreSQL) indexes neither status nor sent_at, so that recording a
# digest accepted updates its row in place (a HOT update: no index touched; 300 bytes of
# WAL a message less, bench/workers.py). Every digest there is handed over by a run, and
# its row names the last run that handed it over: one accepted after ``start`` is in a run
# not finished before it; the rows of no run (copied from SQLite) have an index of their own.
_SENT_SINCE_IN_RUNS = """
SELECT d.sent_at FROM send_runs r JOIN deliveries d ON d.run = r.id
WHERE (r.finished IS NULL OR r.finished > ?) AND d.status = 'sent' AND d.sent_at > ?
UNION ALL
SELECT sent_at FROM deliveries WHERE run IS NULL AND status = 'sent' AND sent_at > ?
"""


def _served(db, keys: Sequence[str], stamp: str) -> None:
    # An update, then an insert of those still missing (none, as a rule: a send records
    # whom it sees first): an upsert that updates locks and confirms each row as it goes,
    # 150 bytes of PostgreSQL's WAL a message more (bench/workers.py).
    db.executemany(
        "UPDATE subscribers SET last_served = ? WHERE subscriber = ?",
        ((stamp, key) for key in keys),
    )
    db.executemany(
        "INSERT INTO subscribers VALUES (?, ?, ?) ON CONFLICT (subscriber) DO NOTHING",
        ((key, stamp, stamp) for key in keys),
    )


def moment(stamp: str | None) -> datetime | None:
    """A stored ISO 8601 stamp as a datetime (None stays None)."""
    return datetime.fromisoformat(stamp) if stamp else None


class DryRunLedger(Ledger):
    """Reads what was sent like a Ledger; records nothing (``send --dry-run``)."""

    @contextmanager
    def _writing(self, relaxed: bool = False) -> Iterator[_Discard]:
        yield _Discard()


class _Discard:
    """Takes a ledger's writes and keeps none of them."""

    def execute(self, *args: object) -> None:
        """Nothing is written."""

    def executemany(self, *args: object) -> None:
        """Nothing is written."""
