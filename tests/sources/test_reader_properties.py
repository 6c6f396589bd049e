"""Property tests: generated captures read back exactly; mutated ones never crash the reader
and never make a paper out of anything but a real title and its own abstract."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.errors import DigestError
from newsletter.sources.decode import utf8_bytes
from newsletter.sources.hf_listing import (
    HEADER_LINES,
    TITLE_MAX,
    Kind,
    classify,
    clean_line,
    looks_like_date,
)
from newsletter.sources.read import read_digest_bytes
from tests.digest_text import HEADER

TODAY = date(2026, 11, 21)
LISTING = date(2025, 12, 17)
MONTH_NAMES = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
BASE_ABSTRACTS = [
    "We propose a method for learning sparse representations that scale to long inputs and "
    "evaluate it on language modelling, retrieval and speech benchmarks. The method matches "
    "dense baselines at a fraction of the compute and degrades gracefully when the budget "
    "shrinks; we analyse why and release code, checkpoints and the evaluation harness.",
    "Benchmarks for reasoning saturate quickly. We build a benchmark from problems written after "
    "the training cut-off of current models, annotate each with the skills it needs, and report "
    "results for twenty systems. Accuracy drops by a third relative to older benchmarks, and the "
    "drop concentrates on multi-step arithmetic and on problems that require a diagram.",
    "Diffusion models produce excellent samples slowly. We distil a pretrained model into a "
    "sampler that needs two network evaluations, derive the intermediate noise level in closed "
    "form, and show on images and audio that quality matches fifty-step sampling. The rule costs "
    "nothing at inference time and applies to any pretrained model without retraining.",
]

SETTINGS = settings(
    max_examples=int(os.environ.get("NEWSLETTER_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

words = st.text(st.characters(codec="utf-8", categories=("L", "N")), min_size=1, max_size=10)
title_words = st.one_of(words, st.sampled_from([":", "—", '"Quoted"', "2.0", "(x)", "&", "<b>"]))


def plausible_title(text: str) -> bool:
    return (
        text == clean_line(text)
        and 0 < len(text) <= 200
        and classify(text) is Kind.TEXT
        and text.casefold() not in HEADER_LINES
        and not looks_like_date(text)
    )


titles = st.lists(title_words, min_size=1, max_size=10).map(" ".join).filter(plausible_title)
abstracts = st.builds(
    lambda extra, base: clean_line(" ".join([*extra, base])),
    st.lists(words, max_size=6),
    st.sampled_from(BASE_ABSTRACTS),
).filter(lambda text: len(text) > TITLE_MAX)


@dataclass(frozen=True)
class GenCard:
    title: str
    abstract: str
    authors: int | None
    organization: str | None
    date_parts: tuple[int, int, int | None, int] | None  # month, day, year, comments
    upvotes: int | None
    upvote_style: str

    def lines(self) -> list[str]:
        out = []
        if self.upvotes is not None:
            out.append(
                {"plain": str(self.upvotes), "bracket": f"[-] {self.upvotes}"}[self.upvote_style]
                if self.upvotes
                else "-"
            )
        out += [self.title, self.abstract]
        if self.authors is not None:
            out.append(f"  • {self.authors} authors")
        elif self.organization is not None and self.date_parts is not None:
            # An organization line is only told from a title by the '·' and date after it.
            out.append(self.organization)
        if self.date_parts is not None:
            month, day, year, comments = self.date_parts
            text = f"{MONTH_NAMES[month - 1]} {day}" + (f", {year}" if year else "")
            out += ["·", text + (f" {comments}" if comments else "")]
        return out

    def expected(self) -> tuple:
        published = None
        comments = 0
        if self.date_parts is not None:
            month, day, year, comments = self.date_parts
            published = date(year or LISTING.year, month, day)
        return (
            self.title,
            self.abstract,
            self.authors,
            self.organization if self.authors is None and self.date_parts else None,
            published,
            comments,
            self.upvotes,
        )


dates = st.one_of(
    st.none(),
    st.tuples(
        st.integers(1, 11),  # year-less dates before the Dec 17 listing stay in its year
        st.integers(1, 28),
        st.one_of(st.none(), st.integers(1990, 2025)),
        st.integers(0, 40),
    ),
)
cards = st.builds(
    GenCard,
    title=titles,
    abstract=abstracts,
    authors=st.one_of(st.none(), st.integers(1, 60)),
    organization=st.one_of(st.none(), titles),
    date_parts=dates,
    upvotes=st.one_of(st.none(), st.integers(0, 999)),
    upvote_style=st.sampled_from(["plain", "bracket"]),
)
card_lists = st.lists(cards, min_size=1, max_size=8, unique_by=lambda c: c.title.casefold())


@st.composite
def layouts(draw) -> dict:
    return {
        "blank_lines": draw(st.integers(0, 3)),
        "crlf": draw(st.booleans()),
        "bom": draw(st.booleans()),
        "trailing": draw(st.sampled_from(["", " ", "  \t", "\u00a0"])),
    }


def lines_of(gen_cards: list[GenCard]) -> list[str]:
    return [*HEADER, "Dec 17"] + [line for card in gen_cards for line in card.lines()]


def render(lines: list[str], layout: dict) -> bytes:
    newline = "\r\n" if layout["crlf"] else "\n"
    separator = layout["trailing"] + newline * (layout["blank_lines"] + 1)
    text = separator.join(lines) + newline
    return (("\ufeff" if layout["bom"] else "") + text).encode("utf-8")


def read(data: bytes):
    return read_digest_bytes(data, today=TODAY)


def observed(card) -> tuple:
    return (
        card.title,
        card.abstract,
        card.authors_count,
        card.organization,
        card.published,
        card.comments,
        card.upvotes,
    )


@pytest.mark.slow
@SETTINGS
@given(card_lists, layouts())
def test_generated_captures_read_back_exactly(gen_cards: list[GenCard], layout: dict) -> None:
    digest = read(render(lines_of(gen_cards), layout))
    assert digest.warnings == ()
    assert digest.listing_date == LISTING
    assert [observed(c) for c in digest.cards] == [g.expected() for g in gen_cards]


@pytest.mark.slow
@SETTINGS
@given(card_lists, layouts(), st.data())
def test_one_deleted_or_repeated_line_never_invents_a_paper(
    gen_cards: list[GenCard], layout: dict, data: st.DataObject
) -> None:
    lines = lines_of(gen_cards)
    index = data.draw(st.integers(0, len(lines) - 1), label="line")
    if data.draw(st.booleans(), label="delete"):
        del lines[index]
    else:
        lines.insert(index, lines[index])
    digest = read(render(lines, layout))
    abstract_of = {g.title: g.abstract for g in gen_cards}
    for card in digest.cards:
        assert card.title in abstract_of
        assert card.abstract == abstract_of[card.title]
    # At most the card the mutation touched is lost.
    assert len({c.title for c in digest.cards}) >= len(gen_cards) - 1


mutations = st.lists(
    st.tuples(
        st.sampled_from(["delete", "duplicate", "swap", "insert", "corrupt"]),
        st.integers(0, 10_000),
        st.one_of(
            st.text(max_size=40),
            st.sampled_from(["·", "• 3 authors", "Feb 30", "Dec 17", "-", "[-] 4", "Subscribe"]),
        ),
    ),
    max_size=8,
)


def mutate(lines: list[str], steps: list[tuple[str, int, str]]) -> bytes:
    lines = list(lines)
    data_tail = b""
    for action, position, text in steps:
        index = position % max(len(lines), 1)
        if action == "delete" and lines:
            del lines[index]
        elif action == "duplicate" and lines:
            lines.insert(index, lines[index])
        elif action == "swap" and len(lines) > 1:
            other = (index + 1) % len(lines)
            lines[index], lines[other] = lines[other], lines[index]
        elif action == "insert":
            lines.insert(index, text)
        elif action == "corrupt":
            data_tail = bytes([0x80 + position % 0x7F]) * (1 + position % 3)
    data = "\n\n".join(lines).encode("utf-8", errors="surrogatepass")
    cut = len(data) // 2 if data_tail else len(data)
    return data[:cut] + data_tail + data[cut:]


@pytest.mark.slow
@SETTINGS
@given(card_lists, mutations)
def test_mutated_captures_never_crash_and_papers_come_from_their_lines(
    gen_cards: list[GenCard], steps: list[tuple[str, int, str]]
) -> None:
    data = mutate(lines_of(gen_cards), steps)
    try:
        digest = read(data)
    except DigestError:
        return
    # The reader's own first step (BOM, line ends, control characters), then line by line.
    decoded = utf8_bytes(data).decode("utf-8", errors="replace").split("\n")
    nonblank = [line for line in map(clean_line, decoded) if line]
    present = set(nonblank)
    for card in digest.cards:
        assert card.title in present and card.abstract in present
        assert card.abstract and card.title != card.abstract
        assert card.organization is None or card.organization in present
    assert len(digest.cards) <= len(nonblank) // 2  # a title and an abstract each
