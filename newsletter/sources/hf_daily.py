"""Reader for responses of the Hugging Face daily papers API (``/api/daily_papers``).

A response is a JSON list of items, one per paper on the day's listing::

    [{"paper": {"id": "2606.00467", "authors": [{"name": …}, …], "publishedAt": …,
                "title": …, "summary": …, "upvotes": 12, "submittedOnDailyAt": …, …},
      "title": …, "publishedAt": …, "numComments": 3, "organization": {…}?, …}, …]

Both shapes seen since 2024 are read: the 2024 one (item ``title`` unwrapped, paper ``title``
and ``summary`` hard-wrapped with "\\n  ", ``mediaUrl``) and the 2025+ one (adds
``submittedOnDailyAt``, ``ai_keywords``, ``organization`` and more, all optional). The listing
date is the day the papers were on the daily page (``submittedOnDailyAt``; the item's
``publishedAt`` in the 2024 shape), not their arXiv dates, which may be months older. Author
names, the AI keywords and summary, and the HF page, GitHub and project links go into the
card's ``Details`` (a link only when it is a plain http(s) URL).
"""

from __future__ import annotations

import collections
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

from newsletter.errors import DigestError
from newsletter.models import Card, Details, Digest, SourceWarning
from newsletter.sources.fields import (
    ABSTRACT_MAX,
    AI_KEYWORDS_MAX,
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
from newsletter.sources.kinds import Reader, SourceKind

if TYPE_CHECKING:
    from newsletter.config.settings import SourceSettings

FORMAT = "hf-daily"
# A response starts with an object, or a list of objects, or is an empty list; a text
# capture may start with "[-] 19" (an upvote count), which is none of these.
_JSON = re.compile(rb"\s*(\{|\[\s*(\{|\]\s*$))")


def parse_bytes(data: bytes, *, today: date, listing_date: date | None = None) -> Digest:
    """Read a daily papers response (UTF-8 JSON); DigestError when it is not one."""
    items = _items(data)
    reader = _Reader()
    cards = [card for number, item in enumerate(items, 1) if (card := reader.card(number, item))]
    if items and not cards:
        first = reader.warnings[0].message
        raise DigestError(
            f"none of the {len(items)} items is a paper with a title and a summary ({first}); "
            "is this a Hugging Face daily papers response?"
        )
    listing = listing_date or reader.listing_date()
    if listing is None:
        listing = today
        reader.warn(f"no listing date in the response; using the ingest date {today.isoformat()}")
    return Digest(FORMAT, listing, tuple(cards), capped_warnings(reader.warnings))


def _items(data: bytes) -> list:
    """The response's list of items; DigestError naming what came instead."""
    try:
        value = json.loads(data)
    except UnicodeDecodeError as exc:
        raise DigestError(f"not UTF-8 JSON ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        cut = exc.pos >= len(data.rstrip()) - 1
        why = "it ends in the middle (a truncated download?)" if cut else exc.msg
        raise DigestError(
            f"not valid JSON at line {exc.lineno}, column {exc.colno}: {why}; fetch it again"
        ) from exc
    if isinstance(value, dict) and "error" in value:
        raise DigestError(f"the server answered with an error instead of papers: {value['error']}")
    if not isinstance(value, list):
        raise DigestError(
            "JSON, but not a Hugging Face daily papers response (expected a list of "
            f"{{'paper': ...}} items, found {type(value).__name__})"
        )
    return value


@dataclass
class _Reader:
    """Turns items into cards, noting warnings and the days the items were listed on."""

    warnings: list[SourceWarning] = field(default_factory=list)
    days: collections.Counter[date] = field(default_factory=collections.Counter)

    def warn(self, message: str) -> None:
        self.warnings.append(SourceWarning(None, message))

    def card(self, number: int, item: object) -> Card | None:
        """The card of item ``number``, or None (with a warning) when it has no paper."""
        paper = item.get("paper") if isinstance(item, dict) else None
        if not isinstance(paper, dict):
            self.warn(f"item {number} has no 'paper' object; skipped")
            return None
        title = clean(item.get("title")) or clean(paper.get("title"))
        abstract = clean(paper.get("summary")) or clean(item.get("summary"))
        if not title or not abstract:
            missing = "title" if not title else "summary"
            self.warn(f"item {number} ({title or paper.get('id')}) has no {missing}; skipped")
            return None
        if len(title) > TITLE_MAX:
            self.warn(f"item {number}: a title of {len(title):,} characters; skipped")
            return None
        if len(abstract) > ABSTRACT_MAX:
            self.warn(f"item {number}: summary cut to {ABSTRACT_MAX:,} characters")
            abstract = cut_abstract(abstract)
        # The day on the daily page: since 2025 ``submittedOnDailyAt``; in the 2024 shape the
        # item's own ``publishedAt`` (the paper's is its arXiv date in both).
        listed = local_date(paper.get("submittedOnDailyAt")) or local_date(item.get("publishedAt"))
        if listed:
            self.days[listed] += 1
        authors = paper.get("authors")
        arxiv_id = canonical_arxiv_id(str(paper.get("id") or ""))
        return Card(
            title=title,
            abstract=abstract,
            line=number,
            authors_count=len(authors) if isinstance(authors, list) else None,
            organization=_organization(item) or _organization(paper),
            published=local_date(paper.get("publishedAt")) or local_date(item.get("publishedAt")),
            comments=_count(item.get("numComments")) or 0,
            upvotes=_count(paper.get("upvotes")),
            arxiv_id=arxiv_id,
            details=_details(paper, arxiv_id),
        )

    def listing_date(self) -> date | None:
        """The day most items were submitted to the daily page on."""
        return self.days.most_common(1)[0][0] if self.days else None


def _details(paper: dict, arxiv_id: str | None) -> Details:
    """Authors, links and the AI keywords and summary of one paper object."""
    authors = paper.get("authors")
    listed = authors if isinstance(authors, list) else []
    names = [author.get("name") for author in listed if isinstance(author, dict)]
    summary = clean(paper.get("ai_summary"))
    return Details(
        authors=texts(names, AUTHORS_MAX),
        links=links(
            ("hf", f"https://huggingface.co/papers/{arxiv_id}" if arxiv_id else None),
            ("github", paper.get("githubRepo")),
            ("project", paper.get("projectPage")),
        ),
        ai_keywords=texts(paper.get("ai_keywords"), AI_KEYWORDS_MAX),
        ai_summary=cut_abstract(summary) if len(summary) > ABSTRACT_MAX else summary or None,
    )


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _organization(holder: dict) -> str | None:
    found = holder.get("organization")
    if isinstance(found, dict):
        name = clean(found.get("fullname")) or clean(found.get("name"))
        return name[:TITLE_MAX] or None
    return None


def _recognises(data: bytes) -> bool:
    return _JSON.match(data[:4096]) is not None


def _read(data: bytes, today: date, listing_date: date | None, keep: Iterable[str]) -> Digest:
    return parse_bytes(data, today=today, listing_date=listing_date)


READER = Reader(FORMAT, _recognises, _read)


class HfDaily(SourceKind):
    """The Hugging Face daily papers API: ``<url>?date=YYYY-MM-DD``, one request a date."""

    name = "hf_daily"
    default_url = "https://huggingface.co/api/daily_papers"
    reader = READER
    recent_days = 2  # a listing still grows the day after

    def problem(self, source: SourceSettings) -> str | None:
        if source.categories:
            return "'categories' is for arXiv sources; hf_daily lists every category"
        if source.query:
            return f"'query' is for arxiv_query sources, not {self.name}"
        return None


KIND = HfDaily()
