"""Trending papers: the most upvoted new papers outside a reader's keywords, after their
matches, never excluded ones, never twice."""

from __future__ import annotations

from dataclasses import replace

from newsletter.config.settings import MatchSettings
from newsletter.matching.matcher import Matcher
from newsletter.models import History
from tests.matching_helpers import NOW, paper, subscriber


def listing() -> list:
    return [
        paper("Pruning networks", "pruning", pid="match", upvotes=98),
        paper("Pruning more", "pruning", pid="left-out", upvotes=99),
        paper("Medical imaging at scale", "x", pid="excluded", upvotes=90),
        paper("Robots that fold laundry", "y", pid="robots", upvotes=80),
        paper("A survey of surveys", "z", pid="survey", upvotes=50),
        paper("Weather models", "w", pid="weather", upvotes=40, comments=2),
        paper("Climate models", "w", pid="climate", upvotes=40, comments=1),
        paper("Unvoted", "u", pid="unvoted"),
    ]


def select(reader, papers, history=None):
    (selection,) = Matcher([reader], MatchSettings()).select(papers, NOW, history or {})
    return selection


def ids(matches) -> list[str]:
    return [m.paper.id for m in matches]


def test_trending_papers_come_after_the_matches_most_upvoted_first_and_never_excluded() -> None:
    reader = subscriber("pruning", exclude=("medical",), max_papers=1)
    reader = replace(reader, trending=3)
    selection = select(reader, listing())
    assert [m.trending for m in selection.matches] == [False, True, True, True]
    # The keyword match first; the match that did not fit ("match", the most upvoted left)
    # is not "trending" (it waits for the next digest); the excluded paper never comes;
    # ties on upvotes go to the more discussed.
    assert ids(selection.matches) == ["left-out", "robots", "survey", "weather"]
    assert selection.ranked == 1 and selection.left_out == 1


def test_trending_never_pushes_a_keyword_match_out() -> None:
    reader = replace(subscriber("pruning", max_papers=2), trending=10)
    selection = select(reader, listing())
    assert ids(selection.matches)[:2] == ["left-out", "match"]
    assert selection.left_out == 0 and selection.ranked == 2
    assert "unvoted" not in ids(selection.matches)  # (no upvotes: nothing trends)


def test_a_trending_paper_once_sent_never_comes_again() -> None:
    reader = replace(subscriber("pruning", exclude=("medical",)), trending=2)
    first = select(reader, listing())
    sent = frozenset(ids(first.matches))
    history = {reader.email: History(last_digest_at=NOW, sent=sent)}
    later = select(reader, listing(), history)
    assert not sent & set(ids(later.matches))
    assert ids(later.matches) == ["weather", "climate"]


def test_no_trending_unless_asked() -> None:
    selection = select(subscriber("pruning"), listing())
    assert not any(m.trending for m in selection.matches)
