"""Builders for matcher tests, and a slow, obviously-correct reference implementation."""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime, timedelta

from newsletter.config.settings import MatchSettings
from newsletter.matching.keywords import Keyword, parse_keyword
from newsletter.models import Details, History, Paper, Subscriber
from tests.helpers import NOW


def paper(
    title: str,
    abstract: str = "",
    *,
    pid: str | None = None,
    upvotes: int | None = None,
    comments: int = 0,
    published: date | None = None,
    seen: datetime | None = None,
    authors: tuple[str, ...] = (),
    categories: tuple[str, ...] = (),
) -> Paper:
    return Paper(
        id=pid or f"p-{title}",
        title=title,
        abstract=abstract,
        authors_count=None,
        organization=None,
        published=published,
        comments=comments,
        upvotes=upvotes,
        listing_date=date(2026, 3, 12),
        source="test.txt",
        first_seen=seen or NOW - timedelta(hours=1),
        details=Details(authors=authors, categories=categories),
    )


def subscriber(
    *keywords: str,
    email: str = "ada@example.org",
    exclude: tuple[str, ...] = (),
    require: tuple[str, ...] = (),
    max_papers: int = 10,
    min_score: int = 1,
    authors: tuple[str, ...] = (),
    categories: tuple[str, ...] = (),
) -> Subscriber:
    return Subscriber(
        email=email,
        keywords=tuple(parse_keyword(k) for k in keywords),
        exclude=tuple(parse_keyword(k) for k in exclude),
        require=tuple(parse_keyword(k) for k in require),
        max_papers=max_papers,
        min_score=min_score,
        authors=authors,
        categories=categories,
    )


# -- the reference: every rule written out as plainly as possible ---------------------------


def ref_words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", unicodedata.normalize("NFKC", text).casefold())


def ref_word_match(keyword_word: str, text_word: str, prefix: bool) -> bool:
    if prefix:
        return text_word.startswith(keyword_word)
    a, b = keyword_word, text_word
    return (
        a == b
        or b in (a + "s", a + "es")
        or a in (b + "s", b + "es")
        or (a.endswith("y") and b == a[:-1] + "ies")
        or (b.endswith("y") and a == b[:-1] + "ies")
    )


def ref_occurs(keyword: Keyword, text: str) -> bool:
    """Any of the keyword's alternatives occurs in ``text``."""
    text_words = ref_words(text)
    for pattern in keyword.patterns:
        n = len(pattern.words)
        for start in range(len(text_words) - n + 1):
            if all(
                ref_word_match(w, text_words[start + i], pattern.prefix and i == n - 1)
                for i, w in enumerate(pattern.words)
            ):
                return True
    return False


def reference_select(
    subscriber: Subscriber,
    papers: list[Paper],
    settings: MatchSettings,
    now: datetime,
    history: History | None = None,
) -> list[tuple[str, int, tuple[str, ...], tuple[str, ...]]]:
    """(paper id, score, title keywords, abstract keywords) in send order."""
    history = history or History()
    cutoff = now - timedelta(days=settings.lookback_days)
    chosen = []
    for item in papers:
        # New: first seen within lookback_days and never sent to them (leftovers included).
        if item.first_seen < cutoff or item.id in history.sent:
            continue

        def anywhere(keyword: Keyword, item: Paper = item) -> bool:
            return ref_occurs(keyword, item.title) or ref_occurs(keyword, item.abstract)

        if any(anywhere(k) for k in subscriber.exclude):
            continue
        if not all(anywhere(k) for k in subscriber.require):
            continue
        in_title = tuple(k.text for k in subscriber.keywords if ref_occurs(k, item.title))
        in_abstract = tuple(k.text for k in subscriber.keywords if ref_occurs(k, item.abstract))
        score = settings.title_weight * len(in_title) + settings.abstract_weight * len(in_abstract)
        if score >= subscriber.min_score:
            chosen.append((item, score, in_title, in_abstract))
    chosen.sort(
        key=lambda c: (
            -c[1],
            -(c[0].upvotes if c[0].upvotes is not None else -1),
            -c[0].comments,
            -c[0].published.toordinal() if c[0].published else 1,
            c[0].title.casefold(),
            c[0].id,
        )
    )
    return [(c[0].id, c[1], c[2], c[3]) for c in chosen[: subscriber.max_papers]]
