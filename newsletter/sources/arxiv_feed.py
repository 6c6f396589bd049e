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

import feedparser

from newsletter.errors import DigestError
from newsletter.identity import canonical_arxiv_id
from newsletter.models import Card, Digest, SourceWarning
from newsletter.sources.fields import (
    ABSTRACT_MAX,
    TITLE_MAX,
    capped_warnings,
    clean,
    cut_abstract,
    local_date,
)

FORMAT = "arxiv-feed"
KEEP = frozenset({"new", "cross"})  # announce types read by default
_ROOTS = (b"<rss", b"<rdf:RDF", b"<feed")
_ENTITY = re.compile(rb"<!ENTITY", re.IGNORECASE)
_OLD_TITLE = re.compile(r"\s*\(arXiv:(\S+)\s+\[[^\]]*\](?:\s+(UPDATED|CROSS LISTED))?\)\s*$")
_OLD_TYPES = {None: "new", "UPDATED": "replace", "CROSS LISTED": "cross"}
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
    parsed = feedparser.parse(data)
    if parsed.bozo and not parsed.entries:
        raise DigestError(f"not a readable feed: {parsed.get('bozo_exception', 'invalid XML')}")
    warnings: list[SourceWarning] = []
    listing = listing_date or _listing_date(parsed.feed)
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
    if old:  # RSS 1.0: "Title. (arXiv:1209.2411v1 [math.PR] UPDATED)"
        title, raw_id, kind = title[: old.start()], old.group(1), _OLD_TYPES[old.group(2)]
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
    card = Card(
        title=title.rstrip("."),
        abstract=abstract,
        line=number,
        authors_count=_authors(entry),
        published=local_date(entry.get("published")) or listing,
        arxiv_id=canonical_arxiv_id(_id_part(str(raw_id))),
    )
    return card, kind


def _id_part(raw: str) -> str:
    """``2604.21952v1`` from ``oai:arXiv.org:2604.21952v1`` or ``…/abs/2604.21952v1``."""
    return raw.rsplit("/abs/", 1)[-1].rsplit("oai:arXiv.org:", 1)[-1]


def _authors(entry: dict) -> int | None:
    names = entry.get("authors") or []
    if len(names) > 1:  # Atom: one element per author
        return len(names)
    text = entry.get("author")  # RSS: one element, comma-joined (or links, in RSS 1.0)
    if not text:
        return None
    return len([name for name in _TAG.sub("", text).split(",") if name.strip()])


def _listing_date(feed: dict) -> date | None:
    """The feed's own date, in the feed's time zone (arXiv's day, not UTC's)."""
    for key in ("published", "updated"):
        found = local_date(feed.get(key))
        if found:
            return found
    return None
