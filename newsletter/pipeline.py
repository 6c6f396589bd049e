"""The stages wired together: ingest (files -> store), select (store + profiles -> matches),
send (matches -> rendered emails -> delivery, recorded in the ledger)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from email.utils import parseaddr
from pathlib import Path

from newsletter.config import Config
from newsletter.delivery import (
    OutboxTransport,
    Outgoing,
    Result,
    Retry,
    SmtpTransport,
    Transport,
    deliver,
)
from newsletter.errors import DigestError
from newsletter.matching import History, Matcher, Selection
from newsletter.mime import idna_address
from newsletter.models import (
    FailedItem,
    FileReport,
    IngestReport,
    Paper,
    SendReport,
    SentItem,
    SkippedItem,
    Subscriber,
)
from newsletter.produce import Order, produce
from newsletter.render import Renderer
from newsletter.sources import read_digest_bytes
from newsletter.store import DigestRecord, Ledger, Pending, Store


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
        if (record := history.get(s.email)) and record.last_digest_at
    ]
    return store.papers(since=min([oldest, *cutoffs]) - timedelta(microseconds=1))


def select(
    store: Store,
    subscribers: Sequence[Subscriber],
    config: Config,
    *,
    now: datetime,
    history: Mapping[str, History] | None = None,
) -> Iterator[Selection]:
    """What each of ``subscribers`` would receive now from the papers in the store (yielded
    one subscriber at a time, so a long list never sits in memory as emails)."""
    history = history or {}
    papers = candidate_papers(store, subscribers, config, now, history)
    return Matcher(subscribers, config.matching).iter_select(papers, now, history)


def history_from(ledger: Ledger, retry_failed: bool = False) -> dict[str, History]:
    """The matcher's view of the ledger: last digest and papers not to offer again."""
    return {
        subscriber: History(last, frozenset(papers))
        for subscriber, (last, papers) in ledger.history(retry_failed).items()
    }


def make_transport(config: Config, environ: Mapping[str, str]) -> Transport:
    """The configured delivery: the Maildir outbox or the SMTP server."""
    if config.delivery == "smtp":
        return SmtpTransport(config.smtp, environ)
    return OutboxTransport(config.outbox_dir)


@dataclass
class _Run:
    """The bookkeeping of one send: the report as it fills, keyed by subscriber."""

    sent: list[SentItem] = field(default_factory=list)
    skipped: list[SkippedItem] = field(default_factory=list)
    failed: list[FailedItem] = field(default_factory=list)
    papers: dict[str, tuple[str, ...]] = field(default_factory=dict)  # message id -> papers
    resent: set[str] = field(default_factory=set)  # message ids sent again as they were
    ids: dict[str, str] = field(default_factory=dict)  # one copy of each paper id

    def expect(self, message_id: str, papers: tuple[str, ...]) -> tuple[str, ...]:
        """Note the papers of a message on its way; the report keeps one string per paper id
        (each arrives as its own copy from the workers: 100,000 reports held ~60 MB of them)."""
        papers = tuple(self.ids.setdefault(paper, paper) for paper in papers)
        self.papers[message_id] = papers
        return papers


