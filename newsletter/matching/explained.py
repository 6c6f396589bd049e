"""What matched, kept with each digest as it was sent (the ledger's ``explained``), so that
its web copy and the feed explain each paper by the profile of that day, not today's."""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Sequence

from newsletter.models import Match, Paper

TRENDING_WHY = "among the most upvoted new papers, outside your keywords"


def why_line(match: Match) -> str:
    """Why a paper is there, as a reader says it: the followed authors first, then each
    matched keyword once, by what occurred of it, grouped by field: "Ada Lovelace (an author
    you follow) · diffusion, text-to-image (title) · image synthesis (abstract)"."""
    if match.trending:
        return TRENDING_WHY
    parts = []
    if match.authors:
        who = "an author" if len(match.authors) == 1 else "authors"
        parts.append(f"{', '.join(match.authors)} ({who} you follow)")
    said: set[str] = set()
    title = _said_once(_found_pairs(match.title_keywords, match.title_found), said)
    in_title = set(match.title_keywords)
    pairs = _found_pairs(match.abstract_keywords, match.abstract_found)
    abstract = _said_once([pair for pair in pairs if pair[0] not in in_title], said)
    for words, field in ((title, "title"), (abstract, "abstract")):
        if words:
            parts.append(f"{', '.join(words)} ({field})")
    return " · ".join(parts)


def _found_pairs(keywords: Sequence[str], found: Sequence[str]) -> list[tuple[str, str]]:
    """Each keyword with what occurred of it (the keyword itself where that is not known: a
    match made before the found words were kept)."""
    return [(k, found[i] if i < len(found) and found[i] else k) for i, k in enumerate(keywords)]


def _said_once(pairs: Sequence[tuple[str, str]], said: set[str]) -> list[str]:
    """The words a reader reads for these (keyword, found) pairs, each once across the line
    (``said``: what the line says already, casefolded)."""
    out = []
    for _, form in pairs:
        spoken = as_said(form)
        if spoken.casefold() not in said:
            said.add(spoken.casefold())
            out.append(spoken)
    return out


_INNER_CAPITAL = re.compile(r"[^\W_][^\W_]*?[A-Z]")


def as_said(form: str) -> str:
    """An occurrence as a sentence would carry it: one line, in lower case unless a word has
    a capital after its first letter (an acronym or a name such as "DDPM", "LLaMA")."""
    form = " ".join(form.split())
    return form if _INNER_CAPITAL.search(form) else form.lower()


def explanations(matches: Sequence[Match]) -> str:
    """The explanations of ``matches`` (a digest's papers, in order) as one JSON text."""
    rows = [_row(match) for match in matches]
    return json.dumps(rows, ensure_ascii=False, separators=(",", ":"))


def pack(text: str) -> bytes:
    """``explanations`` as the ledger keeps them: compressed (750 bytes of JSON a digest
    became ~330, and the row it is written in, PostgreSQL's WAL included, that much
    shorter; bench/workers.py)."""
    return zlib.compress(text.encode(), 6)


def unpack(packed: bytes | None) -> str | None:
    """What ``pack`` packed (None stays None; damaged bytes: None, nothing to explain)."""
    if packed is None:
        return None
    try:
        return zlib.decompress(bytes(packed)).decode()
    except (zlib.error, UnicodeDecodeError):
        return None


def _row(m: Match) -> list[object]:
    return [m.score, m.title_keywords, m.abstract_keywords, m.title_spans, m.abstract_spans,
            m.authors, m.title_found, m.abstract_found, int(m.trending)]  # fmt: skip


def explained(
    ids: Sequence[str], papers: Sequence[Paper], text: str | None
) -> tuple[Match, ...] | None:
    """The matches of ``papers`` (those of a sent digest's ``ids`` still stored) as
    ``explanations`` kept them; None when nothing was kept (a digest of an earlier release)
    or what was kept does not fit the digest."""
    if text is None:
        return None
    try:
        rows = json.loads(text)
        if not isinstance(rows, list) or len(rows) != len(ids):
            return None
        by_id = dict(zip(ids, rows, strict=True))
        return tuple(_match(paper, by_id[paper.id]) for paper in papers)
    except (ValueError, TypeError, KeyError):
        return None


def _match(paper: Paper, row: list) -> Match:
    score, title, abstract, title_spans, abstract_spans, authors = row[:6]
    # (a digest recorded before the found words were kept: explained by its keywords)
    title_found, abstract_found = row[6:8] if len(row) >= 8 else (title, abstract)
    return Match(
        paper,
        int(score),
        tuple(str(k) for k in title),
        tuple(str(k) for k in abstract),
        tuple((int(a), int(b)) for a, b in title_spans),
        tuple((int(a), int(b)) for a, b in abstract_spans),
        tuple(str(a) for a in authors),
        tuple(str(k) for k in title_found),
        tuple(str(k) for k in abstract_found),
        trending=bool(row[8]) if len(row) >= 9 else False,
    )
