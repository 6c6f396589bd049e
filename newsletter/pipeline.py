"""The use cases, written once; the CLI and the daemon only parse, call and print or log.

``Run`` is one send: lock the state folder, ingest new digest files, then match, render,
deliver and record each subscriber's digest (``newsletter send`` and every run of the
daemon). ``preview`` is one subscriber's digest as a send would make it now; ``fetch_sources``,
``ingest_files`` and ``stored_papers`` serve the commands of the same names.
"""

from __future__ import annotations

import contextlib
import email
import email.message
import email.policy
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from newsletter.config import Config, FetchSettings, SmtpSettings, SourceSettings
from newsletter.delivery.flow import DryRunTransport, Outgoing, Result, Retry, Transport, deliver
from newsletter.delivery.outbox import OutboxTransport
from newsletter.delivery.pacing import Clock, Pacer
from newsletter.delivery.smtp import SmtpTransport
from newsletter.errors import ConfigError, StoreError
from newsletter.files.yamlfile import load_yaml
from newsletter.ledger.ledger import DryRunLedger, Handover, Ledger, Pending, moment
from newsletter.ledger.lock import profiles_lock, state_lock
from newsletter.ledger.suppression import SubscriberState
from newsletter.matching.matcher import Matcher, explain_sent
from newsletter.models import (
    FailedItem,
    FetchReport,
    History,
    IngestReport,
    Paper,
    RenderedEmail,
    Selection,
    SendReport,
    SentItem,
    SkippedItem,
    SourceStatus,
    Subscriber,
)
from newsletter.parallel import Order, Workers, no_digest_reason, produce, start_workers
from newsletter.profiles.cache import load_profiles_cached
from newsletter.profiles.load import Profiles, Spread, entries_guess, load_profiles
from newsletter.render.links import make_signer
from newsletter.render.renderer import Renderer, load_templates
from newsletter.sources import discover_digests
from newsletter.store.ingest import ingest
from newsletter.store.papers import Store, open_store_for, store_url

if TYPE_CHECKING:
    import httpx

    from newsletter.render.dkim import DkimSigner


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def _http_client(settings: FetchSettings) -> httpx.Client:
    # (imported here: only a fetch needs httpx, 40 ms of every start)
    from newsletter.sources.fetch import make_client

    return make_client(settings)


# Free space kept for records before messages are handed over: their pending rows and the
# journal's copies, plus this (a message handed over must be recordable as sent, or the next
# run would hand it over again, and again: one more copy per run while the disk stays full).
RECORD_RESERVE = 1024 * 1024
RECORD_SIZE = 4096  # what one digest's rows take, at most (message id, ~10 papers, journal)
# New digests recorded as pending in one commit before any of them is handed over: a commit
# per digest cost more than the rest of its recording (bench/ledger.py), and a batch must
# stay small, or delivery idles while it fills at the start of a run (a transport taking
# batches, the outbox, has its batches recorded as one each).
PENDING_BATCH = 32
SENT_GROUP = 16  # accepted messages recorded in one commit at most (_Group)
SENT_LINGER = 0.005  # seconds an accepted message waits for others to share its commit
TEMPLATES_CACHE = "templates.cache"  # the HTML template with its CSS inlined, in the state folder


@dataclass(frozen=True)
class World:
    """What the program takes from outside: the clock and the environment (tests pass
    their own)."""

    now: Callable[[], datetime] = _utc_now
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    free_bytes: Callable[[Path], int] = _free_bytes  # free space on the disk holding a path
    http: Callable[[FetchSettings], httpx.Client] = _http_client  # for fetching sources
    sleep: Callable[[float], None] = time.sleep  # between retries of a fetch; pacing sends
    monotonic: Callable[[], float] = time.monotonic  # pacing sends (smtp.rate)


@dataclass(frozen=True)
class Share:
    """A chunk of a run shared by workers (PostgreSQL): the run's id and moment (every chunk
    is made as of it), and the fence of the chunk's lease (raises once it is lost)."""

    run: str
    as_of: datetime
    fence: Callable[[Any], None]


