"""How many papers fit in one email under the HTML budget, with these templates and this
abstract length: what ``validate`` tells a profile whose ``max_papers`` asks for more."""

from __future__ import annotations

from datetime import UTC, date, datetime

from newsletter.matching.keywords import parse_keyword
from newsletter.models import Details, Match, Paper, Selection, Subscriber
from newsletter.render.renderer import Renderer

ASKED_MOST = 100  # max_papers' bound

_WHEN = datetime(2026, 1, 1, tzinfo=UTC)
_WORDS = "pruning sparse networks train faster when distillation happens early and often".split()


def papers_that_fit(renderer: Renderer, abstract_chars: int) -> int:
    """How many long papers (a full-length abstract, five authors, three links, three
    keywords found) one digest holds before the budget cuts the rest."""
    subscriber = Subscriber("reader@example.org", (parse_keyword("pruning"),), max_papers=100)
    matches = tuple(_long_match(number, abstract_chars) for number in range(ASKED_MOST))
    selection = Selection(subscriber, matches, ASKED_MOST, ASKED_MOST)
    email = renderer.render(selection, _WHEN)
    return ASKED_MOST if email is None else len(email.paper_ids)


def _long_match(number: int, abstract_chars: int) -> Match:
    words = (_WORDS * (abstract_chars // 40 + 1))[: abstract_chars // 7]
    abstract = " ".join(words)[:abstract_chars]
    title = f"Pruning and distillation of sparse networks at scale: a study, part {number}"
    paper = Paper(
        id=f"2601.{number:05d}",
        title=title,
        abstract=abstract,
        authors_count=5,
        organization=None,
        published=date(2026, 1, 1),
        comments=12,
        upvotes=34,
        listing_date=date(2026, 1, 1),
        source="capacity",
        first_seen=_WHEN,
        arxiv_id=f"2601.{number:05d}",
        details=Details(
            authors=("Ada Lovelace", "Grace Hopper", "Alan Turing", "Emmy Noether", "Kurt Gödel"),
            links=(("github", f"https://github.com/example/paper-{number}"),),
        ),
    )
    hits = tuple((start, start + 7) for start in _starts(abstract, "pruning"))
    return Match(paper, 7, ("pruning",), ("pruning", "distillation", "sparse"),
                 ((0, 7),), hits, title_found=("Pruning",),
                 abstract_found=("pruning", "distillation", "sparse"))  # fmt: skip


def _starts(text: str, word: str) -> list[int]:
    found, at = [], text.find(word)
    while at >= 0:
        found.append(at)
        at = text.find(word, at + 1)
    return found
