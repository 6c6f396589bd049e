"""The store's schema: an ordered list of migrations (SQL in SQLite's dialect, or a function of
the open transaction), applied each in its own transaction; and how a digest's papers are
packed in its delivery row."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from newsletter.errors import StoreError
from newsletter.store.database import Database

_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))  # (json.dumps makes one a call)


def pack_papers(paper_ids: Sequence[str]) -> str:
    """A digest's paper ids, in order, as its delivery row keeps them (a JSON array)."""
    return _COMPACT_JSON.encode(list(paper_ids))


def unpack_papers(packed: str | None) -> tuple[str, ...]:
    """The paper ids a delivery row keeps, in order (none for NULL)."""
    return tuple(json.loads(packed)) if packed else ()


def _pack_delivery_papers(db: Any) -> None:
    """Migration 9: each digest's papers, in the order sent, into a column of its delivery
    row, and the table of one row per paper dropped. A digest is then one row to write (the
    ledger's cost per message halved, bench/ledger.py) and its papers come with it (that
    table had no index by message: reading one digest's papers read all of them)."""
    db.execute(db.ddl("ALTER TABLE deliveries ADD COLUMN papers TEXT"))
    rows = db.execute(
        "SELECT message_id, paper_id FROM delivery_papers ORDER BY message_id, position, paper_id"
    )
    grouped: dict[str, list[str]] = {}
    for message_id, paper in rows:
        grouped.setdefault(message_id, []).append(paper)
    db.executemany(
        "UPDATE deliveries SET papers = ? WHERE message_id = ?",
        ((pack_papers(papers), message_id) for message_id, papers in grouped.items()),
    )
    db.execute("DROP TABLE delivery_papers")


Migration = str | Callable[[Any], None]


