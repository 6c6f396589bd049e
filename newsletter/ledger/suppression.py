"""What subscribers decide, kept in the store where no edit of subscribers.yaml reaches it.

The suppression list names addresses never to be mailed (unsubscribed, bounced, complained)
until the suppression is lifted by ``resubscribe`` or by the subscriber's own click. Every
change is also an event, and so is each soft bounce (they add up to a suppression); feedback
on papers is kept click by click.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from newsletter.models import Feedback, SubscriberEvent, Suppression
from newsletter.store.papers import Store, rows_among


class SubscriberState:
    """The suppression list, events and feedback of a Store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db

    def suppressed(self, only: Sequence[str] | None = None) -> dict[str, Suppression]:
        """Every suppression (of the casefolded addresses ``only``, if given: a chunk's),
        by casefolded address."""
        rows = rows_among(
            self.db,
            "SELECT subscriber, address, reason, how, at, detail FROM suppressions "
            "WHERE 1 = 1 {AND}",
            "subscriber",
            (),
            only,
        )
        return {key: _suppression(row) for key, *row in rows}

    def suppression(self, email: str) -> Suppression | None:
        """The suppression of ``email``, if any."""
        row = self.db.execute(
            "SELECT address, reason, how, at, detail FROM suppressions WHERE subscriber = ?",
            (email.casefold(),),
        ).fetchone()
        return _suppression(row) if row else None

    def suppress(
        self, email: str, reason: str, how: str, now: datetime, detail: str | None = None
    ) -> bool:
        """Suppress ``email`` for ``reason``; False when it already was (the first reason
        stays: an unsubscribed address that bounces stays unsubscribed)."""
        key = email.casefold()
        with self.store.transaction() as db:
            if db.execute("SELECT 1 FROM suppressions WHERE subscriber = ?", (key,)).fetchone():
                return False
            db.execute(
                "INSERT INTO suppressions VALUES (?, ?, ?, ?, ?, ?)",
                (key, email, reason, how, now.isoformat(), detail),
            )
            record_event(db, key, now, reason, how, detail)
        return True

    def lift(self, email: str, how: str, now: datetime) -> Suppression | None:
        """Lift the suppression of ``email`` (resubscribed); the one lifted, or None."""
        lifted = self.suppression(email)
        if lifted is None:
            return None
        key = email.casefold()
        with self.store.transaction() as db:
            db.execute("DELETE FROM suppressions WHERE subscriber = ?", (key,))
            record_event(db, key, now, "resubscribed", how, f"was {lifted.describe()}")
        return lifted

    def soft_bounce(self, email: str, now: datetime, detail: str, days: int) -> int:
        """Count a temporary failure; how many there were in the last ``days`` days since
        the address was last resubscribed, this one included."""
        key = email.casefold()
        with self.store.transaction() as db:
            record_event(db, key, now, "soft-bounce", "bounce", detail)
        since = (now - timedelta(days=days)).isoformat()
        lifted = self.db.execute(
            "SELECT max(at) FROM subscriber_events WHERE subscriber = ? AND event = 'resubscribed'",
            (key,),
        ).fetchone()[0]
        row = self.db.execute(
            "SELECT count(*) FROM subscriber_events WHERE subscriber = ? AND event = "
            "'soft-bounce' AND at > ? AND at > ?",
            (key, since, lifted or ""),
        ).fetchone()
        return int(row[0])

    def first_report(self, message_id: str, now: datetime) -> bool:
        """Note a bounce or complaint message as read; False when it was read before."""
        with self.store.transaction() as db:
            cursor = db.execute(
                "INSERT INTO bounce_reports VALUES (?, ?) ON CONFLICT DO NOTHING",
                (message_id, now.isoformat()),
            )
            return cursor.rowcount == 1

    def first_failure(self, email: str, message_id: str, now: datetime) -> bool:
        """Note that our message ``message_id`` failed for ``email``; False when a report
        about it was counted before (one lost digest counts once)."""
        with self.store.transaction() as db:
            cursor = db.execute(
                "INSERT INTO failed_messages VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (email.casefold(), message_id, now.isoformat()),
            )
            return cursor.rowcount == 1

    def events(self, email: str) -> list[SubscriberEvent]:
        """``email``'s events, oldest first."""
        rows = self.db.execute(
            "SELECT at, event, how, detail FROM subscriber_events WHERE subscriber = ? "
            "ORDER BY at, id",
            (email.casefold(),),
        )
        return [SubscriberEvent(datetime.fromisoformat(at), *rest) for at, *rest in rows]

    def record_feedback(
        self, email: str, paper_id: str, digest: str, kind: str, now: datetime
    ) -> None:
        """Record one click on "more like this" or "not relevant"."""
        with self.store.transaction() as db:
            db.execute(
                "INSERT INTO feedback (subscriber, paper_id, digest, kind, at) "
                "VALUES (?, ?, ?, ?, ?)",
                (email.casefold(), paper_id, digest, kind, now.isoformat()),
            )

    def feedback(self, email: str) -> list[Feedback]:
        """``email``'s feedback clicks, oldest first."""
        rows = self.db.execute(
            "SELECT paper_id, digest, kind, at FROM feedback WHERE subscriber = ? ORDER BY at, id",
            (email.casefold(),),
        )
        return [
            Feedback(paper, digest, kind, datetime.fromisoformat(at))
            for paper, digest, kind, at in rows
        ]


def _suppression(row: tuple) -> Suppression:
    address, reason, how, at, detail = row
    return Suppression(address, reason, how, datetime.fromisoformat(at), detail)


def record_event(db, key: str, now: datetime, event: str, how: str, detail: str | None) -> None:
    """Add an event of the subscriber ``key`` (casefolded) in the open transaction ``db``."""
    db.execute(
        "INSERT INTO subscriber_events (subscriber, at, event, how, detail) VALUES (?, ?, ?, ?, ?)",
        (key, now.isoformat(), event, how, detail),
    )
