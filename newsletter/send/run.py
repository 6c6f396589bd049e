"""One send run: the request (Run) and carrying it out: ingest, then send each due subscriber
their digest (alone, or in chunks shared by workers on PostgreSQL)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from newsletter.cluster.queue import RunChunk
from newsletter.config.settings import Config
from newsletter.delivery.flow import STOP_GRACE, Retry, StopSignal
from newsletter.delivery.registry import transport_kind
from newsletter.delivery.transport import DryRunTransport, Transport
from newsletter.errors import StoreUnavailable
from newsletter.ledger.ledger import DryRunLedger, Ledger
from newsletter.ledger.lock import state_lock
from newsletter.models import Subscriber
from newsletter.profiles.cache import profiles_of
from newsletter.profiles.load import Profiles, Spread, entries_guess
from newsletter.render.renderer import Renderer
from newsletter.reports import SendReport
from newsletter.send.produce import Produces, RenderPool, start_workers
from newsletter.send.sending import SendContext, Sending, SendOptions
from newsletter.send.shared import Made, coordinate
from newsletter.send.wiring import make_renderer, make_transport
from newsletter.sources.read import discover_digests
from newsletter.store.backend import is_shared_store, open_store_for
from newsletter.store.ingest import ingest
from newsletter.store.papers import Store
from newsletter.world import World


@dataclass(frozen=True)
class Run:
    """One send run: the request, and ``send`` to carry it out.

    Only due subscribers are served (``slots.Timetable``), unless ``ignore_schedule``.
    ``stop`` ends the run early (messages in flight finish and are recorded; nothing new is
    handed over); ``on_result`` is called after each recorded message (a progress bar).
    On PostgreSQL the run is cut into chunks that this process and any ``newsletter
    worker`` share (``send.shared.coordinate``); ``share`` is set on a chunk's own Run."""

    config: Config
    world: World
    dry_run: bool = False  # render and report; deliver and record nothing
    ignore_schedule: bool = False  # everyone now (send --now), not only the due
    retry_failed: bool = False  # offer again papers whose delivery failed for good
    holder: str = "send"  # who holds the lock, as another process sees it
    stop: StopSignal | None = None
    # how long messages on their way may take once ``stop`` is set (None: each its
    # smtp.message_timeout, as `send` waits; the daemon cuts them after STOP_GRACE)
    stop_grace: float | None = STOP_GRACE
    on_result: Callable[[], None] | None = None
    on_start: Callable[[int], None] | None = None  # told how many the run may serve
    retry: Retry | None = None  # default: from the smtp settings
    transport: Transport | None = None  # default: the configured one
    share: RunChunk | None = None  # a chunk of a shared run
    id: str | None = None  # a shared run's id (default: a new one; the scheduler sets it)

    def send(self, subscribers: Sequence[Subscriber] | FromProfileFile) -> SendReport:
        """Ingest new digest files, then send each of ``subscribers`` who is due their
        digest."""
        with self._workers_ahead(subscribers) as pool:
            # (made while the workers start up: they then check the profile file's pieces)
            renderer = make_renderer(self.config, self.world.environ)  # mistakes before the lock
            profiles = None
            if isinstance(subscribers, FromProfileFile):
                profiles = subscribers.load(self.config, pool.map_ahead if pool else None)
                subscribers = subscribers.chosen(profiles)
            if self.on_start:
                self.on_start(len(subscribers))
            transport = self.transport or (
                DryRunTransport(transport_kind(self.config.delivery).rate_limited)
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
                if store.db.shared() is not None and not self.dry_run:
                    made = Made(renderer, profiles, pool)
                    report = coordinate(self, store, subscribers, made)
                else:
                    ledger = DryRunLedger(store) if self.dry_run else Ledger(store)
                    sending = Sending(self.context(), store, ledger, transport, renderer, pool)
                    report = sending.send(subscribers)
        return replace(report, dry_run=self.dry_run, ingest=ingested, where=transport.where)

    def _workers_ahead(
        self, subscribers: Sequence[Subscriber] | FromProfileFile
    ) -> contextlib.AbstractContextManager[RenderPool | None]:
        """Rendering workers started first, to start up while the run reads the profile
        file, ingests and plans (for a shared run on PostgreSQL: kept for this process's
        chunk worker, whose claims are shorter)."""
        kept = is_shared_store(self.config, self.world.environ) and not self.dry_run
        expected = (
            subscribers.expected(self.config)
            if isinstance(subscribers, FromProfileFile)
            else len(subscribers)
        )
        pool = start_workers(expected, idle=self.renders_idle(), kept=kept)
        return contextlib.nullcontext() if pool is None else pool

    def renders_idle(self) -> bool:
        """Whether the rendering workers take only CPU nothing else wants
        (produce._yield_the_cpu): during a send whose connections wait on a server's replies
        (SMTP), so that a reply gets a core the moment it comes."""
        return transport_kind(self.config.delivery).waits_on_server and not self.dry_run

    def context(self) -> SendContext:
        """What its sending works with: the config, the world, the run's moment (a chunk's:
        its run's) and the options."""
        now = self.share.as_of if self.share else self.world.now()
        options = SendOptions(
            self.dry_run,
            self.ignore_schedule,
            self.retry_failed,
            self.stop,
            self.on_result,
            self.retry,
            self.stop_grace,
        )
        return SendContext(self.config, self.world, now, options)

    def plan(
        self, store: Store, subscribers: Sequence[Subscriber], share: RunChunk
    ) -> tuple[SendReport, list[str]]:
        """Who this run serves as the shared run ``share``, recorded as seen: the skipped (in
        a report) and the addresses to send to (pending digests first), for its chunks."""
        context = replace(self, share=share).context()
        sending = Sending(context, store, Ledger(store), DryRunTransport(), None)
        pending, fresh = sending.plan(subscribers)
        addresses = [sending.wanted[p.subscriber].email for p in pending]
        addresses += [s.email for s in fresh]
        return SendReport((), tuple(sending.skipped), ()), addresses

    def chunk(
        self,
        store: Store,
        subscribers: Sequence[Subscriber],
        renderer: Renderer,
        share: RunChunk,
        retry_failed: bool,
        stop: StopSignal | None,
        producer: Produces | None = None,
    ) -> SendReport:
        """Send the chunk ``share`` of a shared run to ``subscribers`` (all of them: the run
        decided who is due), with this run's holder, progress callback, retry policy and
        transport; their digests carry the run, so no subscriber gets two in one run,
        whichever worker made them."""
        run = replace(
            self,
            dry_run=False,
            ignore_schedule=True,
            retry_failed=retry_failed,
            stop=stop,
            on_start=None,
            share=share,
            id=None,
        )
        transport = run.transport or make_transport(run.config, run.world.environ)
        ledger = Ledger(store, run=share.run, fence=share.fence)
        sending = Sending(run.context(), store, ledger, transport, renderer, producer)
        try:
            report = sending.send(subscribers)
        except StoreUnavailable as exc:  # (with what was sent and recorded before it)
            raise StoreUnavailable(str(exc), sending.so_far()) from exc
        return replace(report, where=transport.where)


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
        return self.chosen(self.load(config, spread))

    def load(self, config: Config, spread: Spread | None = None) -> Profiles:
        """The whole profile file, loaded and checked (``read``)."""
        return profiles_of(config, spread)

    def chosen(self, profiles: Profiles) -> Sequence[Subscriber]:
        """The subscribers of ``profiles`` this names."""
        return profiles.named(self.emails) if self.emails else profiles.subscribers

    def expected(self, config: Config) -> int:
        """About how many there are, without reading the file as YAML (enough to tell
        whether workers will be needed; a wrong guess only costs their start-up)."""
        return len(self.emails) if self.emails else entries_guess(config.subscribers)