# Each entry moves the schema from version N to N+1: SQL in SQLite's dialect, or a function
# of the open transaction where the data must be reshaped alike in both engines. Never edit a
# released entry: append.
MIGRATIONS: tuple[Migration, ...] = (
    """
    CREATE TABLE digests (
        sha256       TEXT PRIMARY KEY,
        name         TEXT NOT NULL,
        format       TEXT NOT NULL,
        listing_date TEXT NOT NULL,
        ingested_at  TEXT NOT NULL,
        cards        INTEGER NOT NULL,
        new_papers   INTEGER NOT NULL,
        warnings     INTEGER NOT NULL
    );
    CREATE TABLE papers (
        id            TEXT PRIMARY KEY,
        arxiv_id      TEXT UNIQUE,
        title_key     TEXT NOT NULL,
        title         TEXT NOT NULL,
        abstract      TEXT NOT NULL,
        authors_count INTEGER,
        organization  TEXT,
        published     TEXT,
        comments      INTEGER NOT NULL DEFAULT 0,
        upvotes       INTEGER,
        listing_date  TEXT NOT NULL,
        source        TEXT NOT NULL,
        position      INTEGER NOT NULL,
        first_seen    TEXT NOT NULL,
        counters_date TEXT NOT NULL
    );
    CREATE INDEX papers_title_key ON papers (title_key);
    CREATE INDEX papers_first_seen ON papers (first_seen);
    CREATE TABLE sightings (
        paper_id     TEXT NOT NULL REFERENCES papers (id),
        digest       TEXT NOT NULL REFERENCES digests (sha256),
        listing_date TEXT NOT NULL,
        position     INTEGER NOT NULL,
        PRIMARY KEY (paper_id, digest)
    ) WITHOUT ROWID;
    """,
    # 2: the delivery ledger. A digest is recorded as pending before it is handed to the
    # server, and as sent once the server accepted it; its papers are listed per subscriber.
    # (Until issue 16 a pending row held the message's bytes; now ``data`` stays NULL and a
    # resend is rendered again from the record, see ledger.py.)
    """
    CREATE TABLE deliveries (
        message_id  TEXT PRIMARY KEY,
        subscriber  TEXT NOT NULL,
        status      TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
        attempts    INTEGER NOT NULL DEFAULT 0,
        last_error  TEXT,
        code        INTEGER,
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL,
        sent_at     TEXT,
        data        BLOB
    );
    CREATE INDEX deliveries_subscriber ON deliveries (subscriber, status);
    CREATE TABLE delivery_papers (
        subscriber  TEXT NOT NULL,
        paper_id    TEXT NOT NULL REFERENCES papers (id),
        message_id  TEXT NOT NULL REFERENCES deliveries (message_id),
        PRIMARY KEY (subscriber, paper_id, message_id)
    ) WITHOUT ROWID;
    """,
    # 3: when each subscriber was first seen by a send, and last served (sent a digest, or
    # found to have nothing to send) by one: whether they are due comes from these.
    """
    CREATE TABLE subscribers (
        subscriber  TEXT PRIMARY KEY,
        first_seen  TEXT NOT NULL,
        last_served TEXT
    ) WITHOUT ROWID;
    INSERT INTO subscribers
        SELECT subscriber, min(created_at), max(sent_at) FROM deliveries GROUP BY subscriber;
    """,
    # 4: what each fetched URL last answered: validators for conditional requests, and the
    # last success and error of its source (``newsletter fetch``).
    """
    CREATE TABLE fetches (
        url           TEXT PRIMARY KEY,
        source        TEXT NOT NULL,
        etag          TEXT,
        last_modified TEXT,
        last_success  TEXT,
        last_error    TEXT,
        last_error_at TEXT
    ) WITHOUT ROWID;
    """,
    # 5: what the richer sources tell (HF JSON, arXiv feeds): author names, categories and
    # AI keywords as JSON lists, links as a JSON object by kind; NULL where none said.
    """
    ALTER TABLE papers ADD COLUMN authors TEXT;
    ALTER TABLE papers ADD COLUMN categories TEXT;
    ALTER TABLE papers ADD COLUMN links TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE papers ADD COLUMN ai_keywords TEXT;
    ALTER TABLE papers ADD COLUMN ai_summary TEXT;
    ALTER TABLE papers ADD COLUMN announce_type TEXT;
    """,
    # 6: what subscribers decide, which must survive any edit of subscribers.yaml: the
    # suppression list (unsubscribed, bounced, complained), every event that changed it or
    # counts towards it (a soft bounce), feedback on papers, the bounce messages already
    # read (read twice, they count once), and each digest's paper order (its web copy shows
    # them as sent).
    """
    CREATE TABLE suppressions (
        subscriber  TEXT PRIMARY KEY,
        address     TEXT NOT NULL,
        reason      TEXT NOT NULL CHECK (reason IN ('unsubscribed', 'bounced', 'complained')),
        how         TEXT NOT NULL,
        at          TEXT NOT NULL,
        detail      TEXT
    ) WITHOUT ROWID;
    CREATE TABLE subscriber_events (
        id          INTEGER PRIMARY KEY,
        subscriber  TEXT NOT NULL,
        at          TEXT NOT NULL,
        event       TEXT NOT NULL,
        how         TEXT NOT NULL,
        detail      TEXT
    );
    CREATE INDEX subscriber_events_by_subscriber ON subscriber_events (subscriber, at);
    CREATE TABLE feedback (
        id          INTEGER PRIMARY KEY,
        subscriber  TEXT NOT NULL,
        paper_id    TEXT NOT NULL,
        digest      TEXT NOT NULL,
        kind        TEXT NOT NULL CHECK (kind IN ('more', 'less')),
        at          TEXT NOT NULL
    );
    CREATE INDEX feedback_by_subscriber ON feedback (subscriber, at);
    CREATE TABLE bounce_reports (
        message_id  TEXT PRIMARY KEY,
        at          TEXT NOT NULL
    ) WITHOUT ROWID;
    ALTER TABLE delivery_papers ADD COLUMN position INTEGER;
    """,
    # 7: the caps of smtp.rate count what was sent in the last hour and day.
    """
    CREATE INDEX deliveries_sent_at ON deliveries (sent_at) WHERE status = 'sent';
    """,
    # 8: sends shared by workers (PostgreSQL; the tables stay empty in SQLite). A run cuts
    # its subscribers into chunks that workers claim for a lease; a digest records its run,
    # and one subscriber gets at most one digest per run, whichever worker makes it. A slot
    # of the scheduler starts one run, whichever `newsletter run` is leading.
    """
    ALTER TABLE deliveries ADD COLUMN run TEXT;
    CREATE UNIQUE INDEX deliveries_run_subscriber ON deliveries (run, subscriber)
        WHERE run IS NOT NULL;
    CREATE TABLE send_runs (
        id          TEXT PRIMARY KEY,
        started     TIMESTAMPTZ NOT NULL,
        as_of       TEXT NOT NULL,
        holder      TEXT NOT NULL,
        options     TEXT NOT NULL,
        chunks      INTEGER NOT NULL,
        finished    TIMESTAMPTZ
    );
    CREATE TABLE send_chunks (
        run          TEXT NOT NULL REFERENCES send_runs (id),
        number       INTEGER NOT NULL,
        subscribers  TEXT NOT NULL,
        status       TEXT NOT NULL CHECK (status IN ('queued', 'claimed', 'done')),
        worker       TEXT,
        lease_until  TIMESTAMPTZ,
        claims       INTEGER NOT NULL,
        report       TEXT,
        finished     TIMESTAMPTZ,
        PRIMARY KEY (run, number)
    );
    CREATE INDEX send_chunks_open ON send_chunks (status) WHERE status <> 'done';
    CREATE TABLE workers (
        id          TEXT PRIMARY KEY,
        host        TEXT NOT NULL,
        pid         INTEGER NOT NULL,
        started     TIMESTAMPTZ NOT NULL,
        seen        TIMESTAMPTZ NOT NULL,
        chunk       TEXT,
        chunks_done INTEGER NOT NULL,
        messages    INTEGER NOT NULL
    );
    CREATE TABLE slot_runs (
        slot        TEXT NOT NULL,
        fire        TEXT NOT NULL,
        run         TEXT,
        PRIMARY KEY (slot, fire)
    );
    """,
    # 9: each digest's papers packed into its own row (``_pack_delivery_papers``).
    _pack_delivery_papers,
    # 10: sign-ups on the web (double opt-in): each request, the entry asked for (JSON), the
    # mail it caused (the limits count them), and, once confirmed, the consent (when, how).
    """
    CREATE TABLE signups (
        id           TEXT PRIMARY KEY,
        subscriber   TEXT NOT NULL,
        address      TEXT NOT NULL,
        asked_at     TEXT NOT NULL,
        mail         TEXT NOT NULL CHECK (mail IN ('confirm', 'known')),
        entry        TEXT NOT NULL,
        confirmed_at TEXT,
        how          TEXT
    );
    CREATE INDEX signups_by_subscriber ON signups (subscriber, asked_at);
    CREATE INDEX signups_by_time ON signups (asked_at);
    """,
    # 11: the messages of ours that reports said failed, per address: several reports about
    # one lost digest (a failure after a delay notice, two relays) count it once.
    """
    CREATE TABLE failed_messages (
        subscriber  TEXT NOT NULL,
        message_id  TEXT NOT NULL,
        at          TEXT NOT NULL,
        PRIMARY KEY (subscriber, message_id)
    ) WITHOUT ROWID;
    """,
    # 12: the keys that name subscribers in their links (``ledger.link_keys``): the address
    # is in no URL.
    """
    CREATE TABLE link_keys (
        link_key    TEXT PRIMARY KEY,
        subscriber  TEXT NOT NULL,
        address     TEXT NOT NULL,
        since       TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX link_keys_by_subscriber ON link_keys (subscriber);
    """,
    # 13: what matched, kept with each digest (``matching.explained``): its web copy and the
    # feed explain each paper as it was explained the day it was sent.
    """
    ALTER TABLE deliveries ADD COLUMN explained TEXT;
    """,
    # 14: what matched, compressed (``matching.explained.pack``; ``explained`` stays for
    # the rows of before). Room on each page of the rows a send writes and then updates (a
    # digest pending, then accepted; a subscriber seen, then served), so that the new
    # version of the row stays on its page: PostgreSQL then logs only the bytes that
    # changed, not the whole row again (bench/workers.py: 1,260 bytes of WAL a message
    # became 230), and no index on what that update changes (status, sent_at), so that
    # it touches no index either (``ledger._SENT_SINCE_IN_RUNS``). Only PostgreSQL has
    # these (``-- postgresql:`` lines are comments to SQLite).
    """
    ALTER TABLE deliveries ADD COLUMN explained_packed BLOB;
    -- postgresql: ALTER TABLE deliveries SET (fillfactor = 50);
    -- postgresql: ALTER TABLE subscribers SET (fillfactor = 50);
    -- postgresql: DROP INDEX deliveries_sent_at;
    -- postgresql: DROP INDEX deliveries_subscriber;
    -- postgresql: CREATE INDEX deliveries_subscriber ON deliveries (subscriber);
    -- postgresql: CREATE INDEX deliveries_of_no_run ON deliveries (message_id) WHERE run IS NULL;
    """,
)


def migrate(database: Database, migrations: Sequence[Migration]) -> None:
    """Apply the migrations the database has not seen, each in its own transaction (the
    version read again inside it: another process may have migrated meanwhile)."""
    current = database.schema_version()
    check_version(database.where, current, migrations)
    for version in range(current, len(migrations)):
        with database.transaction() as db:
            db.lock_migrations()
            if db.schema_version() > version:
                continue
            _apply(db, migrations[version])
            db.set_schema_version(version + 1)


def _apply(db: Database, migration: Migration) -> None:
    """One migration, inside its transaction."""
    if callable(migration):
        migration(db)
        return
    for statement in _statements(db.ddl(migration)):
        db.execute(statement)


def check_version(where: str, current: int, migrations: Sequence[Migration]) -> None:
    """StoreError when the database's schema is newer than ``migrations`` know."""
    if current > len(migrations):
        raise StoreError(
            f"{where} has schema version {current}, newer than this program knows "
            f"({len(migrations)}); upgrade newsletter"
        )


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (``executescript`` would commit on its own)."""
    return [part.strip() for part in script.split(";") if part.strip()]
