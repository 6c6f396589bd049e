"""Reader for arXiv feeds: the listing RSS 2.0 of 2024+ (``rss.arxiv.org/rss/cs.LG``, with
``arxiv:announce_type``), the old RSS 1.0/RDF listing (the type in the title: ``UPDATED``,
``CROSS LISTED``), and the Atom responses of the arXiv API (``export.arxiv.org/api/query``),
old and new. feedparser does the XML; this module turns its entries into cards.

Only new submissions and cross-lists are kept by default: a replacement (v2, v3) is a paper
already announced, never a new one to send. Entity declarations are refused before parsing
(no arXiv feed has them; an "entity bomb" does).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from datetime import date

from newsletter.errors import DigestError
from newsletter.models import DEFAULT_ANNOUNCE_TYPES, Card, Details, Digest, SourceWarning
from newsletter.sources.fields import (
    ABSTRACT_MAX,
    AUTHORS_MAX,
    TITLE_MAX,
    capped_warnings,
    clean,
    cut_abstract,
    links,
    local_date,
    texts,
)
from newsletter.sources.identity import canonical_arxiv_id
from newsletter.sources.kinds import Reader

FORMAT = "arxiv-feed"
KEEP = frozenset(DEFAULT_ANNOUNCE_TYPES)
_ROOTS = (b"<rss", b"<rdf:RDF", b"<feed")
_ENTITY = re.compile(rb"<!ENTITY", re.IGNORECASE)
_OLD_TITLE = re.compile(r"\s*\(arXiv:(\S+)\s+\[([^\]]*)\](?:\s+(UPDATED|CROSS LISTED))?\)\s*$")
_OLD_TYPES = {None: "new", "UPDATED": "replace", "CROSS LISTED": "cross"}
_NAME_SEPARATOR = re.compile(r"\s*,\s*(?:and\s+)?|\s+and\s+")
# In the API's free-text comment: "Code: https://github.com/…", "Project page: https://…".
_GITHUB = re.compile(r"https?://github\.com/[\w.-]+/[\w.-]+", re.IGNORECASE)
_PROJECT = re.compile(
    r"project\s*(?:page|website|site)?\s*(?:is\s+at|at|:)?\s*(https?://\S+)", re.IGNORECASE
)
_ABSTRACT = re.compile(r"^\s*arXiv:\S+\s+Announce Type:\s*\S+\s*Abstract:\s*", re.IGNORECASE)
_TAG = re.compile(r"<[^>]+>")


def is_feed(data: bytes) -> bool:
    """Does this XML look like an RSS or Atom feed?"""
    head = data[:4096]
    return any(root in head for root in _ROOTS)


def parse_bytes(
    data: bytes, *, today: date, listing_date: date | None = None, keep: Iterable[str] = KEEP
) -> Digest:
    """Read an arXiv feed; DigestError when it is not one, or is not safe to parse."""
    if _ENTITY.search(data[: 64 * 1024]):
        raise DigestError(
            "this XML declares entities (<!ENTITY>), which no arXiv feed does and an "
            "'entity bomb' does; refused"
        )
    import feedparser  # (here: only a folder holding a feed needs it, 30 ms of each start)

    parsed = feedparser.parse(data)
    if parsed.bozo and not parsed.entries:
        raise DigestError(f"not a readable feed: {parsed.get('bozo_exception', 'invalid XML')}")
    _refuse_api_error(parsed.entries)
    warnings: list[SourceWarning] = []
    listing = listing_date or _listing_date(parsed)
    if listing is None:
        listing = today
        warnings.append(SourceWarning(None, f"no feed date; using {today.isoformat()}"))
    wanted = frozenset(keep)
    cards = []
    for number, entry in enumerate(parsed.entries, 1):
        card, kind = _card(number, entry, listing, warnings)
        if card is not None and kind in wanted:
            cards.append(card)
    return Digest(FORMAT, listing, tuple(cards), capped_warnings(warnings))


def _card(
    number: int, entry: dict, listing: date, warnings: list[SourceWarning]
) -> tuple[Card | None, str]:
    """The card of one entry and its announce type (None with a warning when unusable)."""
    title = clean(html.unescape(entry.get("title") or ""))
    old = _OLD_TITLE.search(title)
    kind = entry.get("arxiv_announce_type") or "new"
    raw_id = entry.get("id") or entry.get("link") or ""
    categories = _categories(entry)
    if old:  # RSS 1.0: "Title. (arXiv:1209.2411v1 [math.PR] UPDATED)"
        title, raw_id, kind = title[: old.start()], old.group(1), _OLD_TYPES[old.group(3)]
        categories = categories or tuple(old.group(2).replace(",", " ").split())
    abstract = clean(html.unescape(_TAG.sub(" ", entry.get("summary") or "")))
    abstract = _ABSTRACT.sub("", abstract)
    if not title or not abstract:
        warnings.append(SourceWarning(None, f"entry {number} has no title or abstract; skipped"))
        return None, kind
    if len(title) > TITLE_MAX:
        warnings.append(SourceWarning(None, f"entry {number}: a title too long to be one"))
        return None, kind
    if len(abstract) > ABSTRACT_MAX:
        abstract = cut_abstract(abstract)
    arxiv_id = canonical_arxiv_id(_id_part(str(raw_id)))
    authors = _authors(entry)
    comment = entry.get("arxiv_comment") or ""
    card = Card(
        title=title.rstrip("."),
        abstract=abstract,
        line=number,
        authors_count=len(authors) or None,
        published=local_date(entry.get("published")) or listing,
        arxiv_id=arxiv_id,
        details=Details(
            authors=authors,
            categories=categories,
            links=links(
                ("arxiv", None if arxiv_id else entry.get("link")),
                ("github", _first(_GITHUB, comment, 0)),
                ("project", _first(_PROJECT, comment, 1)),
            ),
            announce_type=kind,
        ),
    )
    return card, kind


def _id_part(raw: str) -> str:
    """``2604.21952v1`` from ``oai:arXiv.org:2604.21952v1`` or ``…/abs/2604.21952v1``."""
    return raw.rsplit("/abs/", 1)[-1].rsplit("oai:arXiv.org:", 1)[-1]


def _authors(entry: dict) -> tuple[str, ...]:
    """Author names: one element each (Atom), or one comma-joined element (RSS; links
    around each name in RSS 1.0)."""
    found = entry.get("authors") or []
    if len(found) > 1:
        names = [author.get("name") for author in found]
    else:
        text = html.unescape(_TAG.sub("", entry.get("author") or ""))
        names = _NAME_SEPARATOR.split(text)
    return texts(names, AUTHORS_MAX)


def _categories(entry: dict) -> tuple[str, ...]:
    """Its arXiv categories, the primary one first (the API names it; feeds list it first)."""
    primary = (entry.get("arxiv_primary_category") or {}).get("term")
    terms = [primary, *(tag.get("term") for tag in entry.get("tags") or [])]
    return tuple(dict.fromkeys(clean(term) for term in terms if clean(term)))[:20]


def _first(pattern: re.Pattern[str], text: str, group: int) -> str | None:
    found = pattern.search(text)
    return found.group(group).rstrip(".,;)") if found else None


def _refuse_api_error(entries: list) -> None:
    """The arXiv API answers a bad query with a feed of one entry, the error."""
    if len(entries) == 1 and "/api/errors" in str(entries[0].get("id", "")):
        message = clean(entries[0].get("summary")) or "no message"
        raise DigestError(f"the arXiv API answered with an error instead of papers: {message}")


def _listing_date(parsed: dict) -> date | None:
    """The feed's own date, in the feed's time zone (arXiv's day, not UTC's); for an API
    response (whose date is when it was asked), the day of its newest paper."""
    feed = parsed.feed
    if "opensearch_totalresults" in feed:
        days = [local_date(entry.get("published")) for entry in parsed.entries]
        return max((day for day in days if day), default=None) or local_date(feed.get("updated"))
    for key in ("published", "updated"):
        found = local_date(feed.get(key))
        if found:
            return found
    return None


def _recognises(data: bytes) -> bool:
    return data[: 64 * 1024].lstrip()[:1] == b"<" and is_feed(data)


def _read(data: bytes, today: date, listing_date: date | None, keep: Iterable[str]) -> Digest:
    return parse_bytes(data, today=today, listing_date=listing_date, keep=keep)


READER = Reader(FORMAT, _recognises, _read)
