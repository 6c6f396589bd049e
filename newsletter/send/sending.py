"""One send over an open store: who gets what, each digest recorded pending before it is handed
over and sent once accepted."""

from __future__ import annotations

import contextlib
import email
import email.message
import email.policy
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from itertools import islice
from zoneinfo import ZoneInfo

from newsletter.config.settings import Config, SmtpSettings
from newsletter.delivery.flow import STOP_GRACE, Retry, StopSignal, deliver
from newsletter.delivery.pacing import Clock, Pacer
from newsletter.delivery.refusals import MAILBOX, refusal_kind
from newsletter.delivery.transport import Outgoing, Result, Transport
from newsletter.errors import StoreError
from newsletter.ledger.ledger import Handover, Ledger, Pending
from newsletter.ledger.suppression import SubscriberState
from newsletter.matching.matcher import explain_sent, lookback_start
from newsletter.models import History, RenderedEmail, Subscriber
from newsletter.render.renderer import Renderer
from newsletter.reports import FailedItem, SendReport, SentItem, SkippedItem
from newsletter.send.produce import Produces, RenderOrder, produce
from newsletter.store.papers import Store
from newsletter.world import World

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


STOPPED_REASON = "not sent yet: the send was stopped before their turn (the next send sends it)"


SENT_GROUP = 16  # accepted messages recorded in one commit at most (_HeldResults)


SENT_LINGER = 0.005  # seconds an accepted message waits for others to share its commit


class _HeldResults:
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


@dataclass(frozen=True)
class SendOptions:
    """What a run asks of its sending."""

    dry_run: bool = False  # render and report; deliver and record nothing
    ignore_schedule: bool = False  # everyone now, not only the due
    retry_failed: bool = False  # offer again papers whose delivery failed for good
    stop: StopSignal | None = None  # set: nothing more is handed over
    on_result: Callable[[], None] | None = None  # after each recorded message
    retry: Retry | None = None  # default: from the smtp settings
    stop_grace: float | None = STOP_GRACE  # once stopped, how long messages on their way take


@dataclass(frozen=True)
class SendContext:
    """What one sending works with, given explicitly: the config, the world, the run's
    moment (every digest of a run is made as of it) and the options."""

    config: Config
    world: World
    now: datetime
    options: SendOptions = SendOptions()


