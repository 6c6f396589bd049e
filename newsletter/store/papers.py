"""The store's repository: papers and the digests they came from (the ledger of what was
sent, in the same database, is ``newsletter.ledger.ledger``).

The SQL here is written once for both engines: the SQLite file of the state folder
(``store.sqlite``) or PostgreSQL (``store.postgres`` adapts the dialect), chosen by
``store.backend``. Every digest is written in one transaction together with its content
hash, so a killed ingest leaves nothing behind and the file is simply read again next time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from newsletter.errors import StoreError
from newsletter.models import Card, Details, Paper
from newsletter.sources.identity import normalize_title, paper_id
from newsletter.store.database import Database, SharedDatabase

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

    def transaction(self, relaxed: bool = False) -> AbstractContextManager[Any]:
        """All or nothing: commit on success, roll back on any exception; an error of the
        database becomes a StoreError saying what is wrong (``relaxed``: see Database)."""
        return self.db.transaction(relaxed)

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


def shared_database(store: Store) -> SharedDatabase:
    """``store``'s database as a shared one; StoreError when it is not (SQLite)."""
    db = store.db.shared()
    if db is None:
        raise StoreError(f"{store.where} is not a shared store: this needs PostgreSQL")
    return db
