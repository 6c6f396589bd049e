"""What matched, kept with a digest: read back as it was, by paper id, or not at all."""

from __future__ import annotations

import pytest

from newsletter.config.settings import MatchSettings
from newsletter.matching.explained import explained, explanations, pack, unpack, why_line
from newsletter.matching.matcher import Matcher
from tests.matching_helpers import paper, subscriber
from tests.render_helpers import NOW, ada, fixed_papers, project_config


def test_explanations_come_back_as_they_were_kept_by_paper_id(tmp_path) -> None:
    config = project_config(tmp_path)
    papers = fixed_papers()
    (selection,) = Matcher([ada()], config.matching).select(papers, NOW)
    matches = selection.matches
    assert len(matches) >= 2 and any(m.title_spans for m in matches)
    kept = explanations(matches)
    ids = [m.paper.id for m in matches]
    assert explained(ids, [m.paper for m in matches], kept) == matches
    # One paper no longer stored: the others keep their own explanation.
    assert explained(ids, [matches[1].paper], kept) == (matches[1],)


def test_nothing_kept_or_a_mismatch_gives_none(tmp_path) -> None:
    papers = fixed_papers()[:1]
    assert explained([papers[0].id], papers, None) is None  # (a digest of 0.1)
    assert explained([papers[0].id], papers, "not json") is None
    assert explained([papers[0].id], papers, "[]") is None
    assert explained([papers[0].id], papers, '[["x"]]') is None


def test_explanations_are_kept_packed_and_a_damaged_pack_explains_nothing() -> None:
    text = '[[3,["pruning"],[],[[0,7]],[],[]]]'
    assert unpack(pack(text)) == text and len(pack(text * 20)) < len(text * 20) / 4
    assert unpack(b"not zlib") is None and unpack(None) is None


DIFFUSION = "diffusion model* | diffusion | DDPM | score-based"

# (keywords, followed authors, title, abstract, the line a reader reads)
WHY_LINES = [
    pytest.param(
        (DIFFUSION, "text-to-image", "image synthesis"),
        (),
        "Diffusion Models for Text-to-Image Generation",
        "We study image synthesis with diffusion models and DDPM samplers.",
        "diffusion models, text-to-image (title) · image synthesis (abstract)",
        id="the alternative that occurred, each keyword once, grouped by field",
    ),
    pytest.param(
        ("compress*",),
        (),
        "Smaller networks",
        "Compression of weights and compressing activations.",
        "compression (abstract)",
        id="a prefix keyword says the word it met first",
    ),
    pytest.param(
        ("large language model | LLM",),
        (),
        "LLM agents at scale",
        "",
        "LLM (title)",
        id="an acronym keeps its capitals",
    ),
    pytest.param(
        ("agent",),
        (),
        "Agents That Plan",
        "",
        "agents (title)",
        id="a plural as written, in lower case",
    ),
    pytest.param(
        ("pruning", "prun*"),
        (),
        "Pruning early",
        "Pruning at initialization.",
        "pruning (title)",
        id="two keywords meeting the same word say it once",
    ),
    pytest.param(
        ("pruning", "distillation"),
        ("Ada Lovelace",),
        "Pruning and distillation",
        "",
        "Ada Lovelace (an author you follow) · pruning, distillation (title)",
        id="followed authors first",
    ),
    pytest.param(
        (DIFFUSION,),
        (),
        "Sampling faster",
        "A score-based sampler.",
        "score-based (abstract)",
        id="a hyphenated alternative as it occurred",
    ),
]


@pytest.mark.parametrize(("keywords", "authors", "title", "abstract", "line"), WHY_LINES)
def test_a_paper_is_explained_as_a_reader_says_it(keywords, authors, title, abstract, line):
    reader = subscriber(*keywords, authors=authors)
    written = paper(title, abstract, authors=("Ada Lovelace", "B. Other"))
    (selection,) = Matcher([reader], MatchSettings()).select([written], NOW)
    (match,) = selection.matches
    assert why_line(match) == line


def test_a_digest_kept_before_the_found_words_is_explained_by_its_keywords() -> None:
    (match,) = explained(["p"], [paper("Pruning", pid="p")], '[[3,["prun*"],[],[[0,7]],[],[]]]')
    assert why_line(match) == "prun* (title)"


def test_the_found_words_are_kept_with_the_digest(tmp_path) -> None:
    reader = subscriber(DIFFUSION)
    (selection,) = Matcher([reader], MatchSettings()).select([paper("DDPM again", "DDPM")], NOW)
    (match,) = selection.matches
    (back,) = explained([match.paper.id], [match.paper], explanations(selection.matches))
    assert back.title_found == ("DDPM",) and why_line(back) == "DDPM (title)"