@dataclass
class Run:
    """One send run: the request, and ``once`` to carry it out.

    Only due subscribers are served (``slots.Timetable``), unless ``ignore_schedule``.
    ``stop`` ends the run early (messages in flight finish and are recorded; nothing new is
    handed over); ``on_result`` is called after each recorded message (a progress bar).
    On PostgreSQL the run is cut into chunks that this process and any ``newsletter
    worker`` share (``workers.coordinate``); ``share`` is set on a chunk's own Run."""

    config: Config
    world: World
    dry_run: bool = False  # render and report; deliver and record nothing
    ignore_schedule: bool = False  # everyone now (send --now), not only the due
    retry_failed: bool = False  # offer again papers whose delivery failed for good
    holder: str = "send"  # who holds the lock, as another process sees it
    stop: threading.Event | None = None
    on_result: Callable[[], None] | None = None
    on_start: Callable[[int], None] | None = None  # told how many the run may serve
    retry: Retry | None = None  # default: from the smtp settings
    transport: Transport | None = None  # default: the configured one
    share: Share | None = None  # a chunk of a shared run
    id: str | None = None  # a shared run's id (default: a new one; the scheduler sets it)

    def once(self, subscribers: Sequence[Subscriber] | FromProfileFile) -> SendReport:
        """Ingest new digest files, then send each of ``subscribers`` who is due their
        digest."""
        with self._workers_ahead(subscribers) as pool:
            if isinstance(subscribers, FromProfileFile):
                subscribers = subscribers.read(self.config, pool.map_ahead if pool else None)
            if self.on_start:
                self.on_start(len(subscribers))
            renderer = make_renderer(self.config, self.world.environ)  # mistakes before the lock
            transport = self.transport or (
                DryRunTransport()
                if self.dry_run
                else make_transport(self.config, self.world.environ)
            )
            with (
                state_lock(self.config.state_dir, self.holder),
                open_store_for(self.config, self.world.environ) as store,
            ):
                ingested = ingest(
                    store,
                    discover_digests(self.config.digests),
                    now=self.world.now(),
                    keep=self.config.announce_types,
                )
                if store.db.dialect == "postgresql" and not self.dry_run:
                    from newsletter.cluster.worker import (
                        coordinate,  # (workers builds on this module)
                    )

                    report = coordinate(self, store, subscribers)
                else:
                    ledger = DryRunLedger(store) if self.dry_run else Ledger(store)
                    sending = _Sending(self, store, ledger, transport, renderer, pool)
                    report = sending.send(subscribers)
        return replace(report, dry_run=self.dry_run, ingest=ingested, where=transport.where)

    def _workers_ahead(
        self, subscribers: Sequence[Subscriber] | FromProfileFile
    ) -> contextlib.AbstractContextManager[Workers | None]:
        """Rendering workers started first, to start up while the run reads the profile
        file, ingests and plans (none for a shared run on PostgreSQL: each of its chunks
        starts its own)."""
        shared = store_url(self.config, self.world.environ) != "sqlite"
        if shared and not self.dry_run:
            return contextlib.nullcontext()
        expected = (
            subscribers.expected(self.config)
            if isinstance(subscribers, FromProfileFile)
            else len(subscribers)
        )
        pool = start_workers(expected, idle=self._renders_idle())
        return contextlib.nullcontext() if pool is None else pool

    def _renders_idle(self) -> bool:
        """Whether the rendering workers take only CPU nothing else wants
        (parallel._yield_the_cpu): during a send over SMTP, whose threads wait on the
        server's replies and must get a core the moment one comes."""
        return self.config.delivery == "smtp" and not self.dry_run

    def plan(self, store: Store, subscribers: Sequence[Subscriber]) -> tuple[SendReport, list[str]]:
        """Who this run serves, recorded as seen: the skipped (in a report) and the
        addresses to send to (pending digests first), for the chunks of a shared run."""
        sending = _Sending(self, store, Ledger(store), DryRunTransport(), None)
        pending, fresh = sending.plan(subscribers)
        addresses = [sending.wanted[p.subscriber].email for p in pending]
        addresses += [s.email for s in fresh]
        return SendReport((), tuple(sending.skipped), ()), addresses

    def chunk(
        self, store: Store, subscribers: Sequence[Subscriber], renderer: Renderer
    ) -> SendReport:
        """Send a chunk of a shared run (``share``) to ``subscribers``; their digests carry
        the run, so no subscriber gets two in one run, whichever worker made them."""
        assert self.share is not None
        transport = self.transport or make_transport(self.config, self.world.environ)
        ledger = Ledger(store, run=self.share.run, fence=self.share.fence)
        report = _Sending(self, store, ledger, transport, renderer).send(subscribers)
        return replace(report, where=transport.where)


