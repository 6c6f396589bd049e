"""The store: papers and the digests they came from (the ledger of what was sent, in the
same database, is ``newsletter.ledger.ledger``).

By default one SQLite file in the state folder: WAL mode, a schema version in ``PRAGMA
user_version`` and an ordered list of migrations. ``store: postgresql://...`` puts the same
tables in PostgreSQL instead (``newsletter.store.postgres`` adapts the dialect); the SQL here is
written once for both. Every digest is written in one transaction together with its content
hash, so a killed ingest leaves nothing behind and the file is simply read again next time.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol

from newsletter.config.checks import store_url_problem
from newsletter.config.settings import Config
from newsletter.errors import ConfigError, StoreError
from newsletter.ledger.lock import folder_problem, make_private_folder
from newsletter.models import Card, Details, Paper
from newsletter.sources.identity import normalize_title, paper_id
from newsletter.store import postgres

STORE_FILE = "newsletter.sqlite3"


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
)

# A later capture (by listing date) refreshes the counters; the first capture keeps the rest,
# except that empty fields are filled from whichever capture has them. (Existing columns are
# named with their table: PostgreSQL finds a bare name ambiguous beside ``excluded``.)
_UPSERT = """
INSERT INTO papers (id, arxiv_id, title_key, title, abstract, authors_count, organization,
                    published, comments, upvotes, listing_date, source, position, first_seen,
                    counters_date, authors, categories, links, ai_keywords, ai_summary,
                    announce_type)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    comments = CASE WHEN excluded.counters_date >= papers.counters_date
                    THEN excluded.comments ELSE papers.comments END,
    upvotes = CASE WHEN excluded.counters_date >= papers.counters_date
                   THEN coalesce(excluded.upvotes, papers.upvotes)
                   ELSE coalesce(papers.upvotes, excluded.upvotes) END,
    counters_date = CASE WHEN excluded.counters_date > papers.counters_date
                         THEN excluded.counters_date ELSE papers.counters_date END,
    abstract = CASE WHEN papers.abstract = '' THEN excluded.abstract ELSE papers.abstract END,
    authors_count = coalesce(papers.authors_count, excluded.authors_count),
    organization = coalesce(papers.organization, excluded.organization),
    published = coalesce(papers.published, excluded.published),
    arxiv_id = coalesce(papers.arxiv_id, excluded.arxiv_id),
    authors = coalesce(papers.authors, excluded.authors),
    categories = coalesce(papers.categories, excluded.categories),
    links = {links},
    ai_keywords = coalesce(papers.ai_keywords, excluded.ai_keywords),
    ai_summary = coalesce(papers.ai_summary, excluded.ai_summary),
    announce_type = coalesce(papers.announce_type, excluded.announce_type)
"""

_PAPER_COLUMNS = (
    "id, title, abstract, authors_count, organization, published, comments, upvotes, "
    "listing_date, source, first_seen, arxiv_id, authors, categories, links, ai_keywords, "
    "ai_summary, announce_type"
)


@dataclass(frozen=True, slots=True)
class FetchOutcome:
    """How one request of a source went, as the store keeps it."""

    url: str
    source: str
    etag: str | None = None
    last_modified: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class DigestRecord:
    """A digest file as the store records it once ingested."""

    sha256: str
    name: str
    format: str
    listing_date: date
    cards: int
    warnings: int


class Database(Protocol):
    """What the store needs of a database connection (``SqliteDatabase``,
    ``postgres.PostgresDatabase``): the SQL is the same, the dialect's few differences are
    methods here. The backend's abilities are declared here, decided once by the adapter,
    never sniffed from a URL or a name."""

    where: str  # the file or the URL (without its password), for messages
    in_state_folder: bool  # its records take room on the state folder's disk

    def execute(self, sql: str, params: Sequence[object] = ..., /) -> Any: ...
    def executemany(self, sql: str, rows: Iterable[Sequence[object]], /) -> Any: ...
    def transaction(self) -> AbstractContextManager[Any]: ...
    def close(self) -> None: ...
    def json_merge(self, new: str, old: str) -> str: ...
    def schema_version(self) -> int: ...
    def set_schema_version(self, version: int) -> None: ...
    def lock_migrations(self) -> None: ...
    def ddl(self, script: str) -> str: ...
    def problem(self, exc: BaseException) -> StoreError | None: ...
    def shared(self) -> SharedDatabase | None:
        """This database as one several hosts share (runs in chunks, workers, a leader),
        or None when it is one process's (SQLite)."""
        ...