def send(
    store: Store,
    subscribers: Sequence[Subscriber],
    config: Config,
    transport: Transport,
    *,
    now: datetime,
    environ: Mapping[str, str],
    dry_run: bool = False,
    retry_failed: bool = False,
    retry: Retry | None = None,
    on_result: Callable[[], None] | None = None,
    stop: threading.Event | None = None,
) -> SendReport:
    """Send each of ``subscribers`` their digest now; record every accepted message at once.

    A digest left pending by an interrupted run is sent again as it was (same bytes, same
    Message-ID) before anything new is composed for that subscriber. Setting ``stop`` ends the
    run early: messages in flight finish and are recorded, nothing new is handed over."""
    stop = stop or threading.Event()
    ledger = Ledger(store)
    run = _Run()
    receiving = [s for s in subscribers if s.receives]
    for subscriber in subscribers:
        if not subscriber.receives:
            reason = "paused" if subscriber.active else "inactive (active: false)"
            run.skipped.append(SkippedItem(subscriber.email, reason))
    wanted = {s.email.casefold(): s for s in receiving}
    pending = [p for p in ledger.pending() if p.subscriber in wanted]
    waiting = {p.subscriber for p in pending}
    fresh = [s for s in receiving if s.email.casefold() not in waiting]
    Renderer(config, environ)  # template and unsubscribe mistakes surface here, as ConfigError
    outgoing = _until(
        stop,
        _outgoing(
            store, ledger, run, pending, fresh, wanted, config, environ, now, dry_run, retry_failed
        ),
    )
    if dry_run:
        for _ in outgoing:  # renders and reports; delivers and records nothing
            pass
    else:
        retry = retry or Retry(config.smtp.max_attempts, config.smtp.retry_delay)
        for result in deliver(transport, outgoing, retry, stop=threading.Event()):
            _record(ledger, run, wanted, result, now)
            if on_result:
                on_result()
    return SendReport(tuple(run.sent), tuple(run.skipped), tuple(run.failed), dry_run)


def _outgoing(
    store: Store,
    ledger: Ledger,
    run: _Run,
    pending: list[Pending],
    fresh: list[Subscriber],
    wanted: dict[str, Subscriber],
    config: Config,
    environ: Mapping[str, str],
    now: datetime,
    dry_run: bool,
    retry_failed: bool,
) -> Iterator[Outgoing]:
    """The messages to hand over, pending ones first; records each as pending first."""
    sender = parseaddr(config.render.sender)[1]
    for item in pending:
        subscriber = wanted[item.subscriber]
        run.expect(item.message_id, item.paper_ids)
        run.resent.add(item.message_id)
        if dry_run:
            run.sent.append(SentItem(subscriber.email, item.paper_ids, item.message_id, True))
            continue
        yield _message(subscriber, sender, item.message_id, item.data)
    history = history_from(ledger, retry_failed)
    papers = candidate_papers(store, fresh, config, now, history)
    for item in produce(Order(fresh, papers, config, now, history, environ)):
        subscriber, rendered = wanted[item.subscriber.casefold()], item.email
        if rendered is None:
            run.skipped.append(SkippedItem(subscriber.email, item.reason or "no digest"))
            continue
        papers = run.expect(rendered.message_id, rendered.paper_ids)
        if dry_run:
            run.sent.append(SentItem(subscriber.email, papers, rendered.message_id))
            continue
        ledger.record_pending(rendered.message_id, subscriber.email, papers, rendered.data, now)
        yield _message(subscriber, sender, rendered.message_id, rendered.data)


def _until(stop: threading.Event, items: Iterator[Outgoing]) -> Iterator[Outgoing]:
    """``items`` until ``stop`` is set (the item being prepared is still handed over: it is
    already recorded as pending)."""
    for item in items:
        yield item
        if stop.is_set():
            return


def _message(subscriber: Subscriber, sender: str, message_id: str, data: bytes) -> Outgoing:
    recipient = idna_address(subscriber.email)
    return Outgoing(
        message_id=message_id,
        subscriber=subscriber.email,
        sender=idna_address(sender),
        recipient=recipient,
        data=data,
        smtputf8=not recipient.isascii(),
    )


def _record(
    ledger: Ledger, run: _Run, wanted: dict[str, Subscriber], result: Result, now: datetime
) -> None:
    """Record one result at once (its own commit) and add it to the report."""
    item = result.outgoing
    email = wanted[item.subscriber.casefold()].email
    if result.delivered:
        ledger.record_sent(item.message_id, result.attempts, now)
        papers = run.papers.pop(item.message_id)
        run.sent.append(SentItem(email, papers, item.message_id, item.message_id in run.resent))
        return
    run.papers.pop(item.message_id, None)
    ledger.record_failure(
        item.message_id, result.attempts, result.error or "", result.code, result.permanent, now
    )
    run.failed.append(FailedItem(email, result.error or "failed", result.code, result.permanent))
