"""The compiled matcher: scores, filters, newness, order, explanations."""

from __future__ import annotations

from datetime import date, timedelta

from newsletter.config.settings import MatchSettings
from newsletter.matching.matcher import Matcher, Scans, vocabulary
from newsletter.models import History
from tests.matching_helpers import NOW, paper, subscriber

SETTINGS = MatchSettings()


def select(subscribers, papers, history=None, settings=SETTINGS):
    return Matcher(subscribers, settings).select(papers, NOW, history or {})


def ids(selection) -> list[str]:
    return [m.paper.id for m in selection.matches]


def test_score_is_title_weight_plus_abstract_weight_per_keyword() -> None:
    papers = [
        paper("Pruning networks", "We study pruning and distillation.", pid="both"),
        paper("Pruning networks", "Nothing else here.", pid="title"),
        paper("Other", "About knowledge distillation.", pid="abstract"),
    ]
    (selection,) = select([subscriber("pruning", "distillation")], papers)
    assert [(m.paper.id, m.score) for m in selection.matches] == [
        ("both", 3 + 1 + 1),
        ("title", 3),
        ("abstract", 1),
    ]
    weights = MatchSettings(title_weight=5, abstract_weight=2)
    (weighted,) = select([subscriber("pruning", "distillation")], papers, settings=weights)
    assert [m.score for m in weighted.matches] == [5 + 2 + 2, 5, 2]


def test_min_score_filters() -> None:
    papers = [paper("Pruning", pid="title"), paper("x", "pruning", pid="abstract")]
    (selection,) = select([subscriber("pruning", min_score=2)], papers)
    assert ids(selection) == ["title"]


def test_exclusion_beats_a_strong_match() -> None:
    strong = paper(
        "Pruning and distillation for compression",
        "Pruning, distillation and compression of medical imaging models.",
        pid="strong",
    )
    (selection,) = select(
        [subscriber("pruning", "distillation", "compress*", exclude=("medical",))], [strong]
    )
    assert selection.matches == ()
    assert selection.candidates == 1 and selection.matched == 0


def test_every_required_keyword_must_occur_somewhere() -> None:
    papers = [
        paper("Pruning for LLMs", "with sparsity", pid="both"),
        paper("Pruning", "for CNNs", pid="one"),
    ]
    (selection,) = select([subscriber("pruning", require=("LLM", "sparsity"))], papers)
    assert ids(selection) == ["both"]


def test_only_new_papers_within_lookback_for_a_first_digest() -> None:
    papers = [
        paper("Pruning", pid="fresh", seen=NOW - timedelta(days=6, hours=23)),
        paper("Pruning again", pid="stale", seen=NOW - timedelta(days=7, hours=1)),
    ]
    (selection,) = select([subscriber("pruning")], papers)
    assert ids(selection) == ["fresh"]
    (longer,) = select([subscriber("pruning")], papers, settings=MatchSettings(lookback_days=8))
    assert sorted(ids(longer)) == ["fresh", "stale"]


def test_candidates_are_the_papers_of_the_lookback_window_never_sent() -> None:
    """Leftovers are kept: a paper seen before the last digest but never sent (it did not fit,
    or did not match then) is still a candidate while it is within lookback_days."""
    last = NOW - timedelta(days=2)
    papers = [
        paper("Pruning A", pid="before", seen=last - timedelta(minutes=1), upvotes=2),
        paper("Pruning B", pid="after", seen=last + timedelta(minutes=1), upvotes=1),
        paper("Pruning C", pid="sent", seen=last + timedelta(minutes=2)),
        paper("Pruning D", pid="old", seen=NOW - timedelta(days=7, minutes=1)),
        paper("Pruning E", pid="edge", seen=NOW - timedelta(days=7)),
    ]
    history = {"ada@example.org": History(last, frozenset({"sent"}))}
    (selection,) = select([subscriber("pruning")], papers, history)
    assert ids(selection) == ["before", "after", "edge"]
    assert selection.candidates == 3


def test_order_score_upvotes_comments_date_title() -> None:
    papers = [
        paper("B pruning", pid="b", upvotes=5, comments=1, published=date(2026, 1, 1)),
        paper("A pruning", pid="a", upvotes=5, comments=1, published=date(2026, 1, 1)),
        paper("no date pruning", pid="nodate", upvotes=5, comments=1),
        paper("newer pruning", pid="newer", upvotes=5, comments=1, published=date(2026, 2, 1)),
        paper("chatty pruning", pid="chatty", upvotes=5, comments=9),
        paper("popular pruning", pid="popular", upvotes=50),
        paper("unknown upvotes pruning", pid="unknown"),
        paper("zero upvotes pruning", pid="zero", upvotes=0),
        paper("Pruning in title", "and pruning in abstract", pid="best"),
    ]
    (selection,) = select([subscriber("pruning")], papers)
    assert ids(selection) == [
        "best", "popular", "chatty", "newer", "a", "b", "nodate", "zero", "unknown",
    ]  # fmt: skip


