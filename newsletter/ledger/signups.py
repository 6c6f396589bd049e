"""Sign-ups on the web, kept in the store: each request until it is confirmed or expires,
and, once confirmed, the reader's consent (the address, when it was asked, when confirmed,
how). The limits of the sign-up form count the mails these requests caused."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, time

from newsletter.ledger.suppression import record_event
from newsletter.models import NewProfile, SignupRequest
from newsletter.store.papers import Store

_COLUMNS = "id, address, asked_at, mail, entry, confirmed_at, how"


class Signups:
    """The sign-up requests of a Store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db

    def record(self, request: SignupRequest) -> None:
        """Keep ``request`` (a mail is about to go out for it)."""
        with self.store.transaction() as db:
            db.execute(
                f"INSERT INTO signups ({_COLUMNS}, subscriber) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    request.id,
                    request.address,
                    request.asked_at.isoformat(),
                    request.mail,
                    _entry_json(request.profile),
                    None,
                    None,
                    request.address.casefold(),
                ),
            )

    def request(self, request_id: str) -> SignupRequest | None:
        """The request ``request_id``, if the store holds it."""
        row = self.db.execute(
            f"SELECT {_COLUMNS} FROM signups WHERE id = ?", (request_id,)
        ).fetchone()
        return _request(row) if row else None

    def mails_to(self, email: str, since: datetime) -> int:
        """How many sign-up mails went to ``email`` since ``since``."""
        row = self.db.execute(
            "SELECT count(*) FROM signups WHERE subscriber = ? AND asked_at > ?",
            (email.casefold(), since.isoformat()),
        ).fetchone()
        return int(row[0])

    def mails_since(self, since: datetime) -> int:
        """How many sign-up mails went out since ``since``, to anyone."""
        row = self.db.execute(
            "SELECT count(*) FROM signups WHERE asked_at > ?", (since.isoformat(),)
        ).fetchone()
        return int(row[0])

    def confirm(self, request: SignupRequest, now: datetime, how: str) -> bool:
        """Record the consent ``request`` carries (and a ``subscribed`` event); False when
        it was confirmed already (the first confirmation stays)."""
        with self.store.transaction() as db:
            cursor = db.execute(
                "UPDATE signups SET confirmed_at = ?, how = ? WHERE id = ? "
                "AND confirmed_at IS NULL",
                (now.isoformat(), how, request.id),
            )
            if cursor.rowcount != 1:
                return False
            detail = f"asked {request.asked_at.isoformat(timespec='seconds')}"
            record_event(db, request.address.casefold(), now, "subscribed", how, detail)
        return True

    def pending(self, since: datetime) -> list[SignupRequest]:
        """Requests for a confirmation asked after ``since`` and not confirmed, oldest first."""
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM signups WHERE mail = 'confirm' AND confirmed_at IS NULL "
            "AND asked_at > ? ORDER BY asked_at, id",
            (since.isoformat(),),
        )
        return [_request(row) for row in rows]

    def consent(self, email: str) -> SignupRequest | None:
        """The last confirmed sign-up of ``email``: the consent on record, if any."""
        row = self.db.execute(
            f"SELECT {_COLUMNS} FROM signups WHERE subscriber = ? AND confirmed_at IS NOT NULL "
            "ORDER BY confirmed_at DESC LIMIT 1",
            (email.casefold(),),
        ).fetchone()
        return _request(row) if row else None

    def forget_unconfirmed(self, before: datetime) -> int:
        """Drop requests never confirmed and asked before ``before`` (expired, and past every
        limit's window); how many."""
        with self.store.transaction() as db:
            cursor = db.execute(
                "DELETE FROM signups WHERE confirmed_at IS NULL AND asked_at < ?",
                (before.isoformat(),),
            )
            return int(cursor.rowcount)


def _entry_json(profile: NewProfile) -> str:
    entry = asdict(profile)
    entry["keywords"] = list(profile.keywords)
    entry["send_at"] = f"{profile.send_at:%H:%M}" if profile.send_at else None
    return json.dumps(entry, ensure_ascii=False)


def _request(row: tuple) -> SignupRequest:
    request_id, _address, asked_at, mail, entry, confirmed_at, how = row
    values = json.loads(entry)
    values["keywords"] = tuple(values["keywords"])
    if values.get("send_at"):
        values["send_at"] = time.fromisoformat(values["send_at"])
    return SignupRequest(
        request_id,
        NewProfile(**values),
        datetime.fromisoformat(asked_at),
        mail,
        datetime.fromisoformat(confirmed_at) if confirmed_at else None,
        how,
    )
