"""The use cases, written once; the CLI and the daemon only parse, call and print or log.

``Run`` is one send: lock the state folder, ingest new digest files, then match, render,
deliver and record each subscriber's digest (``newsletter send`` and every run of the
daemon). ``preview`` is one subscriber's digest as a send would make it now; ``ingest_files``
and ``stored_papers`` serve the commands of the same names.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from newsletter.config import Config
from newsletter.delivery import (
    DryRunTransport,
    Outgoing,
    Result,
    Retry,
    Transport,
    deliver,
    make_transport,
)
from newsletter.envelope import envelope_for
from newsletter.errors import ConfigError
from newsletter.ingest import ingest
from newsletter.ledger import DryRunLedger, Ledger, Pending
from newsletter.links import unsubscribe_secret
from newsletter.lock import state_lock
from newsletter.matching import Matcher
from newsletter.models import (
    FailedItem,
    History,
    IngestReport,
    Paper,
    RenderedEmail,
    Selection,
    SendReport,
    SentItem,
    SkippedItem,
    Subscriber,
)
from newsletter.parallel import Order, produce
from newsletter.profiles import Profiles, load_profiles
from newsletter.render import Renderer, load_templates
from newsletter.sources import discover_digests
from newsletter.store import Store, open_store


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class World:
    """What the program takes from outside: the clock and the environment (tests pass
    their own)."""

    now: Callable[[], datetime] = _utc_now
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)


@dataclass
class Run:
    """One send run: the request, and ``once`` to carry it out.

    ``stop`` ends the run early (messages in flight finish and are recorded; nothing new is
    handed over); ``on_result`` is called after each recorded message (a progress bar)."""

    config: Config
    world: World
    dry_run: bool = False  # render and report; deliver and record nothing
    retry_failed: bool = False  # offer again papers whose delivery failed for good
    holder: str = "send"  # who holds the lock, as another process sees it
    stop: threading.Event | None = None
    on_result: Callable[[], None] | None = None
    retry: Retry | None = None  # default: from the smtp settings
    transport: Transport | None = None  # default: the configured one

    def once(self, subscribers: Sequence[Subscriber]) -> SendReport:
        """Ingest new digest files, then send each of ``subscribers`` their digest now."""
        renderer = make_renderer(self.config, self.world.environ)  # mistakes before the lock
        transport = self.transport or (
            DryRunTransport() if self.dry_run else make_transport(self.config, self.world.environ)
        )
        state = self.config.state_dir
        with state_lock(state, self.holder), open_store(state) as store:
            ingested = ingest(store, discover_digests(self.config.digests), now=self.world.now())
            ledger = DryRunLedger(store) if self.dry_run else Ledger(store)
            report = _Sending(self, store, ledger, transport, renderer).send(subscribers)
        return replace(report, dry_run=self.dry_run, ingest=ingested, where=transport.where)


def make_renderer(config: Config, environ: Mapping[str, str]) -> Renderer:
    """The renderer for ``config``: templates compiled, unsubscribe secret from ``environ``."""
    secret = unsubscribe_secret(config.render, environ)
    return Renderer(config.render, load_templates(config.templates), secret)


def profiles_of(config: Config) -> Profiles:
    """The profile file ``config`` names, loaded with its defaults."""
    return load_profiles(config.subscribers, config.schedule, config.matching)


def candidate_papers(
    store: Store,
    subscribers: Sequence[Subscriber],
    config: Config,
    now: datetime,
    history: Mapping[str, History],
) -> list[Paper]:
    """The papers any of ``subscribers`` could receive now: none seen before the oldest
    cutoff (their last digest, or the lookback window) needs to leave the store."""
    oldest = now - timedelta(days=config.matching.lookback_days)
    cutoffs = [
        record.last_digest_at
        for s in subscribers
        if (record := history.get(s.email.casefold())) and record.last_digest_at
    ]
    return store.papers(since=min([oldest, *cutoffs]) - timedelta(microseconds=1))


def preview(
    config: Config, world: World, subscriber: Subscriber
) -> tuple[Selection, RenderedEmail | None]:
    """What ``subscriber`` would receive now from the stored papers (their email, or None
    when nothing matched); sends and records nothing."""
    renderer = make_renderer(config, world.environ)
    now = world.now()
    with open_store(config.state_dir) as store:
        papers = candidate_papers(store, [subscriber], config, now, {})
    (selection,) = Matcher([subscriber], config.matching).select(papers, now)
    return selection, renderer.render(selection, now)


def ingest_files(
    config: Config, world: World, paths: Sequence[Path] = (), listing_date: date | None = None
) -> IngestReport:
    """Ingest ``paths`` (default: the files of the digests folder) into the store."""
    if not paths:
        if not config.digests.is_dir():
            raise ConfigError(
                f"the digests folder {config.digests} does not exist; create it or fix "
                f"'digests' in {config.path.name}"
            )
        paths = discover_digests(config.digests)
    with open_store(config.state_dir) as store:
        return ingest(store, paths, now=world.now(), listing_date=listing_date)


def stored_papers(config: Config) -> list[Paper]:
    """Every stored paper, newest listing first."""
    with open_store(config.state_dir) as store:
        return store.papers()


class _Sending:
    """One send over an open store: the report as it fills, keyed by subscriber."""

    def __init__(
        self, run: Run, store: Store, ledger: Ledger, transport: Transport, renderer: Renderer
    ) -> None:
        self.run = run
        self.store = store
        self.ledger = ledger
        self.transport = transport
        self.renderer = renderer
        self.now = run.world.now()
        self.sent: list[SentItem] = []
        self.skipped: list[SkippedItem] = []
        self.failed: list[FailedItem] = []
        self.papers: dict[str, tuple[str, ...]] = {}  # message id -> papers, until recorded
        self.resent: set[str] = set()  # message ids sent again as they were
        self.ids: dict[str, str] = {}  # one copy of each paper id
        self.wanted: dict[str, Subscriber] = {}  # casefolded address -> receiving subscriber

    def send(self, subscribers: Sequence[Subscriber]) -> SendReport:
        """Send each of ``subscribers`` their digest; record every accepted message at once.

        A digest left pending by an interrupted run is sent again as it was (same bytes, same
        Message-ID) before anything new is composed for that subscriber."""
        for subscriber in subscribers:
            if subscriber.receives:
                self.wanted[subscriber.email.casefold()] = subscriber
            else:
                reason = "paused" if subscriber.active else "inactive (active: false)"
                self.skipped.append(SkippedItem(subscriber.email, reason))
        pending = [p for p in self.ledger.pending() if p.subscriber in self.wanted]
        waiting = {p.subscriber for p in pending}
        fresh = [s for key, s in self.wanted.items() if key not in waiting]
        config = self.run.config
        retry = self.run.retry or Retry(config.smtp.max_attempts, config.smtp.retry_delay)
        outgoing = self._outgoing(pending, fresh)
        for result in deliver(self.transport, outgoing, retry, stop=self.run.stop):
            self._record(result)
            if self.run.on_result:
                self.run.on_result()
        return SendReport(tuple(self.sent), tuple(self.skipped), tuple(self.failed))

    def _outgoing(self, pending: list[Pending], fresh: list[Subscriber]) -> Iterator[Outgoing]:
        """The messages to hand over, pending ones first; each new one recorded as pending
        before it is handed over."""
        sender = self.run.config.render.sender
        for item in pending:
            subscriber = self.wanted[item.subscriber]
            self._expect(item.message_id, item.paper_ids)
            self.resent.add(item.message_id)
            envelope = envelope_for(sender, subscriber.email)
            yield Outgoing(item.message_id, subscriber.email, envelope, item.data)
        for email in self._produce(fresh):
            papers = self._expect(email.message_id, email.paper_ids)
            self.ledger.record_pending(
                email.message_id, email.subscriber, papers, email.data, self.now
            )
            yield Outgoing.of(email)

    def _produce(self, fresh: list[Subscriber]) -> Iterable[RenderedEmail]:
        """The new digests of ``fresh`` subscribers (noting who gets none, and why)."""
        history = self.ledger.history(self.run.retry_failed)
        config = self.run.config
        papers = candidate_papers(self.store, fresh, config, self.now, history)
        order = Order(fresh, papers, config.matching, self.renderer, self.now, history)
        for item in produce(order):
            if item.email is None:
                subscriber = self.wanted[item.subscriber.casefold()]
                self.skipped.append(SkippedItem(subscriber.email, item.reason or "no digest"))
            else:
                yield item.email

    def _expect(self, message_id: str, papers: tuple[str, ...]) -> tuple[str, ...]:
        """Note the papers of a message on its way; the report keeps one string per paper id
        (each arrives as its own copy from the workers: 100,000 reports held ~60 MB of them)."""
        papers = tuple(self.ids.setdefault(paper, paper) for paper in papers)
        self.papers[message_id] = papers
        return papers

    def _record(self, result: Result) -> None:
        """Record one result at once (its own commit) and add it to the report."""
        item, now = result.outgoing, self.now
        email = self.wanted[item.subscriber.casefold()].email
        if result.delivered:
            self.ledger.record_sent(item.message_id, result.attempts, now)
            papers = self.papers.pop(item.message_id)
            resent = item.message_id in self.resent
            self.sent.append(SentItem(email, papers, item.message_id, resent))
            return
        self.papers.pop(item.message_id, None)
        error = result.error or "failed"
        self.ledger.record_failure(
            item.message_id, result.attempts, error, result.code, result.permanent, now
        )
        self.failed.append(FailedItem(email, error, result.code, result.permanent))