def test_max_papers_keeps_the_best_and_counts_the_rest() -> None:
    papers = [paper(f"Pruning {i}", pid=f"p{i}", upvotes=i) for i in range(30)]
    (selection,) = select([subscriber("pruning", max_papers=3)], papers)
    assert ids(selection) == ["p29", "p28", "p27"]
    assert (selection.matched, selection.left_out) == (30, 27)


def test_explanation_names_keywords_as_written_and_spans() -> None:
    item = paper("Zero-Shot Transformers", "We compress transformers; zero shot works.", pid="x")
    (selection,) = select([subscriber("transformer", "zero-shot", "compress*", "GAN")], [item])
    (match,) = selection.matches
    assert match.title_keywords == ("transformer", "zero-shot")
    assert match.abstract_keywords == ("transformer", "zero-shot", "compress*")
    assert [item.title[a:b] for a, b in match.title_spans] == ["Zero-Shot", "Transformers"]
    assert [item.abstract[a:b] for a, b in match.abstract_spans] == [
        "compress",
        "transformers",
        "zero shot",
    ]


def test_many_subscribers_are_independent() -> None:
    papers = [paper("GANs for art", pid="gan"), paper("Organ imaging", pid="organ")]
    subs = [
        subscriber("GAN", email="a@example.org"),
        subscriber("organ", email="b@example.org"),
        subscriber("imaging", email="c@example.org", exclude=("organ",)),
    ]
    selections = select(subs, papers)
    assert [ids(s) for s in selections] == [["gan"], ["organ"], []]


def test_blocks_of_papers_give_the_same_result(monkeypatch) -> None:
    papers = [paper(f"Pruning {i}", "pruning", pid=f"p{i}", upvotes=i % 7) for i in range(600)]
    subs = [subscriber("pruning", email=f"s{i}@example.org", max_papers=5) for i in range(3)]
    whole = [ids(s) for s in select(subs, papers)]
    import newsletter.matching.matcher as matching

    monkeypatch.setattr(matching, "_BLOCK", 7)
    assert [ids(s) for s in select(subs, papers)] == whole


def test_no_papers_and_no_subscribers() -> None:
    assert select([], [paper("x")]) == []
    (selection,) = select([subscriber("pruning")], [])
    assert selection.matches == () and selection.candidates == 0


def test_history_is_keyed_by_the_casefolded_address() -> None:
    """The ledger keys history by casefolded address; profiles keep the case as written."""
    reader = subscriber("pruning", email="Ada.Lovelace@example.org")
    old = paper("Pruning old", pid="old", seen=NOW - timedelta(hours=3))
    sent = paper("Pruning sent", pid="sent")
    fresh = paper("Pruning fresh", pid="fresh")
    history = {"ada.lovelace@example.org": History(NOW - timedelta(hours=2), frozenset({"sent"}))}
    (selection,) = Matcher([reader], MatchSettings()).select([old, sent, fresh], NOW, history)
    assert sorted(m.paper.id for m in selection.matches) == ["fresh", "old"]


def test_keyword_alternatives_match_either_and_score_once_per_field() -> None:
    """A keyword may list alternatives separated by '|' (issue 12): acronyms."""
    papers = [
        paper("LLM agents and LLM tools", "A large language model plans; the LLM acts.", pid="b"),
        paper("Scaling large language models", "Nothing else.", pid="t"),
        paper("Other", "Nothing about them.", pid="none"),
    ]
    (selection,) = select([subscriber("large language model* | LLM")], papers)
    assert [(m.paper.id, m.score) for m in selection.matches] == [("b", 3 + 1), ("t", 3)]
    best = selection.matches[0]
    assert best.title_keywords == ("large language model* | LLM",)
    assert best.abstract_keywords == ("large language model* | LLM",)
    assert best.title_spans == ((0, 3), (15, 18))
    assert best.abstract_spans == ((2, 22), (34, 37))


def test_alternatives_in_exclude_and_require() -> None:
    papers = [
        paper("Pruning for ViT", pid="vit"),
        paper("Pruning vision transformers", pid="long"),
        paper("Pruning CNNs", pid="cnn"),
    ]
    (required,) = select([subscriber("pruning", require=("ViT | vision transformer",))], papers)
    assert sorted(ids(required)) == ["long", "vit"]
    (excluded,) = select([subscriber("pruning", exclude=("ViT | vision transformer",))], papers)
    assert ids(excluded) == ["cnn"]


