"""Frozen values passed between the pipeline's stages."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time

from newsletter.files.pickling import pickled_as_tuple
from newsletter.matching.keywords import Keyword

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
FREQUENCIES = ("daily", "weekly", "paused")
# arXiv's announce types, and those read unless a source says otherwise: a replacement (v2,
# v3) is a paper already announced, never a new one to send.
ANNOUNCE_TYPES = ("new", "cross", "replace", "replace-cross")
DEFAULT_ANNOUNCE_TYPES = ("new", "cross")
ARXIV_CATEGORY = re.compile(r"[a-z\-]+(\.[A-Za-z\-]+)?")  # cs.LG, math.CO, hep-th


@dataclass(frozen=True, slots=True)
class SourceWarning:
    """Something odd in a digest file, tied to a line (1-based) when there is one."""

    line: int | None
    message: str


LINK_KINDS = ("hf", "arxiv", "pdf", "github", "project")


@dataclass(frozen=True, slots=True)
class Details:
    """What the richer sources (HF JSON, arXiv feeds) tell about a paper beyond its title and
    abstract; text captures leave it empty."""

    authors: tuple[str, ...] = ()  # names, in the paper's order
    categories: tuple[str, ...] = ()  # arXiv categories, the primary one first
    links: tuple[tuple[str, str], ...] = ()  # (kind, https URL); kinds from LINK_KINDS
    ai_keywords: tuple[str, ...] = ()
    ai_summary: str | None = None
    announce_type: str | None = None  # arXiv: new | cross | replace | replace-cross

    def link(self, kind: str) -> str | None:
        """The URL of ``kind`` (see LINK_KINDS), if a source gave one."""
        return next((url for known, url in self.links if known == kind), None)


@dataclass(frozen=True, slots=True)
class Card:
    """One paper as a source listed it, before the store gives it an identity."""

    title: str
    abstract: str
    line: int
    authors_count: int | None = None
    organization: str | None = None
    published: date | None = None
    comments: int = 0
    upvotes: int | None = None
    arxiv_id: str | None = None
    details: Details = Details()


@dataclass(frozen=True, slots=True)
class Digest:
    """What a reader made of one digest file."""

    format: str
    listing_date: date
    cards: tuple[Card, ...]
    warnings: tuple[SourceWarning, ...]


@dataclass(frozen=True, slots=True)
class Paper:
    """A paper as the store knows it."""

    id: str
    title: str
    abstract: str
    authors_count: int | None
    organization: str | None
    published: date | None
    comments: int
    upvotes: int | None
    listing_date: date
    source: str
    first_seen: datetime
    arxiv_id: str | None = None
    details: Details = Details()

    @property
    def links(self) -> dict[str, str]:
        """Its links by kind: those the sources gave, and the arXiv abstract and PDF of its
        arXiv id (every arXiv paper has both)."""
        found = dict(self.details.links)
        if self.arxiv_id:
            found.setdefault("arxiv", f"https://arxiv.org/abs/{self.arxiv_id}")
            found.setdefault("pdf", f"https://arxiv.org/pdf/{self.arxiv_id}")
        return {kind: found[kind] for kind in LINK_KINDS if kind in found}

    def to_json(self) -> dict[str, object]:
        """The paper as the JSON object of ``newsletter papers --json``."""
        details = self.details
        return {
            "id": self.id,
            "arxiv_id": self.arxiv_id,
            "title": self.title,
            "abstract": self.abstract,
            "authors_count": self.authors_count,
            "organization": self.organization,
            "published": self.published.isoformat() if self.published else None,
            "comments": self.comments,
            "upvotes": self.upvotes,
            "listing_date": self.listing_date.isoformat(),
            "source": self.source,
            "first_seen": self.first_seen.isoformat(),
            "authors": list(details.authors),
            "categories": list(details.categories),
            "links": self.links,
            "ai_keywords": list(details.ai_keywords),
            "ai_summary": details.ai_summary,
            "announce_type": details.announce_type,
        }


@pickled_as_tuple  # (the profile cache holds 20,000 and more)
@dataclass(frozen=True, slots=True)
class Subscriber:
    """One checked entry of the profile file."""

    email: str
    keywords: tuple[Keyword, ...]
    exclude: tuple[Keyword, ...] = ()
    require: tuple[Keyword, ...] = ()
    authors: tuple[str, ...] = ()  # followed people, as written
    categories: tuple[str, ...] = ()  # arXiv categories or archives ("cs"); () = all
    name: str | None = None
    max_papers: int = 10
    min_score: int = 1
    trending: int = 0  # the most upvoted new papers outside the keywords added (0-10)
    frequency: str = "daily"  # daily | weekly | paused
    day: str | None = None  # weekday name, for weekly
    send_at: time = time(7, 0)
    timezone: str = "UTC"
    active: bool = True
    line: int = 0  # where the entry starts in the profile file

    @property
    def receives(self) -> bool:
        """Is this subscriber sent anything at all (active and not paused)?"""
        return self.active and self.frequency != "paused"


@dataclass(frozen=True)
class Refused:
    """A subscriber's newest digest, when the server refused it for good: when, the
    server's words, and how many papers it held (not offered again without --retry-failed)."""

    at: datetime
    error: str
    papers: int


@dataclass(frozen=True)
class History:
    """What a subscriber already received (when, and which papers), and when sends first
    saw and last served them (sent a digest, or found nothing to send): what makes them due."""

    last_digest_at: datetime | None = None
    sent: frozenset[str] = frozenset()
    first_seen: datetime | None = None
    last_served: datetime | None = None
    refused: Refused | None = None  # the newest digest, refused for good after the last sent


