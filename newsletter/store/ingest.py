"""Ingest: digest files (read by ``newsletter.sources``) into the store, one transaction a
file, so a rejected or interrupted file never stops or spoils the others."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from datetime import date, datetime
from pathlib import Path

from newsletter.errors import DigestError
from newsletter.reports import FileReport, IngestReport
from newsletter.sources.arxiv_feed import KEEP
from newsletter.sources.read import read_digest_bytes
from newsletter.store.papers import DigestRecord, Store

# Which arXiv announce types to read from a file, by its name (a fetched file is named after
# its source, whose config chooses them).
KeepRule = Callable[[str], Iterable[str]]


def ingest(
    store: Store,
    paths: Iterable[Path],
    *,
    now: datetime,
    listing_date: date | None = None,
    keep: KeepRule = lambda name: KEEP,
) -> IngestReport:
    """Ingest each file in its own transaction; a rejected file never stops the others."""
    return IngestReport(
        tuple(
            ingest_file(store, path, now=now, listing_date=listing_date, keep=keep(path.name))
            for path in paths
        )
    )


def ingest_file(
    store: Store,
    path: Path,
    *,
    now: datetime,
    listing_date: date | None = None,
    keep: Iterable[str] = KEEP,
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
        digest = read_digest_bytes(data, today=now.date(), listing_date=listing_date, keep=keep)
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