class _Group:
    """Results held back to be recorded in one commit: a commit a message cost ~100 us of
    the caller's thread, which shares the GIL and the cores with the connections
    (bench/send.py). A result waits at most ``SENT_GROUP`` results, and as results come, at
    most ``SENT_LINGER`` seconds; so a kill can leave that many more accepted and
    unrecorded (each sent again as it was, the same message). Without a clock (a paced
    send: no hurry, and the report follows each message), nothing is held."""

    def __init__(self, clock: Callable[[], float] | None) -> None:
        self.clock = clock
        self.held: list[Result] = []
        self.since = 0.0  # when the first held result came

    def add(self, results: list[Result]) -> list[Result]:
        """``results`` came: those to record now (none while the group fills)."""
        if self.clock is None:
            return results
        if not self.held:
            self.since = self.clock()
        self.held += results
        if len(self.held) < SENT_GROUP and self.clock() - self.since < SENT_LINGER:
            return []
        return self.take()

    def take(self) -> list[Result]:
        """Every result held; none is held any more."""
        held, self.held = self.held, []
        return held


def make_transport(config: Config, environ: Mapping[str, str]) -> Transport:
    """The configured delivery: the Maildir outbox or the SMTP server."""
    if config.delivery == "smtp":
        return SmtpTransport(config.smtp, environ)
    return OutboxTransport(config.outbox_dir)


def make_renderer(config: Config, environ: Mapping[str, str]) -> Renderer:
    """The renderer for ``config``: templates compiled, link secrets from ``environ``."""
    signer = make_signer(config.render, environ)
    dkim = _dkim_signer(config, environ)
    cache = config.state_dir / TEMPLATES_CACHE if config.state_dir.is_dir() else None
    return Renderer(config.render, load_templates(config.templates, cache), signer, dkim)


def _dkim_signer(config: Config, environ: Mapping[str, str]) -> DkimSigner | None:
    """The DKIM signer, or None when DKIM is off (its libraries are then not imported: a
    tenth of a second of each start)."""
    if not config.dkim.enabled:
        return None
    from newsletter.render.dkim import make_dkim_signer

    return make_dkim_signer(config.dkim, environ)