@dataclass(frozen=True)
class Match:
    """One paper for one subscriber, with the explanation."""

    paper: Paper
    score: int
    title_keywords: tuple[str, ...]  # as the subscriber wrote them
    abstract_keywords: tuple[str, ...]
    title_spans: tuple[tuple[int, int], ...]  # character ranges of paper.title to highlight
    abstract_spans: tuple[tuple[int, int], ...]
    authors: tuple[str, ...] = ()  # followed authors of the paper, as the subscriber wrote them
    # What occurred of each keyword (its first occurrence, as the paper wrote it): the
    # alternative or the prefix's word, in the order of title_keywords / abstract_keywords.
    title_found: tuple[str, ...] = ()
    abstract_found: tuple[str, ...] = ()
    trending: bool = False  # not a keyword match: one of the most upvoted new papers


@dataclass(frozen=True)
class Selection:
    """What one subscriber receives now: the best matches, in send order."""

    subscriber: Subscriber
    matches: tuple[Match, ...]
    candidates: int  # new papers not yet sent to them
    matched: int  # candidates that passed score, require and exclude

    @property
    def ranked(self) -> int:
        """The keyword (and followed-author) matches sent; the trending papers come after."""
        return sum(not match.trending for match in self.matches)

    @property
    def left_out(self) -> int:
        """Matches beyond ``max_papers``."""
        return self.matched - self.ranked


@pickled_as_tuple
@dataclass(frozen=True, slots=True)
class Envelope:
    """The SMTP envelope of a digest: addresses as they go on the wire (IDNA domains)."""

    sender: str
    recipient: str

    @property
    def smtputf8(self) -> bool:
        """Does the recipient's address need SMTPUTF8 (a non-ASCII local part)?"""
        return not self.recipient.isascii()


@pickled_as_tuple
@dataclass(frozen=True, slots=True)
class RenderedEmail:
    """One subscriber's digest, rendered: the parts, and the exact bytes to send."""

    subscriber: str  # the address
    subject: str
    html: str
    text: str
    message_id: str
    paper_ids: tuple[str, ...]  # the papers this email carries, in order
    data: bytes  # the serialized MIME message (CRLF line ends)
    envelope: Envelope
    staged: bool = False  # the bytes are on disk in the outbox's spool already, not in data
    explained: bytes | None = None  # what matched, per paper (``matching.explained``, packed)


SUPPRESSION_REASONS = ("unsubscribed", "bounced", "complained")


@dataclass(frozen=True, slots=True)
class Suppression:
    """An address never to be mailed, whatever the profile file says, until it is lifted."""

    address: str
    reason: str  # unsubscribed | bounced | complained
    how: str  # one-click, web, mailto, cli, bounce, complaint
    at: datetime
    detail: str | None = None

    def describe(self) -> str:
        """ "unsubscribed on 2026-03-12 (one-click)" and the detail, if any."""
        text = f"{self.reason} on {self.at:%Y-%m-%d} ({self.how})"
        return f"{text}: {self.detail}" if self.detail else text


@dataclass(frozen=True)
class NewProfile:
    """An entry to add to the profile file: the operator's ``newsletter subscribe``, or a
    confirmed sign-up; None leaves a setting to the file's defaults."""

    email: str
    keywords: tuple[str, ...]
    name: str | None = None
    frequency: str | None = None  # daily | weekly
    day: str | None = None  # for weekly
    send_at: time | None = None
    timezone: str | None = None


@dataclass(frozen=True)
class SignupRequest:
    """A reader's sign-up on the web as the store keeps it: the entry asked for, which mail
    it caused (``confirm``: the confirmation link; ``known``: the address is subscribed
    already, it got its preferences link), and, once confirmed, when and how."""

    id: str  # random; the confirmation link's token signs it
    profile: NewProfile
    asked_at: datetime
    mail: str  # confirm | known
    confirmed_at: datetime | None = None
    how: str | None = None  # "web double opt-in"

    @property
    def address(self) -> str:
        """The address it is for."""
        return self.profile.email


@dataclass(frozen=True, slots=True)
class SubscriberEvent:
    """One change of a subscriber's state, or a bounce that counts towards one."""

    at: datetime
    event: str  # unsubscribed, resubscribed, bounced, soft-bounce, complained
    how: str
    detail: str | None = None

    def to_json(self) -> dict[str, object]:
        """As ``--json`` prints it."""
        return {"at": self.at.isoformat(), "event": self.event, "how": self.how} | (
            {"detail": self.detail} if self.detail else {}
        )


@dataclass(frozen=True, slots=True)
class Feedback:
    """A subscriber's click on "more like this" (more) or "not relevant" (less)."""

    paper_id: str
    digest: str
    kind: str  # more | less
    at: datetime


@dataclass(frozen=True, slots=True)
class SentDigest:
    """One digest of a subscriber's history (``newsletter history``)."""

    message_id: str
    key: str  # its key in links (``envelope.digest_key``)
    status: str  # pending | sent | failed
    created_at: datetime
    sent_at: datetime | None
    papers: tuple[str, ...]  # in the order sent
    error: str | None = None
    explained: str | None = None  # what matched then (``matching.explained``; None before 0.2)

    def to_json(self) -> dict[str, object]:
        """As ``newsletter history --json`` prints it."""
        return {
            "message_id": self.message_id,
            "status": self.status,
            "created_at": self.created_at.isoformat(),
            "sent_at": self.sent_at.isoformat() if self.sent_at else None,
            "papers": list(self.papers),
            "error": self.error,
        }
