"""What matched, kept with each digest as it was sent (the ledger's ``explained``), so that
its web copy and the feed explain each paper by the profile of that day, not today's."""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence

from newsletter.models import Match, Paper


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
            m.authors]  # fmt: skip


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
    score, title, abstract, title_spans, abstract_spans, authors = row
    return Match(
        paper,
        int(score),
        tuple(str(k) for k in title),
        tuple(str(k) for k in abstract),
        tuple((int(a), int(b)) for a, b in title_spans),
        tuple((int(a), int(b)) for a, b in abstract_spans),
        tuple(str(a) for a in authors),
    )
