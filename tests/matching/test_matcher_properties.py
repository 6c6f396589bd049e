"""Property: the compiled matcher agrees with the slow reference on random inputs."""

from __future__ import annotations

import os
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.config.settings import MatchSettings
from newsletter.matching.keywords import KeywordError, parse_keyword
from newsletter.matching.matcher import Matcher, Scans, vocabulary
from newsletter.models import History
from tests.matching_helpers import NOW, paper, reference_select, subscriber

# Small words that collide on purpose: plurals, -ies, prefixes, words inside words. Few
# enough that keywords and texts meet often (hypothesis favours the first entries).
VOCABULARY = [
    "studies", "study", "gans", "organ", "gan", "biases", "bias", "boxes", "box", "network",
    "net", "ies", "y", "es", "s", "compress", "compression", "zero", "shot", "ß", "strasse",
]  # fmt: skip
SEPARATORS = [" ", " ", "-", ", ", "_", "/", ". ", " (", "\n"]

word = st.one_of(
    st.sampled_from(VOCABULARY),
    st.sampled_from(VOCABULARY),
    st.sampled_from(VOCABULARY[::-1]),
    st.text(st.sampled_from("abeisy"), min_size=1, max_size=4),
)
cased = st.builds(
    lambda w, style: {0: w, 1: w.upper(), 2: w.title()}[style], word, st.integers(0, 2)
)


@st.composite
def texts(draw) -> str:
    parts = draw(st.lists(cased, max_size=24))
    out = ""
    for part in parts:
        out += part + draw(st.sampled_from(SEPARATORS))
    return out


rarely = st.integers(0, 3).map(lambda n: n == 0)


@st.composite
def alternative(draw) -> str:
    parts = draw(st.lists(word, min_size=1, max_size=3))
    text = draw(st.sampled_from([" ", "-"])).join(parts)
    return text + ("*" if draw(st.booleans()) else "")


@st.composite
def keywords(draw) -> str:
    """A keyword, sometimes with alternatives ("a b | c*")."""
    return " | ".join(draw(st.lists(alternative(), min_size=1, max_size=1 + draw(rarely))))


def distinct(items: list[str]) -> tuple[str, ...]:
    seen, out = set(), []
    for item in items:
        try:
            key = parse_keyword(item).key
        except KeywordError:
            continue
        if key not in seen:
            seen.add(key)
            out.append(item)
    return tuple(out)


@st.composite
def subscribers(draw, index: int):
    kws = distinct(draw(st.lists(keywords(), min_size=1, max_size=4)))
    if not kws:
        kws = ("gan",)
    return subscriber(
        *kws,
        email=f"s{index}@example.org",
        # Occasional: drawn from the same small vocabulary they would filter out nearly all.
        exclude=distinct(draw(st.lists(keywords(), max_size=1))) if draw(rarely) else (),
        require=distinct(draw(st.lists(keywords(), max_size=2))) if draw(rarely) else (),
        min_score=draw(st.integers(1, 4)),
        max_papers=draw(st.integers(1, 5)),
    )


@st.composite
def papers(draw, index: int):
    return paper(
        draw(texts()),
        draw(texts()),
        pid=f"p{index}",
        upvotes=draw(st.one_of(st.none(), st.integers(0, 3))),
        comments=draw(st.integers(0, 2)),
        published=draw(st.one_of(st.none(), st.dates(date(2026, 1, 1), date(2026, 1, 5)))),
        seen=NOW - timedelta(days=draw(st.integers(0, 9)), hours=draw(st.integers(0, 23))),
    )


@st.composite
def scenarios(draw):
    subs = [draw(subscribers(i)) for i in range(draw(st.integers(1, 4)))]
    items = [draw(papers(i)) for i in range(draw(st.integers(0, 8)))]
    history = {}
    for sub in subs:
        if draw(st.booleans()):
            last = NOW - timedelta(days=draw(st.integers(0, 9)))
            sent = frozenset(draw(st.lists(st.sampled_from([p.id for p in items] or ["none"]))))
            history[sub.email] = History(last if draw(st.booleans()) else None, sent)
    weights = MatchSettings(
        title_weight=draw(st.integers(1, 4)), abstract_weight=draw(st.integers(0, 2))
    )
    return subs, items, history, weights


@settings(
    max_examples=int(os.environ.get("NEWSLETTER_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@pytest.mark.slow
@given(scenarios())
def test_compiled_matcher_agrees_with_reference(scenario) -> None:
    subs, items, history, weights = scenario
    selections = Matcher(subs, weights).select(items, NOW, history)
    for sub, selection in zip(subs, selections, strict=True):
        expected = reference_select(sub, items, weights, NOW, history.get(sub.email))
        got = [
            (m.paper.id, m.score, m.title_keywords, m.abstract_keywords) for m in selection.matches
        ]
        assert got == expected


@settings(
    max_examples=int(os.environ.get("NEWSLETTER_FUZZ_EXAMPLES", "300")) // 3,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@pytest.mark.slow
@given(scenarios())
def test_one_subscriber_at_a_time_on_a_kept_scan_agrees_with_reference(scenario) -> None:
    """As a chunk worker matches: every profile's keywords known first, the papers scanned
    once, each subscriber matched on their own matcher."""
    subs, items, history, weights = scenario
    scans = Scans(vocabulary(subs))
    for sub in reversed(subs):
        (selection,) = Matcher([sub], weights, scans).select(items, NOW, history)
        expected = reference_select(sub, items, weights, NOW, history.get(sub.email))
        got = [
            (m.paper.id, m.score, m.title_keywords, m.abstract_keywords) for m in selection.matches
        ]
        assert got == expected
    assert scans.scanned == 1