class _CountingDict(dict):
    """A dict that counts lookups, to measure work without timing it."""

    lookups = 0

    def get(self, key, default=None):
        type(self).lookups += 1
        return super().get(key, default)


def test_a_huge_word_costs_no_more_prefix_lookups_than_the_longest_prefix_keyword() -> None:
    from newsletter.matching.index import KeywordIndex
    from newsletter.matching.keywords import parse_keyword, words

    index = KeywordIndex()
    kid = index.add(parse_keyword("compress*"))
    index._prefixes = _CountingDict(index._prefixes)
    huge = "compress" + "x" * 200_000  # one "word" of an abstract nobody wrapped
    assert index.hits(words(f"we {huge} caches")) == {kid}
    # Linear in the text: a lookup per prefix length up to len("compress"), not per character.
    assert _CountingDict.lookups <= len("compress") * 3


def test_a_followed_author_is_sent_whatever_the_keywords_and_ranks_first() -> None:
    papers = [
        paper("Pruning networks", "pruning", pid="keyword", upvotes=99),
        paper("Medical robots", "x", pid="by-lecun", authors=("Yann LeCun", "A. Other")),
        paper("Médical", "y", pid="by-initials", authors=("Y. Bengio",)),
        paper("Nothing", "z", pid="stranger", authors=("Yann LeCunn",)),
    ]
    follower = subscriber(
        "pruning",
        exclude=("medical",),
        require=("pruning",),
        min_score=3,
        max_papers=2,
        authors=("yann lecun", "Yoshua Bengio"),
    )
    (selection,) = select([follower], papers)
    # Followed authors first (beyond exclude, require and min_score), then the keywords;
    # "Yoshua Bengio" does not claim "Y. Bengio" (who may be another Y.); max_papers holds.
    assert ids(selection) == ["by-lecun", "keyword"]
    by_lecun, keyword = selection.matches
    assert (by_lecun.authors, by_lecun.score, by_lecun.title_keywords) == (("yann lecun",), 0, ())
    assert (keyword.authors, keyword.score) == ((), 4)
    assert selection.matched == 2 and selection.candidates == 4
    (initials,) = select([subscriber(authors=("Y. Bengio",))], papers)
    assert ids(initials) == ["by-initials"]


def test_categories_filter_papers_that_have_categories() -> None:
    papers = [
        paper("Pruning A", pid="lg", categories=("cs.LG", "stat.ML")),
        paper("Pruning B", pid="cv", categories=("cs.CV",)),
        paper("Pruning C", pid="math", categories=("math.OC",)),
        paper("Pruning D", pid="unknown"),  # a text capture: categories unknown, kept
    ]
    learner, archive, everyone = select(
        [
            subscriber("pruning", email="a@x.org", categories=("stat.ML",)),
            subscriber("pruning", email="b@x.org", categories=("cs",)),
            subscriber("pruning", email="c@x.org"),
        ],
        papers,
    )
    assert sorted(ids(learner)) == ["lg", "unknown"]
    assert sorted(ids(archive)) == ["cv", "lg", "unknown"]
    assert sorted(ids(everyone)) == ["cv", "lg", "math", "unknown"]
    followed = subscriber(categories=("cs.LG",), authors=("Ada Lovelace",))
    by_ada = paper(
        "Analytical engines", pid="ada", authors=("Ada Lovelace",), categories=("math.HO",)
    )
    (only_in_filter,) = select([followed], [*papers, by_ada])
    assert ids(only_in_filter) == []  # the filter holds for followed authors too


def test_a_kept_scan_serves_the_next_matcher_until_the_papers_or_the_keywords_change() -> None:
    papers = [paper("Pruning networks", "distillation", pid="a"), paper("Other", pid="b")]
    first, second = subscriber("pruning"), subscriber("distillation", email="bo@example.org")
    scans = Scans(vocabulary([first, second]))
    assert ids(Matcher([first], SETTINGS, scans).select(papers, NOW)[0]) == ["a"]
    assert ids(Matcher([second], SETTINGS, scans).select(list(papers), NOW)[0]) == ["a"]
    assert scans.scanned == 1  # (equal papers, every keyword known: scanned once)
    changed = [paper("Other", "distillation", pid="b"), papers[0]]
    assert ids(Matcher([second], SETTINGS, scans).select(changed, NOW)[0]) == ["b", "a"]
    assert scans.scanned == 2
    third = subscriber("other", email="cy@example.org")  # (a keyword the scan lacks)
    assert ids(Matcher([third], SETTINGS, scans).select(changed, NOW)[0]) == ["b"]
    assert scans.scanned == 3
