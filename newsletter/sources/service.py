"""The fetch use case: the configured sources fetched into the digests folder and ingested;
each source's status."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from newsletter.config.settings import Config, SourceSettings
from newsletter.errors import ConfigError
from newsletter.ledger.ledger import moment
from newsletter.ledger.lock import state_lock
from newsletter.reports import FetchReport, SourceStatus
from newsletter.sources.read import discover_digests
from newsletter.sources.registry import source_kind
from newsletter.store.backend import open_store_for
from newsletter.store.ingest import ingest
from newsletter.world import World


def fetch_sources(
    config: Config,
    world: World,
    names: Sequence[str] = (),
    days: Sequence[date] = (),
    refresh: bool = False,
) -> FetchReport:
    """Fetch the configured sources (``names``: only these) into the digests folder, for
    ``days`` where a source has days (default: its recent days, UTC); then ingest the folder.
    A source that fails never stops the others."""
    sources = _chosen_sources(config, names)
    today = world.now().date()
    with state_lock(config.state_dir, "fetch"), open_store_for(config, world.environ) as store:
        discover_digests(config.digests)  # a missing folder is a ConfigError before any request
        with world.http(config.fetch) as client:
            from newsletter.sources.fetch import Fetcher

            fetcher = Fetcher(config.fetch, client, store, config.digests, world.now, world.sleep)
            results = [
                result
                for source in sources
                for day in _days_for(source, days, today)
                for result in fetcher.fetch(source, day, refresh)
            ]
        ingested = ingest(
            store, discover_digests(config.digests), now=world.now(), keep=config.announce_types
        )
    return FetchReport(tuple(results), ingested)


def _days_for(source: SourceSettings, days: Sequence[date], today: date) -> Sequence[date]:
    """The days to ask ``source`` for: those given (a feed has one: its latest), else its
    recent days."""
    kind = source_kind(source.type)
    if not days:
        return kind.days(today)
    return days if kind.dated else days[-1:]


def source_status(config: Config, world: World) -> list[SourceStatus]:
    """Each configured source: last success and error, new papers a day over the last week,
    and whether it has gone stale (so "I got no email" can be answered)."""
    now = world.now()
    week = now - timedelta(days=7)
    statuses = []
    with open_store_for(config, world.environ) as store:
        for source in config.sources:
            success, error, error_at = store.fetch_history(source.name)
            recent, newest = store.papers_from(source.name, week)
            newest_at = moment(newest)
            stale_since = now - timedelta(days=config.fetch.stale_after)
            statuses.append(
                SourceStatus(
                    name=source.name,
                    type=source.type,
                    url=source_kind(source.type).base_url(source),
                    last_success=moment(success),
                    last_error=error,
                    last_error_at=moment(error_at),
                    papers_per_day=recent / 7,
                    newest_paper=newest_at,
                    stale=newest_at is None or newest_at < stale_since,
                )
            )
    return statuses


def _chosen_sources(config: Config, names: Sequence[str]) -> list[SourceSettings]:
    if not config.sources:
        raise ConfigError(
            f"{config.path.name}: no sources to fetch: add a 'sources:' list (see the README)"
        )
    known = {source.name: source for source in config.sources}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ConfigError(
            f"no source '{unknown[0]}' in {config.path.name} (sources: {', '.join(known)})"
        )
    return [known[name] for name in names] if names else list(config.sources)
