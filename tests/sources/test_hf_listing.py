"""The Hugging Face listing reader: every variant of the capture format, and bad input."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from newsletter.errors import DigestError
from newsletter.models import Card
from newsletter.sources.hf_listing import parse, resolve_listing_date
from newsletter.sources.read import read_digest_bytes
from tests.digest_text import ABSTRACT, HEADER, capture, card

TODAY = date(2026, 11, 21)


def without_lines(cards: tuple[Card, ...]) -> list[Card]:
    return [replace(c, line=0) for c in cards]


def read(text: str, listing_date: date | None = None):
    return parse(text, today=TODAY, listing_date=listing_date)


def test_reads_a_plain_card_with_every_field() -> None:
    digest = read(capture(card("Sparse Things", byline="  • 6 authors", date="Aug 20")))
    assert digest.listing_date == date(2025, 12, 17)
    assert digest.warnings == ()
    (only,) = digest.cards
    assert only.title == "Sparse Things"
    assert only.abstract == ABSTRACT
    assert only.authors_count == 6
    assert only.organization is None
    assert only.published == date(2025, 8, 20)
    assert only.comments == 0
    assert only.upvotes is None


@pytest.mark.parametrize(
    ("line", "published", "comments"),
    [
        ("Dec 2, 2024 2", date(2024, 12, 2), 2),
        ("Dec 19, 2015", date(2015, 12, 19), 0),
        ("May 1 1", date(2025, 5, 1), 1),
        ("Aug 6 2", date(2025, 8, 6), 2),
        ("Feb 27", date(2025, 2, 27), 0),
        ("September 3, 2023", date(2023, 9, 3), 0),
    ],
)
def test_publication_dates_and_comment_counts(line: str, published: date, comments: int) -> None:
    (only,) = read(capture(card("T", date=line))).cards
    assert (only.published, only.comments) == (published, comments)


def test_yearless_date_after_the_listing_belongs_to_the_year_before() -> None:
    (only,) = read(capture(card("T", date="Dec 30"), listing="Jan 3")).cards
    assert only.published == date(2025, 12, 30)


def test_garbage_date_is_a_warning_with_its_line_and_the_card_is_kept() -> None:
    text = capture(card("A", date="Feb 31, 2024"), card("B", date="Dex 99"), card("C"))
    digest = read(text)
    assert [c.title for c in digest.cards] == ["A", "B", "C"]
    assert [c.published for c in digest.cards[:2]] == [None, None]
    lines = text.split("\n")
    assert [w.line for w in digest.warnings] == [
        lines.index("Feb 31, 2024") + 1,
        lines.index("Dex 99") + 1,
    ]
    assert all("cannot read the date" in w.message for w in digest.warnings)


def test_organization_line_replaces_the_authors_line() -> None:
    (only,) = read(capture(card("T", byline="UniBonn University of Bonn"))).cards
    assert only.organization == "UniBonn University of Bonn"
    assert only.authors_count is None


def test_one_authors_is_read_as_one() -> None:
    (only,) = read(capture(card("T", byline="  • 1 authors"))).cards
    assert only.authors_count == 1


def test_card_cut_short_after_its_abstract_is_followed_by_the_next_title() -> None:
    text = capture(card("Cut", byline=None, date=None), card("Next"), card("Last", date=None))
    digest = read(text)
    assert [(c.title, c.abstract, c.published) for c in digest.cards] == [
        ("Cut", ABSTRACT, None),
        ("Next", ABSTRACT, date(2025, 8, 20)),
        ("Last", ABSTRACT, None),
    ]
    assert [c.authors_count for c in digest.cards] == [None, 3, 3]


@pytest.mark.parametrize(("line", "upvotes"), [("-", 0), ("19", 19), ("[-] 19", 19)])
def test_upvote_line_before_a_title(line: str, upvotes: int) -> None:
    (only,) = read(capture(card("T", upvotes=line))).cards
    assert only.upvotes == upvotes
    assert only.title == "T"


@pytest.mark.parametrize(
    "title",
    [
        'Zero-Shot Segmentation of "Anything": A Study',
        "HyperZ⋅Z⋅W Operator Connects Slow-Fast Networks",
        "YOLOv9: 2 Steps, 3.5× Faster — Über Detection",
        "Q&A with <script>alert(1)</script>",
        "1,024 Experts",
    ],
)
def test_titles_with_quotes_colons_digits_and_unicode(title: str) -> None:
    (only,) = read(capture(card(title))).cards
    assert only.title == title


def test_other_header_lines_are_skipped() -> None:
    header = [*HEADER[:4], "diffusion models", "Daily", "Weekly", "Monthly", HEADER[4]]
    digest = read(capture(card("T"), header=header, listing="Mar 5"))
    assert [c.title for c in digest.cards] == ["T"]
    assert digest.listing_date == date(2026, 3, 5)
    assert digest.warnings == ()


def test_whitespace_variants_read_the_same() -> None:
    plain = capture(card("A Title", upvotes="[-] 19"), card("B", byline="Org Name"))
    variants = {
        "crlf": plain.replace("\n", "\r\n"),
        "bom": "\ufeff" + plain,
        "no blank lines": plain.replace("\n\n", "\n"),
        "many blank lines": plain.replace("\n\n", "\n\n\n\n\n"),
        "trailing spaces": plain.replace("\n", "  \t\n"),
        "nbsp": plain.replace("A Title", "A\u00a0Title").replace("• 3", "•\u00a03"),
    }
    expected = without_lines(read(plain).cards)
    for name, text in variants.items():
        data = text.encode("utf-8")
        assert without_lines(read_digest_bytes(data, today=TODAY).cards) == expected, name


def test_listing_date_resolves_to_latest_on_or_before_ingest() -> None:
    assert resolve_listing_date(11, 21, TODAY) == date(2026, 11, 21)
    assert resolve_listing_date(11, 22, TODAY) == date(2025, 11, 22)
    assert resolve_listing_date(2, 29, TODAY) == date(2024, 2, 29)
    assert resolve_listing_date(2, 30, TODAY) is None


def test_listing_date_option_overrides_and_warns_on_mismatch() -> None:
    text = capture(card("T", date="Aug 20"))
    same = read(text, listing_date=date(2023, 12, 17))
    assert same.listing_date == date(2023, 12, 17)
    assert same.cards[0].published == date(2023, 8, 20)
    assert same.warnings == ()
    other = read(text, listing_date=date(2023, 12, 18))
    assert other.listing_date == date(2023, 12, 18)
    assert "--listing-date" in other.warnings[0].message


def test_missing_listing_date_falls_back_to_ingest_date_with_a_warning() -> None:
    digest = read(capture(card("T"), listing="Daily"))
    assert digest.listing_date == TODAY
    assert [c.title for c in digest.cards] == ["T"]
    assert "no listing date line" in digest.warnings[0].message


def test_title_without_abstract_is_skipped_with_a_warning() -> None:
    text = capture(["Lonely Title", "  • 2 authors", "·", "Aug 1"], card("Kept"))
    digest = read(text)
    assert [c.title for c in digest.cards] == ["Kept"]
    (warning,) = digest.warnings
    assert warning.line == text.split("\n").index("Lonely Title") + 1
    assert "no abstract" in warning.message


def test_stray_abstract_is_skipped_not_made_a_paper() -> None:
    text = capture(card("A"), [ABSTRACT + " Orphan."], card("B"))
    digest = read(text)
    assert [c.title for c in digest.cards] == ["A", "B"]
    assert "outside a card" in digest.warnings[0].message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"  \n\n \r\n", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        (b"Dear diary,\n\nToday nothing happened at all.\n", "does not look like"),
        (b'[{"paper": {"id": "2401.00001"}}]', "none of the 1 items is a paper"),
        (b'<?xml version="1.0"?><html/>', "XML, but not an RSS or Atom feed"),
        (bytes(range(128, 256)) * 20, "not UTF-8"),
        ("Überblick\nÄrger\nÖl\n".encode("latin-1") * 5, "not UTF-8"),
    ],
    ids=["empty", "blank", "png", "prose", "json", "xml", "high bytes", "latin-1"],
)
def test_unreadable_files_are_rejected_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(DigestError, match=message):
        read_digest_bytes(data, today=TODAY)


def test_invalid_utf8_bytes_are_replaced_and_named_by_line() -> None:
    text = capture(card("Caf\udce9 Title"), card("B"))
    data = text.encode("utf-8", errors="surrogateescape")  # a lone latin-1 byte
    digest = read_digest_bytes(data, today=TODAY)
    assert [c.title for c in digest.cards] == ["Caf\ufffd Title", "B"]
    (warning,) = digest.warnings
    assert warning.line == text.split("\n").index("Caf\udce9 Title") + 1
    assert "UTF-8" in warning.message


def test_utf16_capture_is_decoded() -> None:
    text = capture(card("Wide"))
    digest = read_digest_bytes(text.encode("utf-16"), today=TODAY)
    assert [c.title for c in digest.cards] == ["Wide"]


# -- hostile input (issue 13) -------------------------------------------------------------


def test_a_line_far_longer_than_any_abstract_is_cut_with_a_warning_naming_it() -> None:
    from newsletter.sources.fields import ABSTRACT_MAX

    huge = "compression " * 100_000  # 1.2 MB on one line
    text = capture(card("Huge", abstract=huge), card("Normal"))
    digest = read(text)
    huge_card, normal = digest.cards
    assert len(huge_card.abstract) <= ABSTRACT_MAX + 2 and huge_card.abstract.endswith(" …")
    assert huge_card.abstract.startswith("compression compression")
    assert normal.abstract == ABSTRACT
    (warning,) = digest.warnings
    assert warning.line == huge_card.line + 2 and "1,200,000 bytes" in warning.message


def test_a_long_line_cut_inside_a_multibyte_character_is_not_called_invalid_utf8() -> None:
    huge = "é" * 30_000  # 60,000 bytes; the byte cap falls inside no character, or in one
    for extra in ("", "x"):
        digest = read(capture(card("Accents", abstract=extra + huge)))
        (only,) = digest.cards
        assert set(only.abstract.rstrip(" …").lstrip("x")) == {"é"}
        assert all("UTF-8" not in w.message for w in digest.warnings)


def test_lines_too_short_to_be_abstracts_make_no_papers_and_warnings_are_capped() -> None:
    from newsletter.sources.fields import WARNINGS_MAX

    stray = ["x", "a"] * 10_000
    digest = read(capture(card("Real paper"), stray, card("Another")))
    assert [c.title for c in digest.cards] == ["Real paper", "Another"]
    assert len(digest.warnings) == WARNINGS_MAX + 1
    summary = digest.warnings[-1]
    assert summary.line is None and "19,950 more warnings" in summary.message


def test_control_characters_and_escape_sequences_never_reach_a_paper() -> None:
    padding = card("Padding", abstract="p " * 40_000)  # pushes the NUL past the first 64 KB
    text = capture(
        padding,
        card("Bell\x07 and \x1b[31mred\x1b[0m title\x00", abstract="Null\x00bytes\x85 " + ABSTRACT),
    )
    _, hostile = read(text).cards
    assert hostile.title == "Bell and red title"
    assert hostile.abstract == "Null bytes  " + ABSTRACT
    assert "\t" in read(capture(card("Tab", abstract="a\tb " + ABSTRACT))).cards[0].abstract