def dkim_record(config: Config, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """The DNS TXT record (name, value) receivers check the DKIM signatures against, or
    None when DKIM is off."""
    signer = _dkim_signer(config, environ)
    if signer is None:
        return None
    from newsletter.render.dkim import dns_record

    return dns_record(signer)


def setup_problems(config: Config, environ: Mapping[str, str]) -> list[str]:
    """What a send would stumble on that the config file alone does not show: templates
    that do not compile, secrets missing from ``environ``, a DKIM key that will not do."""
    problems: list[str] = []
    for build in (make_renderer, dkim_record):  # (each reports its own first mistake)
        try:
            build(config, environ)
        except ConfigError as exc:
            problems.extend(p for p in exc.problems if p not in problems)
    smtp = config.smtp
    if config.delivery == "smtp" and smtp.password_env and not environ.get(smtp.password_env):
        where = load_yaml(config.path).where(("smtp", "password_env"))
        problems.append(
            f"{where}: ${smtp.password_env} is not set: export the SMTP password in that "
            "variable for every send (and for newsletter run)"
        )
    return problems


def try_connection(config: Config, environ: Mapping[str, str]) -> str:
    """Connect to the configured SMTP server (TLS and login included; nothing is sent) and
    say what happened; a DeliveryError says what failed and what to check."""
    transport = SmtpTransport(config.smtp, environ)
    transport.connect().open().close()
    return transport.describe()


@dataclass(frozen=True)
class FromProfileFile:
    """The subscribers of the configured profile file (only those of ``emails``, if any),
    read by the run itself: after it has started its rendering workers, which start up
    while it reads the file (a second of a first 20,000-subscriber send, bench/pipeline.py).
    """

    emails: tuple[str, ...] = ()

    def read(self, config: Config, spread: Spread | None = None) -> Sequence[Subscriber]:
        """The subscribers, loaded and checked (on ``spread``, if given; a ProfileError
        lists the mistakes)."""
        profiles = profiles_of(config, spread)
        return profiles.named(self.emails) if self.emails else profiles.subscribers

    def expected(self, config: Config) -> int:
        """About how many there are, without reading the file as YAML (enough to tell
        whether workers will be needed; a wrong guess only costs their start-up)."""
        return len(self.emails) if self.emails else entries_guess(config.subscribers)


def profiles_of(config: Config, spread: Spread | None = None) -> Profiles:
    """The profile file ``config`` names, loaded with its defaults (never while a
    preferences edit is replacing it); its entries checked on ``spread``, if given, when
    they are not in the cache."""
    if not config.state_dir.is_dir():  # no state yet, so no edit either: create nothing
        return load_profiles(config.subscribers, config.schedule, config.matching, spread)
    with profiles_lock(config.state_dir, exclusive=False):
        return load_profiles_cached(
            config.subscribers, config.schedule, config.matching, config.state_dir, spread
        )


def lookback_start(config: Config, now: datetime) -> datetime:
    """Papers first seen after this are candidates (``lookback_days``)."""
    return now - timedelta(days=config.matching.lookback_days) - timedelta(microseconds=1)


@dataclass(frozen=True)
class Preview:
    """One subscriber's next send, as ``send --subscriber`` would make it now."""

    selection: Selection | None  # None when a pending digest goes first
    email: RenderedEmail | None  # None when nothing matched (and send_empty is off)
    pending: bool  # the email is a digest an interrupted run left: handed over first
    reason: str | None  # why there is no email
    digests: int  # digest files ingested so far


def preview(
    config: Config, world: World, subscriber: Subscriber, everything: bool = False
) -> Preview:
    """What a send would give ``subscriber`` now (``everything``: from all papers of the
    lookback window, as if nothing had been sent); sends and records nothing."""
    renderer = make_renderer(config, world.environ)
    now = world.now()
    with open_store_for(config, world.environ) as store:
        digests = len(store.digests())
        suppression = SubscriberState(store).suppression(subscriber.email)
        if suppression is not None:  # the next send skips them
            return Preview(None, None, False, suppression.describe(), digests)
        ledger = Ledger(store)
        key = subscriber.email.casefold()
        pending = (
            None
            if everything
            else next((item for item in ledger.pending() if item.subscriber == key), None)
        )
        if pending is not None:
            shown = resent_copy(pending, subscriber, store, renderer, config)
            return Preview(None, shown, True, None, digests)
        since = lookback_start(config, now)
        history = {} if everything else ledger.history(since=since)
        papers = store.papers(since=since)
    (selection,) = Matcher([subscriber], config.matching).select(papers, now, history)
    next_send = config.schedule.timetable().next_fire(subscriber, now)
    rendered = renderer.render(selection, now, next_send)
    reason = None
    if rendered is None:
        reason = no_digest_reason(selection, history.get(key), config.matching.lookback_days)
    return Preview(selection, rendered, False, reason, digests)


def batched(items: Iterable[RenderedEmail], size: int) -> Iterator[list[RenderedEmail]]:
    """``items`` in lists of ``size`` (the last may be shorter); itertools.batched, 3.12+."""
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def resent_copy(
    pending: Pending, subscriber: Subscriber, store: Store, renderer: Renderer, config: Config
) -> RenderedEmail:
    """A pending digest as it is handed over again: the same Message-ID, papers (in their
    order) and Date, rendered again from the ledger's record (each paper explained by the
    profile as it is now); a row from before schema 7 gives back its stored bytes."""
    if pending.data is not None:
        return _from_bytes(pending, subscriber, renderer)
    papers = store.papers_in_order(pending.paper_ids)
    when = pending.created_at
    selection = explain_sent(subscriber, papers, when, config.matching)
    rendered = renderer.render(selection, when, message_id=pending.message_id)
    assert rendered is not None  # a recorded digest has papers
    return rendered


def _from_bytes(pending: Pending, subscriber: Subscriber, renderer: Renderer) -> RenderedEmail:
    """A pending digest of stored bytes as a RenderedEmail, its parts read back."""
    assert pending.data is not None
    message = email.message_from_bytes(pending.data, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    parts = [message.get_body((kind,)) for kind in ("plain", "html")]
    text, html = (str(part.get_content()) if part else "" for part in parts)
    return RenderedEmail(
        subscriber=subscriber.email,
        subject=str(message["Subject"]),
        html=html,
        text=text,
        message_id=pending.message_id,
        paper_ids=pending.paper_ids,
        data=pending.data,
        envelope=renderer.envelope(subscriber.email),
    )


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
    if not days:
        return source.recent_days(today)
    return days[-1:] if source.type == "arxiv_rss" else days


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
                    url=source.base_url,
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


class _Sending:
    """One send over an open store: the report as it fills, keyed by subscriber."""

    def __init__(
        self,
        run: Run,
        store: Store,
        ledger: Ledger,
        transport: Transport,
        renderer: Renderer | None,  # (None: plans only)
        pool: Workers | None = None,  # rendering workers started ahead
    ) -> None:
        self.run = run
        self.pool = pool
        self.store = store
        self.ledger = ledger
        self.transport = transport
        self.renderer = renderer
        self.now = run.share.as_of if run.share else run.world.now()
        self.timetable = run.config.schedule.timetable()  # who is due, when the next digest comes
        self.sent: list[SentItem] = []
        self.skipped: list[SkippedItem] = []
        self.failed: list[FailedItem] = []
        self.papers: dict[str, tuple[str, ...]] = {}  # message id -> papers, until recorded
        self.resent: set[str] = set()  # message ids sent again as they were
        self.ids: dict[str, str] = {}  # one copy of each paper id
        self.wanted: dict[str, Subscriber] = {}  # casefolded address -> receiving subscriber
        self.history: dict[str, History] = {}
        self.served: list[str] = []  # found to have nothing to send (a digest records itself)
        self.halted: str | None = None  # why nothing more was handed over (a full disk)

    def send(self, subscribers: Sequence[Subscriber]) -> SendReport:
        """Send each due one of ``subscribers`` their digest; record every accepted message
        at once.

        A digest left pending by an interrupted run is sent again as it was (same bytes, same
        Message-ID) before anything new is composed for that subscriber, due or not."""
        pending, fresh = self.plan(subscribers)
        return self.deliver(pending, fresh)

    def plan(self, subscribers: Sequence[Subscriber]) -> tuple[list[Pending], list[Subscriber]]:
        """Who gets what: the pending digests to hand over again and the subscribers due a
        new one (the others are skipped, saying why)."""
        only = [s.email.casefold() for s in subscribers] if self.ledger.run else None
        suppressed = SubscriberState(self.store).suppressed(only)  # (a chunk: its own)
        for subscriber in subscribers:
            suppression = suppressed.get(subscriber.email.casefold())
            if suppression is not None:
                self.skipped.append(SkippedItem(subscriber.email, suppression.describe()))
            elif subscriber.receives:
                self.wanted[subscriber.email.casefold()] = subscriber
            else:
                reason = "paused" if subscriber.active else "inactive (active: false)"
                self.skipped.append(SkippedItem(subscriber.email, reason))
        self._done_before()
        only = list(self.wanted) if self.ledger.run else None  # (a chunk reads its own)
        since = lookback_start(self.run.config, self.now)
        self.history = self.ledger.history(self.run.retry_failed, since=since, only=only)
        unseen = [key for key in self.wanted if key not in self.history]
        self.ledger.record_seen(unseen, self.now)
        pending = [p for p in self.ledger.pending(only) if p.subscriber in self.wanted]
        waiting = {p.subscriber for p in pending}
        fresh = self._due([s for key, s in self.wanted.items() if key not in waiting])
        return pending, fresh

    def _done_before(self) -> None:
        """A chunk done again (its first worker died): those of its subscribers whose digest
        of this run was accepted, or failed for good, are reported as such, not served again."""
        done = self.ledger.done_in_run(list(self.wanted)) if self.ledger.run else {}
        for key, (message_id, status, error) in done.items():
            email = self.wanted.pop(key).email
            if status == "sent":
                self.sent.append(SentItem(email, self.ledger.papers_of(message_id), message_id))
            else:
                self.failed.append(FailedItem(email, error or "failed", None, True))

    def deliver(self, pending: list[Pending], fresh: list[Subscriber]) -> SendReport:
        """Hand over ``pending`` then new digests of ``fresh``, recording each result."""
        config = self.run.config
        retry = self.run.retry or Retry(config.smtp.max_attempts, config.smtp.retry_delay)
        outgoing = self._outgoing(pending, fresh)
        pacer = self._pacer()
        group = _Group(self.run.world.monotonic if pacer.limits_nothing else None)
        try:
            for results in deliver(self.transport, outgoing, retry, self.run.stop, pacer):
                self._record(group.add(results))
        except BaseException:
            with contextlib.suppress(StoreError):  # (what was accepted is not sent again)
                self._record(group.take())
            raise
        self._record(group.take())
        outgoing.close()  # (after a cap: the rest is neither rendered nor recorded)
        if self.halted:
            raise StoreError(f"{self.halted} ({len(self.sent)} sent and recorded before that)")
        self.ledger.record_served(self.served, self.now)
        held = self._hold([p.subscriber for p in pending] + [s.email for s in fresh], pacer)
        lists = tuple(self.sent), tuple(self.skipped), tuple(self.failed)
        return SendReport(*lists, capped=pacer.capped, held=held)

    def _pacer(self) -> Pacer:
        """The limits of ``smtp.rate`` and ``smtp.domains`` (none for the outbox; a dry run
        counts the caps but does not wait)."""
        world, config = self.run.world, self.run.config
        as_smtp = self.run.dry_run and config.delivery == "smtp"  # (what the real send does)
        limited = as_smtp or getattr(self.transport, "rate_limited", False)
        settings = config.smtp if limited else SmtpSettings()
        capped = settings.rate.per_hour or settings.rate.per_day
        earlier = self.ledger.sent_since(self.now - timedelta(days=1)) if capped else []
        clock = Clock(world.monotonic, world.sleep)
        return Pacer(settings, clock, self.now, earlier, pace=not self.run.dry_run)

    def _hold(self, due: list[str], pacer: Pacer) -> int:
        """After a cap stopped the send: a skip for each due subscriber left for later."""
        if pacer.capped is None:
            return 0
        seen = {item.subscriber.casefold() for item in (*self.sent, *self.failed, *self.skipped)}
        left = [self.wanted[key.casefold()].email for key in due if key.casefold() not in seen]
        cap = pacer.capped
        reason = (
            f"held back: {cap.describe()} is reached; more go from "
            f"{cap.resets_at:%Y-%m-%d %H:%M %Z} (the next run sends them)"
        )
        self.skipped.extend(SkippedItem(email, reason) for email in left)
        return len(left)

    def _due(self, subscribers: list[Subscriber]) -> list[Subscriber]:
        """The subscribers due now (all of them when the schedule is ignored); a skip saying
        until when for the others."""
        if self.run.ignore_schedule:
            return subscribers
        timetable = self.timetable
        due = []
        for subscriber in subscribers:
            record = self.history.get(subscriber.email.casefold())
            if timetable.is_due(subscriber, self.now, record):
                due.append(subscriber)
                continue
            until = timetable.next_fire(subscriber, self.now)
            local = until.astimezone(ZoneInfo(subscriber.timezone)) if until else None
            reason = f"not due until {local:%a %Y-%m-%d %H:%M %Z}" if local else "never due"
            self.skipped.append(SkippedItem(subscriber.email, reason, until))
        return due

    def _outgoing(self, pending: list[Pending], fresh: list[Subscriber]) -> Iterator[Outgoing]:
        """The messages to hand over, pending ones first; each written to the ledger before
        it is handed over (new ones as pending, a batch per commit; a pending one touched),
        and none once the ledger cannot take a write: what was handed over must be
        recordable as sent."""
        try:
            for item in pending:
                self._make_room(1)
                self.ledger.record_retry(item.message_id, self.now)
                subscriber = self.wanted[item.subscriber]
                self._expect(item.message_id, item.paper_ids)
                self.resent.add(item.message_id)
                again = resent_copy(item, subscriber, self.store, self.renderer, self.run.config)
                yield Outgoing.of(again)
            size = max(PENDING_BATCH, getattr(self.transport, "batch", 1))
            for batch in batched(self._produce(fresh), size):
                self._make_room(len(batch))
                handovers = [
                    Handover(r.message_id, r.subscriber, self._expect(r.message_id, r.paper_ids))
                    for r in batch
                ]
                self.ledger.record_pending(handovers, self.now)
                yield from map(Outgoing.of, batch)
        except StoreError as exc:
            # Stop handing over; messages in flight still finish and are recorded.
            self.halted = str(exc)

    def _make_room(self, digests: int) -> None:
        """StoreError unless the state disk has room to record ``digests`` more (a
        PostgreSQL store records nothing there)."""
        if self.run.dry_run or self.store.db.dialect != "sqlite":
            return
        state = self.run.config.state_dir
        free = self.run.world.free_bytes(state)
        if free < RECORD_RESERVE + digests * RECORD_SIZE:
            raise StoreError(
                f"the disk holding {state} is full ({free // 1024:,} KB free), so nothing more "
                "can be recorded: sending stopped before handing over more messages; free "
                "some space and run again"
            )

    def _produce(self, fresh: list[Subscriber]) -> Iterable[RenderedEmail]:
        """The new digests of ``fresh`` subscribers (noting who gets none, and why)."""
        config = self.run.config
        papers = self.store.papers(since=lookback_start(config, self.now)) if fresh else []
        spool = getattr(self.transport, "spool", None)  # (the outbox; not SMTP, not a dry run)
        order = Order(
            fresh,
            papers,
            config.matching,
            self.renderer,
            self.now,
            self.history,
            self.timetable,
            spool() if spool and fresh else None,
        )
        for item in produce(order, pool=self.pool):
            if item.email is None:
                subscriber = self.wanted[item.subscriber.casefold()]
                self.skipped.append(SkippedItem(subscriber.email, item.reason or "no digest"))
                self.served.append(subscriber.email)
            else:
                yield item.email

    def _expect(self, message_id: str, papers: tuple[str, ...]) -> tuple[str, ...]:
        """Note the papers of a message on its way; the report keeps one string per paper id
        (each arrives as its own copy from the workers: 100,000 reports held ~60 MB of them)."""
        papers = tuple(self.ids.setdefault(paper, paper) for paper in papers)
        self.papers[message_id] = papers
        return papers

    def _record(self, results: list[Result]) -> None:
        """Record results that came together at once (the accepted ones in one commit) and
        add them to the report."""
        if not results:
            return
        accepted = [r for r in results if r.delivered]
        if accepted:
            # (when they were accepted, not when the run began: the caps count these)
            sent = [(r.outgoing.message_id, r.attempts) for r in accepted]
            self.ledger.record_sent(sent, self.run.world.now())
        for result in results:
            item = result.outgoing
            email = self.wanted[item.subscriber.casefold()].email
            papers = self.papers.pop(item.message_id, ())
            if result.delivered:
                resent = item.message_id in self.resent
                self.sent.append(SentItem(email, papers, item.message_id, resent))
            else:
                self._record_failure(result, email)
        if self.run.on_result:
            for _ in results:
                self.run.on_result()

    def _record_failure(self, result: Result, email: str) -> None:
        error = result.error or "failed"
        self.ledger.record_failure(
            result.outgoing.message_id,
            result.attempts,
            error,
            result.code,
            result.permanent,
            self.now,
        )
        self.failed.append(FailedItem(email, error, result.code, result.permanent))
