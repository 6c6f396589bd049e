"""What the use cases report, each rendering itself for --json (to_json): ingest, fetch, send,
preview, sources, subscribers, history, bounces, schedule, workers, migrate-store."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

from newsletter.matching.explained import why_line
from newsletter.models import (
    Feedback,
    RenderedEmail,
    Selection,
    SentDigest,
    SignupRequest,
    SourceWarning,
    Subscriber,
    SubscriberEvent,
    Suppression,
)

if TYPE_CHECKING:  # (profiles imports reports: only the type is needed here)
    from newsletter.profiles.suggest import Suggestion


@dataclass(frozen=True, slots=True)
class FileReport:
    """The outcome of ingesting one file: ingested, skipped (seen before) or rejected."""

    path: str
    status: str  # "ingested" | "skipped" | "rejected"
    cards: int = 0
    new_papers: int = 0
    warnings: tuple[SourceWarning, ...] = ()
    error: str | None = None
    listing_date: date | None = None


@dataclass(frozen=True, slots=True)
class IngestReport:
    """The outcome of one ingest run over several files."""

    files: tuple[FileReport, ...]

    @property
    def rejected(self) -> tuple[FileReport, ...]:
        """Files that could not be read at all."""
        return tuple(f for f in self.files if f.status == "rejected")

    @property
    def new_papers(self) -> int:
        """Papers the store had not seen before this run."""
        return sum(f.new_papers for f in self.files)

    def count(self, status: str) -> int:
        """How many files ended with ``status``."""
        return sum(1 for f in self.files if f.status == status)

    def to_json(self) -> dict[str, object]:
        """The report as ``--json`` prints it."""
        return {
            "ingested": self.count("ingested"),
            "skipped": self.count("skipped"),
            "rejected": self.count("rejected"),
            "new_papers": self.new_papers,
            "files": [
                {
                    "path": f.path,
                    "status": f.status,
                    "new_papers": f.new_papers,
                    "error": f.error,
                    "warnings": [{"line": w.line, "message": w.message} for w in f.warnings],
                }
                for f in self.files
            ],
        }


@dataclass(frozen=True, slots=True)
class SentItem:
    """A digest the server accepted (or, in a dry run, would be handed over)."""

    subscriber: str
    papers: tuple[str, ...]
    message_id: str
    resent: bool = False  # a digest of an earlier, interrupted run, sent again as it was


@dataclass(frozen=True, slots=True)
class SkippedItem:
    """A subscriber who got nothing this run, and why (``until``: not due before then)."""

    subscriber: str
    reason: str
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class CapReached:
    """A cap of ``smtp.rate`` that stopped a send: nothing more goes out before
    ``resets_at`` (a rolling window: when the oldest message it counts leaves it)."""

    limit: str  # "per_hour" or "per_day"
    cap: int
    resets_at: datetime

    def describe(self) -> str:
        """The cap in words, e.g. "the cap of 500 messages per hour (smtp.rate.per_hour)"."""
        unit = self.limit.removeprefix("per_")
        return f"the cap of {self.cap} messages per {unit} (smtp.rate.{self.limit})"


@dataclass(frozen=True, slots=True)
class FailedItem:
    """A subscriber whose digest was not accepted."""

    subscriber: str
    error: str
    code: int | None
    permanent: bool
    refusal: str | None = None  # mailbox (the address is now suppressed) | policy (about us)


@dataclass(frozen=True, slots=True)
class SendReport:
    """What a send did; every subscriber considered appears in exactly one list."""

    sent: tuple[SentItem, ...]
    skipped: tuple[SkippedItem, ...]
    failed: tuple[FailedItem, ...]
    dry_run: bool = False
    ingest: IngestReport = IngestReport(())  # the digest files read before the send
    where: str = ""  # where the messages went: the outbox folder or host:port
    capped: CapReached | None = None  # the cap that stopped the send, if one did
    held: int = 0  # due subscribers left for a later run by ``capped``
    stopped: bool = False  # a stop (a signal) ended it; the due left are skipped, saying so
    sent_earlier: int = 0  # sent by the interrupted run(s) this send finished, before it
    # why the send ended early: its database stayed away past store_retry ("": it did not)
    store_lost: str = ""

    def to_json(self) -> dict[str, object]:
        """The report as ``newsletter send --json`` prints it."""
        return {
            "dry_run": self.dry_run,
            "sent": [
                {"subscriber": s.subscriber, "papers": list(s.papers), "message_id": s.message_id}
                | ({"resent": True} if s.resent else {})
                for s in self.sent
            ],
            "skipped": [
                {"subscriber": s.subscriber, "reason": s.reason}
                | ({"until": s.until.isoformat()} if s.until else {})
                for s in self.skipped
            ],
            "failed": [
                {
                    "subscriber": f.subscriber,
                    "error": f.error,
                    "code": f.code,
                    "permanent": f.permanent,  # false: it stays pending, the next run retries
                    "refusal": f.refusal,
                }
                for f in self.failed
            ],
            "ingest": self.ingest.to_json(),
            "held": self._held_json(),
            "stopped": self.stopped,
            "sent_earlier": self.sent_earlier,
            "store_lost": self.store_lost or None,
        }

    def _held_json(self) -> dict[str, object] | None:
        if self.capped is None:
            return None
        return {
            "count": self.held,
            "limit": self.capped.limit,
            "cap": self.capped.cap,
            "resets_at": self.capped.resets_at.isoformat(),
        }

    @property
    def not_due(self) -> int:
        """How many subscribers were skipped because they were not due."""
        return sum(1 for s in self.skipped if s.until is not None)


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What fetching one URL of a source did."""

    source: str
    url: str
    status: str  # written, unchanged, unchanged (304), already fetched, empty, failed
    path: str | None = None
    papers: int = 0
    error: str | None = None

    def to_json(self) -> dict[str, object]:
        """As ``newsletter fetch --json`` prints it."""
        return {
            "source": self.source,
            "url": self.url,
            "status": self.status,
            "path": self.path,
            "papers": self.papers,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class FetchReport:
    """What a fetch did: each request, then the ingest of the digests folder."""

    results: tuple[FetchResult, ...]
    ingest: IngestReport

    @property
    def failed(self) -> tuple[FetchResult, ...]:
        """The requests that failed."""
        return tuple(r for r in self.results if r.status == "failed")

    def to_json(self) -> dict[str, object]:
        """As ``newsletter fetch --json`` prints it."""
        return {"fetched": [r.to_json() for r in self.results], "ingest": self.ingest.to_json()}


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """How a configured source has been doing (``newsletter sources``)."""

    name: str
    type: str
    url: str
    last_success: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    papers_per_day: float  # new papers a day over the last week
    newest_paper: datetime | None  # when its newest paper was first seen
    stale: bool  # nothing new for ``fetch.stale_after`` days

    def to_json(self) -> dict[str, object]:
        """As ``newsletter sources --json`` prints it."""

        def stamp(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment else None

        return {
            "name": self.name,
            "type": self.type,
            "url": self.url,
            "last_success": stamp(self.last_success),
            "last_error": self.last_error,
            "last_error_at": stamp(self.last_error_at),
            "papers_per_day": round(self.papers_per_day, 1),
            "newest_paper": stamp(self.newest_paper),
            "stale": self.stale,
        }


@dataclass(frozen=True, slots=True)
class SubscriberStatus:
    """An address as ``newsletter subscribers`` shows it: its effective status and why."""

    address: str
    status: str  # active | paused | unsubscribed | bounced | complained
    why: str
    in_profiles: bool
    last_digest: datetime | None
    papers_sent: int

    def to_json(self) -> dict[str, object]:
        """As ``newsletter subscribers --json`` prints it."""
        return {
            "address": self.address,
            "status": self.status,
            "why": self.why,
            "in_profiles": self.in_profiles,
            "last_digest": self.last_digest.isoformat() if self.last_digest else None,
            "papers_sent": self.papers_sent,
        }


@dataclass(frozen=True, slots=True)
class BounceDecision:
    """What one bounce (or complaint) message made of one address."""

    source: str  # the file (and message number) it came from
    address: str | None  # None: no address could be found or attributed
    kind: str  # permanent | temporary | delayed | complaint | unsubscribe | none
    action: str  # suppressed | counted | ignored | unsubscribed
    detail: str  # the status and diagnostic, or why nothing was done
    subscriber: bool = True  # is the address ours (profiles or ledger)?

    def to_json(self) -> dict[str, object]:
        """As ``newsletter bounces --json`` prints it."""
        return {
            "source": self.source,
            "address": self.address,
            "kind": self.kind,
            "action": self.action,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class TableCopy:
    """One table copied by ``migrate-store``: its rows in the source and in the target."""

    table: str
    source: int
    target: int


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """What ``migrate-store`` copied from the SQLite file to PostgreSQL (counts verified)."""

    source: str
    target: str  # the URL, without a password
    tables: tuple[TableCopy, ...]

    def to_json(self) -> dict[str, object]:
        """The report as ``migrate-store --json`` prints it."""
        return {
            "source": self.source,
            "target": self.target,
            "tables": {t.table: {"source": t.source, "target": t.target} for t in self.tables},
        }


@dataclass(frozen=True)
class Preview:
    """One subscriber's next send, as ``send --subscriber`` would make it now."""

    kind: PreviewKind
    subscriber: str
    selection: Selection | None  # None when suppressed, or when a pending digest goes first
    email: RenderedEmail | None  # None when suppressed, or when nothing is sent
    reason: str | None  # why there is no email
    digests: int  # digest files ingested so far

    @property
    def pending(self) -> bool:
        """The email is a digest an interrupted run left: handed over first, as it is."""
        return self.kind is PreviewKind.PENDING

    def to_json(self) -> dict[str, object]:
        """As ``newsletter preview --json`` prints it."""
        if self.kind is PreviewKind.SUPPRESSED:
            return {"subscriber": self.subscriber, "suppressed": self.reason}
        if self.kind is PreviewKind.PENDING:
            assert self.email is not None
            papers = list(self.email.paper_ids)
            pending = {"message_id": self.email.message_id, "papers": papers}
            return {"subscriber": self.subscriber, "pending": pending}
        assert self.selection is not None
        return selection_json(self.selection)


class PreviewKind(enum.Enum):
    """What a preview found: the four things the next send can do for a subscriber."""

    SUPPRESSED = "suppressed"  # skips them (the reason says since when and how)
    PENDING = "pending"  # hands over a digest an interrupted run left
    DIGEST = "digest"  # sends a new digest of the selection
    NOTHING = "nothing"  # sends nothing (the reason says why)


def selection_json(selection: Selection) -> dict[str, object]:
    """A subscriber's matches as ``preview --json`` prints them: each paper's score, what
    matched, and where the highlights go."""
    return {
        "subscriber": selection.subscriber.email,
        "papers": [
            {
                "id": match.paper.id,
                "title": match.paper.title,
                "score": match.score,
                "why": why_line(match),
                "matched": {
                    "authors": list(match.authors),
                    "title": list(match.title_keywords),
                    "abstract": list(match.abstract_keywords),
                },
                "found": {"title": list(match.title_found), "abstract": list(match.abstract_found)},
                "highlight": {
                    "title": [list(span) for span in match.title_spans],
                    "abstract": [list(span) for span in match.abstract_spans],
                },
            }
            for match in selection.matches
        ],
        "candidates": selection.candidates,
        "left_out": selection.left_out,
    }


@dataclass(frozen=True)
class NextSend:
    """A receiving subscriber's next send, as ``newsletter schedule`` lists it."""

    subscriber: str
    schedule: str  # their slot ("daily 07:00 Europe/Paris"), or "cron <expression>"
    timezone: str
    local: datetime
    utc: datetime

    def to_json(self) -> dict[str, object]:
        """As ``newsletter schedule --json`` prints it."""
        return {
            "subscriber": self.subscriber,
            "schedule": self.schedule,
            "timezone": self.timezone,
            "next_local": self.local.isoformat(),
            "next_utc": self.utc.isoformat(),
        }


@dataclass(frozen=True)
class SubscriberHistory:
    """What a subscriber was sent and did (``newsletter history``)."""

    address: str
    digests: tuple[SentDigest, ...]  # newest first
    titles: dict[str, str]  # paper id -> title, for the papers of those digests
    events: tuple[SubscriberEvent, ...]
    feedback: tuple[Feedback, ...]
    suppression: Suppression | None
    suggestions: tuple[Suggestion, ...] = ()  # what the feedback suggests changing

    def to_json(self) -> dict[str, object]:
        """As ``newsletter history --json`` prints it."""
        clicks: dict[str, list[Feedback]] = {}
        for click in self.feedback:
            clicks.setdefault(click.digest, []).append(click)
        return {
            "subscriber": self.address,
            "suppressed": self.suppression.describe() if self.suppression else None,
            "digests": [
                digest.to_json()
                | {
                    "titles": [self.titles.get(p, "") for p in digest.papers],
                    "feedback": [
                        {"paper": c.paper_id, "kind": c.kind, "at": c.at.isoformat()}
                        for c in clicks.get(digest.key, [])
                    ],
                }
                for digest in self.digests
            ],
            "events": [event.to_json() for event in self.events],
            "suggestions": [suggestion.to_json() for suggestion in self.suggestions],
        }


@dataclass(frozen=True)
class WorkerStatus:
    """A live worker as ``newsletter workers`` lists it."""

    id: str
    host: str
    pid: int
    started: datetime
    seen: datetime
    chunk: str | None
    chunks_done: int
    messages: int

    def per_minute(self, now: datetime) -> float:
        """Messages a minute since it started."""
        minutes = max((now - self.started).total_seconds() / 60, 1 / 60)
        return self.messages / minutes

    def to_json(self, now: datetime) -> dict[str, object]:
        """The worker as ``newsletter workers --json`` prints it."""
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "started": self.started.isoformat(),
            "seen": self.seen.isoformat(),
            "chunk": self.chunk,
            "chunks_done": self.chunks_done,
            "messages": self.messages,
            "per_minute": round(self.per_minute(now), 1),
        }


@dataclass(frozen=True)
class Subscription:
    """A subscriber added by ``newsletter subscribe``: where their entry is, when their
    first digest comes, and the suppression that would still hold it back."""

    subscriber: Subscriber
    file: str
    first_digest: datetime | None  # UTC; None: never (paused)
    suppression: Suppression | None


@dataclass(frozen=True)
class TestCopy:
    """``send --to``: a subscriber's next digest sent as a test copy to another address
    (nothing recorded); ``copy`` is None when the next send has nothing for them."""

    subscriber: str
    to: str
    copy: RenderedEmail | None
    reason: str | None  # why there is nothing to copy
    where: str = ""  # the folder or host:port it went to
    error: str | None = None  # why delivery failed


@dataclass(frozen=True)
class SignupOutcome:
    """What a sign-up on the form led to, for the log (the reader sees the same page
    whatever it was): the mail sent (``confirm`` or ``known``), or why none was."""

    address: str
    mail: str | None  # confirm | known | None: refused
    refusal: str | None = None  # honeypot, complained, per-address limit, hourly limit
    request: SignupRequest | None = None
    error: str | None = None  # why the mail could not be delivered


@dataclass(frozen=True)
class SignupLink:
    """A confirmation link opened: its request, and whether it may still be confirmed."""

    request: SignupRequest
    state: str  # ready | confirmed | expired
    expires: datetime


@dataclass(frozen=True)
class Confirmation:
    """A sign-up confirmed: the entry as the profile file now holds it, when the first digest
    comes, the suppression it lifted, and what became of the welcome mail."""

    subscriber: Subscriber
    first_digest: datetime | None  # UTC; None: never (paused)
    lifted: Suppression | None
    added: bool  # False: the address was in the file already (confirmed again)
    welcome_error: str | None = None


@dataclass(frozen=True)
class ValidateReport:
    """What ``validate`` found: every problem of the config, the environment, the templates,
    the profile file and the store at once, and what is sound."""

    config: str  # the config file
    problems: tuple[str, ...]
    profiles: str | None = None  # the profile file, when it was read
    subscribers: int = 0
    receiving: int = 0  # active, not paused, and not suppressed in the store
    suppressed: tuple[tuple[str, int], ...] = ()  # (reason, how many) of the others active
    dkim: tuple[str, str] | None = None  # the TXT record to publish (name, value)
    config_ok: bool = False  # the config and the environment have no problem
    notes: tuple[str, ...] = ()  # what works, but not as the file may expect (no failure)