class SharedDatabase(Database, Protocol):
    """A database several hosts use at once (``postgres.PostgresDatabase``): advisory
    locks, notifications, bulk copies."""

    def try_lock(self, key: int) -> bool: ...
    def holds(self, key: int) -> bool: ...
    def unlock(self, key: int) -> None: ...
    def listen(self, channel: str) -> None: ...
    def wait(self, seconds: float) -> bool: ...
    def copy_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence]) -> None: ...


def shared_database(store: Store) -> SharedDatabase:
    """``store``'s database as a shared one; StoreError when it is not (SQLite)."""
    db = store.db.shared()
    if db is None:
        raise StoreError(f"{store.where} is not a shared store: this needs PostgreSQL")
    return db


class SqliteDatabase:
    """The store's SQLite file."""

    in_state_folder = True

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self.connection = connection
        self.path = path
        self.where = str(path)
        self.execute = connection.execute  # (bound once: the ledger calls these per message)
        self.executemany = connection.executemany

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()

    @contextmanager
    def transaction(self) -> Iterator[SqliteDatabase]:
        """All or nothing: commit on success, roll back on any exception; an SQLite error
        becomes a StoreError saying what is wrong (a full disk, a read-only file)."""
        db = self.connection
        try:
            db.execute("BEGIN IMMEDIATE")
            yield self
            db.execute("COMMIT")
        except BaseException as exc:
            if db.in_transaction:  # (SQLite may have rolled back already: disk full)
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise store_problem(self.path, exc) from exc
            raise

    def json_merge(self, new: str, old: str) -> str:
        """SQL for the JSON object ``new`` with the keys of ``old`` put over it."""
        return f"json_patch({new}, {old})"

    def schema_version(self) -> int:
        """The schema version (0: no schema yet)."""
        return int(self.connection.execute("PRAGMA user_version").fetchone()[0])

    def set_schema_version(self, version: int) -> None:
        """Record the schema version (inside the migration's transaction)."""
        self.connection.execute(f"PRAGMA user_version = {int(version)}")

    def lock_migrations(self) -> None:
        """Nothing to do: BEGIN IMMEDIATE already keeps other writers out."""

    def ddl(self, script: str) -> str:
        """A migration in this engine's dialect (the migrations are written in SQLite's)."""
        return script

    def problem(self, exc: BaseException) -> StoreError | None:
        """What an SQLite error means for the store, or None for other exceptions."""
        return store_problem(self.path, exc) if isinstance(exc, sqlite3.Error) else None

    def shared(self) -> None:
        """One process's file: not shared."""
        return None


