"""The matching rules on words and keywords, pinned with examples (traps included).

Each example runs through the code that matches papers (the keyword index), and through the
plain reference in tests/matching_helpers.py, which must agree."""

from __future__ import annotations

import pytest

from newsletter.errors import KeywordError
from newsletter.matching.index import KeywordIndex
from newsletter.matching.keywords import merge_ranges, parse_keyword, word_offsets, words
from tests.matching_helpers import ref_occurs


def hit(keyword: str, text: str) -> bool:
    parsed = parse_keyword(keyword)
    index = KeywordIndex()
    found = index.add(parsed) in index.hits(words(text))
    assert found == ref_occurs(parsed, text), "the reference disagrees"
    return found


def highlight_spans(keywords: list, text: str) -> tuple[tuple[int, int], ...]:
    index = KeywordIndex()
    for keyword in keywords:
        index.add(keyword)
    return merge_ranges([span for spans in index.ranges(text).values() for span in spans])


@pytest.mark.parametrize(
    ("keyword", "text"),
    [
        ("transformer", "Transformers struggle to learn to search"),
        ("Transformers", "a transformer"),
        ("bias", "inductive biases"),
        ("biases", "a bias"),
        ("study", "two studies"),
        ("studies", "a case study"),
        ("GAN", "GANs are back"),
        ("GANs", "a GAN"),
        ("zero-shot", "zero shot transfer"),
        ("zero shot", "Zero-Shot Video Object Segmentation"),
        ("zero-shot", "ZERO/SHOT"),
        ("zero_shot", "zero-shot"),
        ("knowledge distillation", "knowledge, distillation"),  # punctuation only separates
        ("knowledge distillation", "Knowledge-Distillation"),
        ("compress*", "compress"),
        ("compress*", "Compression ratios"),
        ("compress*", "we compressed it"),
        ("diffusion model*", "Diffusion Models are slow"),
        ("ViT", "ViT-Lite"),
        ("make", "Ｍａｋｅ deep networks"),  # NFKC: full-width letters
        ("strasse", "Straße"),  # casefold
        ("3d", "3D U-Net"),
    ],
)
def test_keyword_matches(keyword: str, text: str) -> None:
    assert hit(keyword, text)


@pytest.mark.parametrize(
    ("keyword", "text"),
    [
        ("ViT", "human activity recognition"),  # never part of a word
        ("GAN", "organ segmentation"),
        ("GAN", "organs"),
        ("net", "network"),
        ("prune", "pruning"),  # no stemming beyond the plural rules
        ("transformer", "transformed"),
        ("study", "studied"),
        ("knowledge distillation", "distillation of knowledge"),  # order matters
        ("knowledge distillation", "knowledge transfer and distillation"),  # consecutive
        ("compress*", "decompression"),  # a prefix is still the start of a word
        ("zero-shot", "zeroshot"),
        ("diffusion model*", "diffusion, which models"),
    ],
)
def test_keyword_does_not_match(keyword: str, text: str) -> None:
    assert not hit(keyword, text)


@pytest.mark.parametrize(
    ("keyword", "message"),
    [
        ("*compress", "may only end"),
        ("com*press", "may only end"),
        ("compress**", "may only end"),
        ("compress *", "right after a word"),
        ("!!!", "no letters or digits"),
        ("", "no letters or digits"),
        ("LLM |", "empty alternative"),
        ("| LLM", "empty alternative"),
        ("a || b", "empty alternative"),
        ("LLM | *x", "'*' may only end"),
    ],
)
def test_bad_keywords_are_refused_with_a_reason(keyword: str, message: str) -> None:
    with pytest.raises(KeywordError, match=message):
        parse_keyword(keyword)


def test_words_are_runs_of_letters_and_digits() -> None:
    assert words("Zero-Shot GANs: 3D_U-Net/ViT (v2) — Über") == [
        "zero", "shot", "gans", "3d", "u", "net", "vit", "v2", "über",
    ]  # fmt: skip


def test_highlight_spans_point_into_the_original_text() -> None:
    text = "Zero-Shot GANs beat organs; zero shot again"
    spans = highlight_spans([parse_keyword("zero-shot"), parse_keyword("GAN")], text)
    assert [text[a:b] for a, b in spans] == ["Zero-Shot", "GANs", "zero shot"]


def test_highlight_spans_survive_normalization_that_changes_length() -> None:
    text = "Die Straße der ﬁne Ｍａｋｅ"
    spans = highlight_spans(
        [parse_keyword("strasse"), parse_keyword("fine"), parse_keyword("make")], text
    )
    assert [text[a:b] for a, b in spans] == ["Straße", "ﬁne", "Ｍａｋｅ"]
    found, offsets = word_offsets(text)
    assert found == ["die", "strasse", "der", "fine", "make"]
    assert len(offsets) == len(found)


def test_overlapping_highlights_merge() -> None:
    text = "knowledge distillation"
    spans = highlight_spans([parse_keyword("knowledge"), parse_keyword(text)], text)
    assert spans == ((0, len(text)),)


def test_alternatives_keep_the_text_as_written_and_share_a_key_in_any_order() -> None:
    both = parse_keyword("large language model | LLM")
    assert both.text == "large language model | LLM"
    assert both.key == parse_keyword("LLM|large  language model").key
    assert both.key != parse_keyword("LLM").key
