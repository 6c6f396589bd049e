"""The stages wired together: ingest (files -> store), select (store + profiles -> matches);
render and deliver come next."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path

from newsletter.config import Config
from newsletter.errors import DigestError
from newsletter.matching import History, Matcher, Selection
from newsletter.models import FileReport, IngestReport, Subscriber
from newsletter.sources import read_digest_bytes
from newsletter.store import DigestRecord, Store


def discover_digests(folder: Path) -> list[Path]:
    """Digest files in ``folder`` by name, leaving out hidden files and editor backups."""
    if not folder.is_dir():
        return []
    return sorted(
        path
        for path in folder.iterdir()
        if path.is_file() and not path.name.startswith(".") and not path.name.endswith("~")
    )


def ingest(
    store: Store, paths: Iterable[Path], *, now: datetime, listing_date: date | None = None
) -> IngestReport:
    """Ingest each file in its own transaction; a rejected file never stops the others."""
    return IngestReport(
        tuple(ingest_file(store, path, now=now, listing_date=listing_date) for path in paths)
    )


def ingest_file(
    store: Store, path: Path, *, now: datetime, listing_date: date | None = None
) -> FileReport:
    """Read one file into the store, or report why it was skipped or rejected."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return FileReport(str(path), "rejected", error=f"cannot read it: {exc.strerror or exc}")
    sha256 = hashlib.sha256(data).hexdigest()
    if store.has_digest(sha256):
        return FileReport(str(path), "skipped")
    try:
        digest = read_digest_bytes(data, today=now.date(), listing_date=listing_date)
    except DigestError as exc:
        return FileReport(str(path), "rejected", error=str(exc))
    record = DigestRecord(
        sha256=sha256,
        name=path.name,
        format=digest.format,
        listing_date=digest.listing_date,
        cards=len(digest.cards),
        warnings=len(digest.warnings),
    )
    new = store.add_digest(record, digest.cards, now)
    return FileReport(
        str(path),
        "ingested",
        cards=len(digest.cards),
        new_papers=new,
        warnings=digest.warnings,
        listing_date=digest.listing_date,
    )


def select(
    store: Store,
    subscribers: Sequence[Subscriber],
    config: Config,
    *,
    now: datetime,
    history: Mapping[str, History] | None = None,
) -> list[Selection]:
    """What each of ``subscribers`` would receive now from the papers in the store."""
    history = history or {}
    oldest = now - timedelta(days=config.matching.lookback_days)
    cutoffs = [
        record.last_digest_at
        for s in subscribers
        if (record := history.get(s.email)) and record.last_digest_at
    ]
    # No subscriber takes papers seen before the oldest cutoff: leave them in the store.
    since = min([oldest, *cutoffs]) - timedelta(microseconds=1)
    papers = store.papers(since=since)
    return Matcher(subscribers, config.matching).select(papers, now, history)
