"""The store's use cases for the commands ingest and papers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from newsletter.config.settings import Config, SourceSettings
from newsletter.models import Paper
from newsletter.reports import IngestReport
from newsletter.sources.read import discover_digests
from newsletter.store.backend import open_store_for
from newsletter.store.ingest import ingest
from newsletter.world import World


def ingest_files(
    config: Config, world: World, paths: Sequence[Path] = (), listing_date: date | None = None
) -> IngestReport:
    """Ingest ``paths`` (default: the files of the digests folder) into the store."""
    if not paths:
        paths = discover_digests(config.digests)
    with open_store_for(config, world.environ) as store:
        return ingest(
            store,
            paths,
            now=world.now(),
            listing_date=listing_date,
            keep=config.announce_types,
        )


def stored_papers(
    config: Config, world: World, since: date | None = None, source: str | None = None
) -> list[Paper]:
    """The stored papers, newest listing first: all, or those first seen on or after
    ``since`` (UTC), or first seen in ``source`` (a source's name, or a digest file's)."""
    start = None
    if since is not None:
        start = datetime.combine(since, datetime.min.time(), UTC) - timedelta(microseconds=1)
    with open_store_for(config, world.environ) as store:
        papers = store.papers(since=start)
    if source is None:
        return papers
    fetches = SourceSettings(name=source)
    return [p for p in papers if p.source == source or fetches.fetched(p.source)]