class Store:
    """A connection to the store; use ``open_store`` (SQLite) or ``open_store_for``."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.where = db.where
        self._upsert = _UPSERT.format(links=db.json_merge("excluded.links", "papers.links"))

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, kind: object, error: BaseException | None, trace: object) -> None:
        self.close()
        problem = self.db.problem(error) if error is not None else None
        if problem is not None:
            # Whatever the store was doing: say what is wrong with it, and the fix.
            raise problem from error

    def transaction(self) -> AbstractContextManager[Any]:
        """All or nothing: commit on success, roll back on any exception; an error of the
        database becomes a StoreError saying what is wrong."""
        return self.db.transaction()

    @property
    def schema_version(self) -> int:
        """The schema version of the open database."""
        return self.db.schema_version()

    def has_digest(self, sha256: str) -> bool:
        """Was a file with this content hash already ingested?"""
        row = self.db.execute("SELECT 1 FROM digests WHERE sha256 = ?", (sha256,)).fetchone()
        return row is not None

    def add_digest(self, record: DigestRecord, cards: Sequence[Card], now: datetime) -> int:
        """Store a digest and its cards in one transaction; return how many papers are new."""
        with self.transaction() as db:
            keys = [normalize_title(card.title) for card in cards]
            ids, new = self._assign_ids(cards, keys)
            db.execute(
                "INSERT INTO digests VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.sha256,
                    record.name,
                    record.format,
                    record.listing_date.isoformat(),
                    now.isoformat(),
                    record.cards,
                    new,
                    record.warnings,
                ),
            )
            listing = record.listing_date.isoformat()
            seen_at = now.isoformat()
            db.executemany(
                self._upsert,
                (
                    _paper_row(card, pid, key, listing, record.name, position, seen_at)
                    for position, (card, pid, key) in enumerate(zip(cards, ids, keys, strict=True))
                ),
            )
            db.executemany(
                "INSERT INTO sightings VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                ((pid, record.sha256, listing, position) for position, pid in enumerate(ids)),
            )
        return new

    def _assign_ids(self, cards: Sequence[Card], keys: Sequence[str]) -> tuple[list[str], int]:
        """Each card's paper id (an existing paper's when known) and the count of new papers."""
        known = self._ids_by_title_key(set(keys))
        known_arxiv = self._ids_by_arxiv({c.arxiv_id for c in cards if c.arxiv_id})
        ids, new_ids = [], set()
        for card, key in zip(cards, keys, strict=True):
            pid = known_arxiv.get(card.arxiv_id or "") or known.get(key)
            if pid is None:
                pid = paper_id(key, card.arxiv_id)
                new_ids.add(pid)
            ids.append(pid)
        return ids, len(new_ids)

    def _ids_by_title_key(self, keys: Iterable[str]) -> dict[str, str]:
        return dict(self._select_in("SELECT title_key, id FROM papers WHERE title_key IN", keys))

    def _ids_by_arxiv(self, arxiv_ids: Iterable[str]) -> dict[str, str]:
        return dict(self._select_in("SELECT arxiv_id, id FROM papers WHERE arxiv_id IN", arxiv_ids))

    def _select_in(self, query: str, values: Iterable[str]) -> list[tuple]:
        values = list(values)
        rows: list[tuple] = []
        for start in range(0, len(values), 500):
            chunk = values[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows.extend(self.db.execute(f"{query} ({marks})", chunk).fetchall())
        return rows

    def papers(self, since: datetime | None = None) -> list[Paper]:
        """Stored papers (first seen after ``since``, if given), newest listing first."""
        where, args = ("WHERE first_seen > ?", (since.isoformat(),)) if since else ("", ())
        cursor = self.db.execute(
            f"SELECT {_PAPER_COLUMNS} FROM papers {where} "
            "ORDER BY listing_date DESC, source, position, id",
            args,
        )
        return [_paper_from_row(row) for row in cursor]

    def papers_in_order(self, ids: Sequence[str]) -> list[Paper]:
        """The stored papers with these ids (those the store has), in the order of ``ids``."""
        rows = self._select_in(f"SELECT {_PAPER_COLUMNS} FROM papers WHERE id IN", ids)
        by_id = {paper.id: paper for paper in map(_paper_from_row, rows)}
        return [by_id[paper_id] for paper_id in ids if paper_id in by_id]

    def validators(self, url: str) -> tuple[str | None, str | None]:
        """The ETag and Last-Modified ``url`` last answered with (for a conditional GET)."""
        row = self.db.execute(
            "SELECT etag, last_modified FROM fetches WHERE url = ?", (url,)
        ).fetchone()
        return (row[0], row[1]) if row else (None, None)

    def record_fetch(self, outcome: FetchOutcome, now: datetime) -> None:
        """Note how fetching a URL went (its validators when it answered)."""
        stamp = now.isoformat()
        with self.transaction() as db:
            db.execute(
                "INSERT INTO fetches (url, source) VALUES (?, ?) ON CONFLICT (url) DO NOTHING",
                (outcome.url, outcome.source),
            )
            if outcome.error is None:
                db.execute(
                    "UPDATE fetches SET etag = coalesce(?, etag),"
                    " last_modified = coalesce(?, last_modified), last_success = ? WHERE url = ?",
                    (outcome.etag, outcome.last_modified, stamp, outcome.url),
                )
            else:
                db.execute(
                    "UPDATE fetches SET last_error = ?, last_error_at = ? WHERE url = ?",
                    (outcome.error, stamp, outcome.url),
                )

    def last_success(self, url: str) -> datetime | None:
        """When ``url`` last answered (200 or 304), if it ever did."""
        row = self.db.execute("SELECT last_success FROM fetches WHERE url = ?", (url,)).fetchone()
        return datetime.fromisoformat(row[0]) if row and row[0] else None

    def fetch_history(self, source: str) -> tuple[str | None, str | None, str | None]:
        """When ``source`` last answered, and its latest error and when (ISO stamps)."""
        success = self.db.execute(
            "SELECT max(last_success) FROM fetches WHERE source = ?", (source,)
        ).fetchone()[0]
        error = self.db.execute(
            "SELECT last_error, last_error_at FROM fetches WHERE source = ? AND last_error_at "
            "IS NOT NULL ORDER BY last_error_at DESC LIMIT 1",
            (source,),
        ).fetchone()
        return success, *(error or (None, None))

    def papers_from(self, source: str, since: datetime) -> tuple[int, str | None]:
        """How many papers the files fetched for ``source`` (``<source>-YYYY-MM-DD.*``)
        brought first since ``since``, and when the newest of them was first seen."""
        rows = self.db.execute(
            "SELECT source, sum(CASE WHEN first_seen > ? THEN 1 ELSE 0 END), max(first_seen) "
            "FROM papers WHERE source >= ? AND source < ? GROUP BY source",
            (since.isoformat(), f"{source}-", f"{source}."),  # ("." follows "-")
        ).fetchall()
        fetched = re.compile(re.escape(source) + r"-\d{4}-\d{2}-\d{2}\..*", re.DOTALL)
        mine = [(int(recent or 0), newest) for name, recent, newest in rows if fetched.match(name)]
        return sum(recent for recent, _ in mine), max((n for _, n in mine), default=None)

    def paper_count(self) -> int:
        """How many papers the store holds."""
        return int(self.db.execute("SELECT count(*) FROM papers").fetchone()[0])

    def digests(self) -> list[DigestRecord]:
        """Every ingested digest, oldest ingest first."""
        cursor = self.db.execute(
            "SELECT sha256, name, format, listing_date, cards, warnings FROM digests "
            "ORDER BY ingested_at, name"
        )
        return [
            DigestRecord(sha, name, fmt, date.fromisoformat(listing), cards, warnings)
            for sha, name, fmt, listing, cards, warnings in cursor
        ]


def open_store(state_dir: Path, migrations: Sequence[Migration] = MIGRATIONS) -> Store:
    """Open (creating and migrating as needed) the store in ``state_dir``; StoreError when
    the folder or the file cannot be used, saying why and what to do."""
    path = state_dir / STORE_FILE
    try:
        make_private_folder(state_dir)
        if not path.exists():
            _create(path, migrations)
        db = sqlite3.connect(path, isolation_level=None, timeout=30)
    except OSError as exc:
        raise StoreError(folder_problem(state_dir, exc)) from exc
    except sqlite3.Error as exc:
        raise store_problem(path, exc) from exc
    try:
        _configure(db)
        store = Store(SqliteDatabase(db, path))
        if store.schema_version == 0:
            raise StoreError(_not_a_store(path))
        _migrate(store, migrations)
    except sqlite3.Error as exc:
        db.close()
        raise store_problem(path, exc) from exc
    except BaseException:
        db.close()
        raise
    return store


def _configure(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("PRAGMA foreign_keys = ON")


def _create(path: Path, migrations: Sequence[Migration]) -> None:
    """A new store, built under another name and linked into place whole: a file at ``path``
    is always a store with a schema, so a file without one can be refused (it is not ours, or
    it was emptied, and taking it for a new install would send everything to everyone)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.new")
    temporary.unlink(missing_ok=True)
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        db = sqlite3.connect(temporary, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode = DELETE")  # no -wal file to carry along
            _migrate(Store(SqliteDatabase(db, path)), migrations)
        finally:
            db.close()
        with contextlib.suppress(FileExistsError):  # another process got there first
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _not_a_store(path: Path) -> str:
    size = path.stat().st_size
    what = "is empty" if size == 0 else f"has {size:,} bytes but no newsletter schema"
    return (
        f"{path} {what}: it is not a newsletter store (a new install has no file there at "
        "all). If it should hold your send history, restore it from a backup; otherwise move "
        "it aside and a new store is made. Sending from an empty store would send every paper "
        "again to everyone."
    )


def _nearly_full(path: Path) -> bool:
    """Is the disk holding ``path`` (all but) full? A full disk shows as an I/O error when
    SQLite's shared-memory file cannot grow."""
    try:
        return shutil.disk_usage(path.parent).free < 1024 * 1024
    except OSError:
        return False


def store_problem(path: Path, exc: sqlite3.Error) -> StoreError:
    """A StoreError saying what an SQLite error means for the store at ``path``."""
    name = getattr(exc, "sqlite_errorname", "")
    if name == "SQLITE_FULL" or (name.startswith("SQLITE_IOERR") and _nearly_full(path)):
        message = (
            f"the disk holding {path} is full, so nothing more can be recorded: sending "
            "stopped; free some space and run again (what was sent is recorded)"
        )
    elif name.startswith("SQLITE_READONLY"):
        message = (
            f"{path} cannot be written (a read-only file, folder or disk): make "
            f"{path.parent} writable by this user"
        )
    elif name == "SQLITE_NOTADB":
        message = (
            f"{path} is not a database, so not a newsletter store: restore it from a backup, "
            "or move it aside to start afresh (every paper would then be sent again)"
        )
    elif name == "SQLITE_CORRUPT":
        message = (
            f"{path} is damaged ({exc}): restore it from a backup, or recover what it holds "
            f"with: sqlite3 {path} .recover | sqlite3 recovered.sqlite3 (then move the "
            "recovered file in its place)"
        )
    elif name.startswith("SQLITE_IOERR") or name.startswith("SQLITE_CANTOPEN"):
        message = (
            f"cannot read or write {path} ({exc}): check the disk (full, read-only, failing, "
            "or a size limit)"
        )
    else:
        message = f"the store {path} failed: {exc}"
    return StoreError(message)


def _migrate(store: Store, migrations: Sequence[Migration]) -> None:
    """Apply the migrations the database has not seen, each in its own transaction (the
    version read again inside it: another process may have migrated meanwhile)."""
    _check_version(store, store.schema_version, migrations)
    for version in range(store.schema_version, len(migrations)):
        with store.transaction() as db:
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


def _check_version(store: Store, current: int, migrations: Sequence[Migration]) -> None:
    if current > len(migrations):
        raise StoreError(
            f"{store.where} has schema version {current}, newer than this program knows "
            f"({len(migrations)}); upgrade newsletter"
        )


STORE_ENV = "NEWSLETTER_STORE"
SQLITE = "sqlite"  # the ``store`` setting naming the state folder's SQLite file


def store_url(config: Config, environ: Mapping[str, str]) -> str:
    """Where the store is: 'sqlite' or a PostgreSQL URL ($NEWSLETTER_STORE over the config);
    ConfigError for a value that names no store."""
    url = environ.get(STORE_ENV) or config.store
    problem = store_url_problem(url)
    if problem:
        raise ConfigError(f"${STORE_ENV}: {problem}" if environ.get(STORE_ENV) else problem)
    return url


def is_shared_store(config: Config, environ: Mapping[str, str]) -> bool:
    """Whether the configured store is one several hosts share (PostgreSQL), before it is
    opened: a run is then cut into chunks for workers, and the schedule has a leader."""
    return store_url(config, environ) != SQLITE


def rows_among(
    db: Database, sql: str, column: str, params: Sequence[object], only: Sequence[str] | None
) -> list[tuple]:
    """The rows of ``sql`` (its ``{AND}`` limiting ``column`` to ``only``, when given,
    500 addresses a query)."""
    if only is None:
        return db.execute(sql.format(AND=""), params).fetchall()
    rows: list[tuple] = []
    for start in range(0, len(only), 500):
        part = only[start : start + 500]
        limit = f"AND {column} IN ({','.join('?' * len(part))})"
        rows.extend(db.execute(sql.format(AND=limit), (*params, *part)).fetchall())
    return rows


def open_store_for(
    config: Config,
    environ: Mapping[str, str],
    migrations: Sequence[Migration] = MIGRATIONS,
) -> Store:
    """The store ``config`` names: the SQLite file of its state folder, or PostgreSQL
    (``store: postgresql://...`` or $NEWSLETTER_STORE; the password from the variable
    ``store_password_env`` names)."""
    url = store_url(config, environ)
    if url == SQLITE:
        return open_store(config.state_dir, migrations)
    db = postgres.connect(url, environ.get(config.store_password_env))
    try:
        store = Store(db)
        _migrate(store, migrations)
    except BaseException as exc:
        db.close()
        problem = db.problem(exc)
        if problem is not None:
            raise problem from exc
        raise
    return store


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (``executescript`` would commit on its own)."""
    return [part.strip() for part in script.split(";") if part.strip()]


def _paper_row(
    card: Card, pid: str, key: str, listing: str, source: str, position: int, seen_at: str
) -> tuple[object, ...]:
    """The parameters of ``_UPSERT`` for one card (counters_date is the listing date)."""
    published = card.published.isoformat() if card.published else None
    return (
        pid,
        card.arxiv_id,
        key,
        card.title,
        card.abstract,
        card.authors_count,
        card.organization,
        published,
        card.comments,
        card.upvotes,
        listing,
        source,
        position,
        seen_at,
        listing,
        *_details_row(card.details),
    )


def _details_row(details: Details) -> tuple[object, ...]:
    """The details columns: JSON lists (NULL when empty), links as a JSON object."""

    def listed(values: tuple[str, ...]) -> str | None:
        return json.dumps(values, ensure_ascii=False) if values else None

    return (
        listed(details.authors),
        listed(details.categories),
        json.dumps(dict(details.links), ensure_ascii=False),
        listed(details.ai_keywords),
        details.ai_summary,
        details.announce_type,
    )


def _details_from_row(row: Sequence[str | None]) -> Details:
    authors, categories, links, ai_keywords, ai_summary, announce_type = row

    def unlisted(text: str | None) -> tuple[str, ...]:
        return tuple(json.loads(text)) if text else ()

    return Details(
        authors=unlisted(authors),
        categories=unlisted(categories),
        links=tuple(json.loads(links or "{}").items()),
        ai_keywords=unlisted(ai_keywords),
        ai_summary=ai_summary,
        announce_type=announce_type,
    )


def _paper_from_row(row: tuple) -> Paper:
    (pid, title, abstract, authors, org, published, comments, upvotes, listing, source,
     first_seen, arxiv_id) = row[:12]  # fmt: skip
    return Paper(
        id=pid,
        title=title,
        abstract=abstract,
        authors_count=authors,
        organization=org,
        published=date.fromisoformat(published) if published else None,
        comments=comments,
        upvotes=upvotes,
        listing_date=date.fromisoformat(listing),
        source=source,
        first_seen=datetime.fromisoformat(first_seen),
        arxiv_id=arxiv_id,
        details=_details_from_row(row[12:]),
    )
