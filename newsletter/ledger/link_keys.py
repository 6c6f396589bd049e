"""The keys that name subscribers in their links (``Signer.key``), kept in the store so that
a link resolves to its address without spelling it: a key is kept when a digest or a mail
first carries it, and never changes whom it names (a new secret makes new keys; the old stay,
so links signed before a rotation keep working through the grace period)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from newsletter.render.tokens import Signer
from newsletter.store.database import Database
from newsletter.store.papers import Store, rows_among

_INSERT = "INSERT INTO link_keys VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING"


class LinkKeys:
    """The link keys of a Store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db

    def address_of(self, key: str) -> str | None:
        """The address ``key`` names, if the store keeps it."""
        row = self.db.execute("SELECT address FROM link_keys WHERE link_key = ?", (key,)).fetchone()
        return row[0] if row else None

    def remember(self, signer: Signer, addresses: Sequence[str], now: datetime) -> None:
        """Keep the keys of ``addresses`` the store lacks (one query when all are known)."""
        keys = unknown_keys(self.db, signer, addresses)
        if keys:
            with self.store.transaction() as db:
                keep_keys(db, keys, now)


def unknown_keys(db: Database, signer: Signer, addresses: Sequence[str]) -> dict[str, str]:
    """The keys of ``addresses`` (key -> address) the store does not keep yet."""
    keys = {signer.key(address): address for address in addresses}
    sql = "SELECT link_key FROM link_keys WHERE 1 = 1 {AND}"
    known = {key for (key,) in rows_among(db, sql, "link_key", (), list(keys))} if keys else ()
    return {key: address for key, address in keys.items() if key not in known}


def keep_keys(db: Database, keys: Mapping[str, str], now: datetime) -> None:
    """Write the keys ``keys`` (key -> address) on ``db`` (a transaction's)."""
    at = now.isoformat()
    db.executemany(_INSERT, ((k, a.casefold(), a, at) for k, a in keys.items()))