class Sending:
    """One send over an open store: the report as it fills, keyed by subscriber."""

    def __init__(
        self,
        context: SendContext,
        store: Store,
        ledger: Ledger,
        transport: Transport,
        renderer: Renderer | None,  # (None: plans only)
        producer: Produces | None = None,  # rendering workers started ahead, or kept
    ) -> None:
        self.context = context
        self.config = context.config
        self.world = context.world
        self.options = context.options
        self.producer = producer
        self.store = store
        self.ledger = ledger
        self.transport = transport
        self.renderer = renderer
        self.now = context.now
        self.timetable = self.config.schedule.timetable()  # who is due, when the next digest comes
        self.sent: list[SentItem] = []
        self.skipped: list[SkippedItem] = []
        self.failed: list[FailedItem] = []
        self.papers: dict[str, tuple[str, ...]] = {}  # message id -> papers, until recorded
        self.resent: set[str] = set()  # message ids sent again as they were
        self.ids: dict[str, str] = {}  # one copy of each paper id
        self.wanted: dict[str, Subscriber] = {}  # casefolded address -> receiving subscriber
        self.history: dict[str, History] = {}
        self.served: list[str] = []  # found to have nothing to send (a digest records itself)
        # why nothing more was handed over (a full disk, a lost database connection)
        self.halted: StoreError | None = None

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
        if self.renderer is not None and self.renderer.signer is not None:
            emails = [s.email for s in self.wanted.values()]
            self.ledger.record_link_keys(self.renderer.signer, emails, self.now)
        only = list(self.wanted) if self.ledger.run else None  # (a chunk reads its own)
        since = lookback_start(self.config, self.now)
        self.history = self.ledger.history(self.options.retry_failed, since=since, only=only)
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
        config = self.config
        retry = self.options.retry or Retry(config.smtp.max_attempts, config.smtp.retry_delay)
        outgoing = self._outgoing(pending, fresh)
        pacer = self._pacer()
        group = _HeldResults(self.world.monotonic if pacer.limits_nothing else None)
        stop, grace = self.options.stop, self.options.stop_grace
        try:
            for results in deliver(self.transport, outgoing, retry, stop, pacer, grace):
                self._record(group.add(results))
        except BaseException:
            with contextlib.suppress(StoreError):  # (what was accepted is not sent again)
                self._record(group.take())
            raise
        self._record(group.take())
        outgoing.close()  # (after a cap: the rest is neither rendered nor recorded)
        if self.halted is not None:  # (the same kind: a lost connection stays weather)
            sent = f"{len(self.sent)} sent and recorded before that"
            raise type(self.halted)(f"{self.halted} ({sent})") from self.halted
        self.ledger.record_served(self.served, self.now)
        due = [p.subscriber for p in pending] + [s.email for s in fresh]
        held = self._hold(due, pacer)
        stopped = self._left_by_stop(due) if held == 0 else False
        return replace(self.so_far(), capped=pacer.capped, held=held, stopped=stopped)

    def so_far(self) -> SendReport:
        """What this sending has done and recorded until now."""
        return SendReport(tuple(self.sent), tuple(self.skipped), tuple(self.failed))

    def _pacer(self) -> Pacer:
        """The limits of ``smtp.rate`` and ``smtp.domains`` (none for the outbox; a dry run
        counts the caps but does not wait)."""
        world, config = self.world, self.config
        settings = config.smtp if self.transport.rate_limited else SmtpSettings()
        capped = settings.rate.per_hour or settings.rate.per_day
        earlier = self.ledger.sent_since(self.now - timedelta(days=1)) if capped else []
        clock = Clock(world.monotonic, world.sleep)
        return Pacer(settings, clock, self.now, earlier, pace=not self.options.dry_run)

    def _hold(self, due: list[str], pacer: Pacer) -> int:
        """After a cap stopped the send: a skip for each due subscriber left for later."""
        if pacer.capped is None:
            return 0
        cap = pacer.capped
        reason = (
            f"held back: {cap.describe()} is reached; more go from "
            f"{cap.resets_at:%Y-%m-%d %H:%M %Z} (the next run sends them)"
        )
        return self._leave(due, reason)

    def _left_by_stop(self, due: list[str]) -> bool:
        """After a stop (SIGTERM, Ctrl-C, a worker's lease lost): a skip for each due
        subscriber not served; whether the send was stopped."""
        stop = self.options.stop
        if stop is None or not stop.is_set():
            return False
        self._leave(due, STOPPED_REASON)
        return True

    def _leave(self, due: list[str], reason: str) -> int:
        """A skip saying ``reason`` for each of ``due`` the report does not list yet."""
        seen = {item.subscriber.casefold() for item in (*self.sent, *self.failed, *self.skipped)}
        left = [self.wanted[key.casefold()].email for key in due if key.casefold() not in seen]
        self.skipped.extend(SkippedItem(email, reason) for email in left)
        return len(left)

    def _due(self, subscribers: list[Subscriber]) -> list[Subscriber]:
        """The subscribers due now (all of them when the schedule is ignored); a skip saying
        until when for the others."""
        if self.options.ignore_schedule:
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
                again = resent_copy(item, subscriber, self.store, self.renderer, self.config)
                yield Outgoing.of(again)
            size = max(PENDING_BATCH, self.transport.batch)
            for batch in batched(self._produce(fresh), size):
                self._make_room(len(batch))
                handovers = [
                    Handover(
                        r.message_id,
                        r.subscriber,
                        self._expect(r.message_id, r.paper_ids),
                        r.explained,
                    )
                    for r in batch
                ]
                self.ledger.record_pending(handovers, self.now)
                yield from map(Outgoing.of, batch)
        except StoreError as exc:
            # Stop handing over; messages in flight still finish and are recorded.
            self.halted = exc

    def _make_room(self, digests: int) -> None:
        """StoreError unless the state disk has room to record ``digests`` more (a
        PostgreSQL store records nothing there)."""
        if self.options.dry_run or not self.store.db.in_state_folder:
            return
        state = self.config.state_dir
        free = self.world.free_bytes(state)
        if free < RECORD_RESERVE + digests * RECORD_SIZE:
            raise StoreError(
                f"the disk holding {state} is full ({free // 1024:,} KB free), so nothing more "
                "can be recorded: sending stopped before handing over more messages; free "
                "some space and run again"
            )

    def _produce(self, fresh: list[Subscriber]) -> Iterable[RenderedEmail]:
        """The new digests of ``fresh`` subscribers (noting who gets none, and why)."""
        config = self.config
        papers = self.store.papers(since=lookback_start(config, self.now)) if fresh else []
        order = RenderOrder(
            fresh,
            papers,
            config.matching,
            self.renderer,
            self.now,
            self.history,
            self.timetable,
            self.transport.spool() if fresh else None,  # (the outbox's; not SMTP's)
        )
        items = self.producer.produce(order) if self.producer else produce(order)
        for item in items:
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
            self.ledger.record_sent(sent, self.world.now())
        for result in results:
            item = result.outgoing
            email = self.wanted[item.subscriber.casefold()].email
            papers = self.papers.pop(item.message_id, ())
            if result.delivered:
                resent = item.message_id in self.resent
                self.sent.append(SentItem(email, papers, item.message_id, resent))
            else:
                self._record_failure(result, email)
        if self.options.on_result:
            for _ in results:
                self.options.on_result()

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
        refusal = refusal_kind(result.code, error) if result.permanent else None
        if refusal == MAILBOX:  # the address does not exist: never offered papers again
            detail = f"refused by {self.transport.where}: {error}"[:300]
            SubscriberState(self.store).suppress(email, "bounced", "refusal", self.now, detail)
        self.failed.append(FailedItem(email, error, result.code, result.permanent, refusal))
