"""What every reader does to the fields it finds: one line of clean text, abstracts cut at a
sane length, dates in the source's own time zone, and a bounded list of warnings."""

from __future__ import annotations

import itertools
from datetime import date, datetime
from email.utils import parsedate_to_datetime

from newsletter.matching.keywords import one_line
from newsletter.models import SourceWarning

# Real titles stay well under this; abstracts run far over it.
TITLE_MAX = 300
# arXiv caps abstracts at 1,920 characters; text past this is no abstract anyone wrote (a
# paste gone wrong, a hostile file) and is cut, so that no later stage ever holds it.
ABSTRACT_MAX = 10_000
# Warnings kept per file; the rest are counted in one summary line.
WARNINGS_MAX = 50


def clean(value: object) -> str:
    """A field as one line of text (wraps joined, control characters gone), or ''."""
    return one_line(value) if isinstance(value, str) else ""


def cut_abstract(text: str) -> str:
    """The first ABSTRACT_MAX characters, ending at a space where there is one."""
    kept = text[:ABSTRACT_MAX]
    space = kept.rfind(" ", ABSTRACT_MAX // 2)
    return (kept[:space] if space > 0 else kept).rstrip() + " …"


def local_date(value: object) -> date | None:
    """The date of an RFC 822 or ISO 8601 timestamp, in its own time zone (the source's
    day, not UTC's), or None."""
    if not isinstance(value, str):
        return None
    for parse in (parsedate_to_datetime, datetime.fromisoformat):
        try:
            return parse(value.replace("Z", "+00:00")).date()
        except (TypeError, ValueError):
            continue
    return None


def capped_warnings(warnings: list[SourceWarning]) -> tuple[SourceWarning, ...]:
    """The first WARNINGS_MAX warnings, then one line counting the rest (a file of a million
    stray lines must not make a million lines of report)."""
    if len(warnings) <= WARNINGS_MAX:
        return tuple(warnings)
    kept, rest = warnings[:WARNINGS_MAX], warnings[WARNINGS_MAX:]
    lines = [w.line for w in rest if w.line is not None]
    where = f" (lines {min(lines)}-{max(lines)})" if lines else ""
    summary = SourceWarning(
        None, f"{len(rest):,} more warnings{where}; fix the file or capture it again"
    )
    return (*kept, summary)


# A link longer than this is no link a paper page has (and would bloat every digest).
URL_MAX = 2000
# Authors kept per paper: collaborations list thousands; nobody follows the 3,000th name.
AUTHORS_MAX = 500
# AI keywords kept per paper, and the longest summary kept.
AI_KEYWORDS_MAX = 30


def web_link(value: object) -> str | None:
    """``value`` when it is an http(s) URL fit to put in an email (no spaces, no controls,
    a sane length), else None: a source's "githubRepo" could be anything, even javascript:."""
    if not isinstance(value, str):
        return None
    url = value.strip()
    if not url.lower().startswith(("https://", "http://")) or len(url) > URL_MAX:
        return None
    # Printable means no controls, no bidi overrides and no whitespace but " ".
    return url if url.isprintable() and " " not in url else None


def texts(values: object, limit: int) -> tuple[str, ...]:
    """The first ``limit`` non-empty strings of a list, each as one clean line."""
    if not isinstance(values, list):
        return ()
    found = (clean(value)[:TITLE_MAX] for value in values)
    return tuple(itertools.islice((text for text in found if text), limit))


def links(*pairs: tuple[str, object]) -> tuple[tuple[str, str], ...]:
    """The (kind, URL) pairs whose URL is a usable web link, first of each kind kept."""
    kept: dict[str, str] = {}
    for kind, value in pairs:
        url = web_link(value)
        if url and kind not in kept:
            kept[kind] = url
    return tuple(kept.items())
