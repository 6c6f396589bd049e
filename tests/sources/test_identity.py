"""Paper identity: title normalization and ids."""

from __future__ import annotations

import re
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from newsletter.sources.identity import canonical_arxiv_id, normalize_title, paper_id


def reference_normalize(title: str) -> str:
    """The rule as written: NFKC, casefold, runs of non-letters/digits become one space."""
    folded = unicodedata.normalize("NFKC", title).casefold()
    return re.sub(r"[\W_]+", " ", folded).strip()


@given(st.text(max_size=80))
def test_normalize_title_follows_the_rule_on_any_text(title: str) -> None:
    assert normalize_title(title) == reference_normalize(title)


@given(st.text(st.characters(max_codepoint=127), max_size=80))
def test_normalize_title_fast_ascii_path_follows_the_rule(title: str) -> None:
    assert normalize_title(title) == reference_normalize(title)


def test_normalized_titles_ignore_case_punctuation_and_width() -> None:
    forms = [
        "Make Deep Networks Shallow Again",
        "make deep networks — shallow again!",
        "  MAKE_DEEP\u00a0NETWORKS:\tshallow-again ",
        "Ｍａｋｅ Deep Networks Shallow Again",  # full-width letters (NFKC)
    ]
    assert {normalize_title(form) for form in forms} == {"make deep networks shallow again"}
    assert len({paper_id(normalize_title(form)) for form in forms}) == 1


def test_different_titles_get_different_ids() -> None:
    assert paper_id(normalize_title("Deep Nets")) != paper_id(normalize_title("Deep Net"))
    assert paper_id("anything", "2412.01199") == "2412.01199"
    assert paper_id("x").startswith("t-") and len(paper_id("x")) == 18


def test_canonical_arxiv_id() -> None:
    assert canonical_arxiv_id("2412.01199v3") == "2412.01199"
    assert canonical_arxiv_id("arXiv:2412.01199") == "2412.01199"
    assert canonical_arxiv_id("hep-th/9901001v2") == "hep-th/9901001"
    assert canonical_arxiv_id("not an id") is None
