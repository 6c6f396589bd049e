"""The Hugging Face daily papers API reader: both response shapes, bad responses, and one
paper whatever source it came from. Our own made-up responses always run; the recorded real
ones in ../shared/samples run when that folder is there."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from newsletter.errors import DigestError
from newsletter.sources.read import read_digest_bytes, read_digest_file
from newsletter.store.sqlite import open_store
from tests.digest_text import ABSTRACT, capture, card
from tests.helpers import invoke, shared_sample

TODAY = date(2026, 11, 23)


def old_item(number: int, **paper: object) -> dict:
    """An item in the 2024 shape: wrapped paper title and summary, item title unwrapped."""
    fields = {
        "id": f"2405.1573{number}",
        "authors": [{"_id": "a", "name": "Ada Lovelace", "hidden": False}] * 3,
        "publishedAt": "2024-05-24T00:00:00.000Z",
        "title": f"Hierarchical Backbones as Visual Encoder\n  number {number}",
        "summary": "Large multimodal models\n  encode images. " + ABSTRACT,
        "upvotes": 30 + number,
    }
    fields.update(paper)
    return {
        "paper": fields,
        "publishedAt": "2024-05-27T09:00:00.000Z",
        "title": f"Hierarchical Backbones as Visual Encoder number {number}",
        "mediaUrl": "https://example.org/x.png",
        "numComments": number,
    }


def new_item(number: int, **paper: object) -> dict:
    """An item in the 2025+ shape: submittedOnDailyAt, organization, optional ai_* fields."""
    fields = {
        "id": f"2608.1988{number}",
        "authors": [{"_id": "a", "name": "Grace Hopper", "hidden": False, "user": {"x": 1}}],
        "publishedAt": "2026-08-20T00:00:00.000Z",
        "submittedOnDailyAt": "2026-08-21T01:02:03.000Z",
        "title": f"Awakening Static Worlds for Agent Learning {number}",
        "summary": ABSTRACT,
        "upvotes": 163,
        "ai_summary": "A summary.",
        "githubRepo": "https://github.com/example/repo",
    }
    if number % 2:
        fields["ai_keywords"] = ["agents"]
    fields.update(paper)
    return {
        "paper": fields,
        "publishedAt": "2026-08-20T10:00:00.000Z",
        "title": fields["title"],
        "summary": ABSTRACT,
        "numComments": 2,
        "organization": {"name": "google", "fullname": "Google"},
        "mediaUrls": [],
        "isAuthorParticipating": False,
    }


def read(value: object) -> object:
    return read_digest_bytes(json.dumps(value).encode(), today=TODAY)


def test_the_2024_shape_reads_unwrapped_titles_and_the_day_it_was_listed() -> None:
    digest = read([old_item(1), old_item(2)])
    assert digest.format == "hf-daily" and digest.warnings == ()
    assert digest.listing_date == date(2024, 5, 27)  # the item's day, not the arXiv date
    first = digest.cards[0]
    assert first.title == "Hierarchical Backbones as Visual Encoder number 1"
    assert first.abstract.startswith("Large multimodal models encode images. We study")
    assert (first.arxiv_id, first.authors_count, first.upvotes, first.comments) == (
        "2405.15731",
        3,
        31,
        1,
    )
    assert first.published == date(2024, 5, 24)


def test_the_2025_shape_with_optional_fields_here_and_there() -> None:
    items = [new_item(1), new_item(2, id="2512.18181v3"), new_item(3)]
    del items[2]["organization"]
    digest = read(items)
    assert digest.listing_date == date(2026, 8, 21) and digest.warnings == ()
    assert [c.arxiv_id for c in digest.cards] == ["2608.19881", "2512.18181", "2608.19883"]
    assert [c.organization for c in digest.cards] == ["Google", "Google", None]
    first = digest.cards[0].details
    assert (first.authors, first.ai_keywords, first.ai_summary) == (
        ("Grace Hopper",),
        ("agents",),
        "A summary.",
    )
    assert dict(first.links) == {
        "hf": "https://huggingface.co/papers/2608.19881",
        "github": "https://github.com/example/repo",
    }
    assert digest.cards[1].details.ai_keywords == ()


@pytest.mark.parametrize(
    "forged",
    ["javascript:alert(1)", "https://x.org/a b", "https://x.org/\x07", "x" * 3000, 42, None],
)
def test_a_link_that_is_no_web_link_is_dropped_not_mailed(forged: object) -> None:
    (card,) = read([new_item(1, githubRepo=forged, projectPage="https://ok.example/p")]).cards
    assert card.details.link("github") is None
    assert card.details.link("project") == "https://ok.example/p"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'[{"paper": {"id": "2401.00001", "title": "T"', "ends in the middle"),
        (b'{"error": "Invalid date"}', "answered with an error instead of papers: Invalid date"),
        (b'{"papers": []}', "not a Hugging Face daily papers response"),
        (b"<!DOCTYPE html><html><body>Sign in</body></html>", "an HTML page, not a digest"),
    ],
)
def test_responses_that_are_not_papers_are_refused_with_what_they_are(
    data: bytes, message: str
) -> None:
    with pytest.raises(DigestError, match=message):
        read_digest_bytes(data, today=TODAY)


def test_items_without_a_paper_or_a_summary_are_warnings_and_the_rest_is_read() -> None:
    items = [new_item(1), {"title": "no paper"}, new_item(2, summary=""), 7, new_item(3)]
    items[2]["summary"] = ""
    digest = read(items)
    assert len(digest.cards) == 2
    messages = [w.message for w in digest.warnings]
    assert "item 2 has no 'paper' object; skipped" in messages
    assert any(m.startswith("item 3 (") and "has no summary" in m for m in messages)
    assert "item 4 has no 'paper' object; skipped" in messages


def test_control_characters_in_json_strings_never_reach_a_paper() -> None:
    item = new_item(
        1, title="Agents\u0000 that \u001b[31mact\u009b", summary="A\u0007b " + ABSTRACT
    )
    item["title"] = item["paper"]["title"]
    (only,) = read([item]).cards
    assert only.title == "Agents that [31mact" and only.abstract.startswith("A b We study")


def test_an_empty_day_is_no_papers_and_says_which_date_it_used() -> None:
    digest = read([])
    assert digest.cards == () and digest.listing_date == TODAY
    assert "no listing date" in digest.warnings[0].message


def test_the_same_paper_from_a_capture_and_from_the_api_is_one_paper(project: Path) -> None:
    title = "Hierarchical Backbones as Visual Encoder number 1"
    (project / "digests" / "capture.txt").write_text(capture(card(title)))
    (project / "digests" / "hf-daily.json").write_text(json.dumps([old_item(1), old_item(2)]))
    result = invoke(project / "config.yaml", "ingest")
    assert result.exit_code == 0, result.output
    with open_store(project / "state") as store:
        papers = store.papers()
    assert len(papers) == 2
    joined = next(p for p in papers if p.title == title)
    assert joined.arxiv_id == "2405.15731"  # the capture's paper, now with its arXiv id
    assert joined.source == "capture.txt" and joined.upvotes == 31  # first seen; API counters


EXPECTED = {
    "hf_daily_papers/hfnl-zh_2024-05-27.json": (13, date(2024, 5, 27)),
    "hf_daily_papers/hfnl-zh_2024-10-11.json": (22, date(2024, 10, 11)),
    "hf_daily_papers/hfnl-zh_2025-07-22.json": (16, date(2025, 7, 22)),
    "hf_daily_papers/hfnl-zh_2026-08-21.json": (17, date(2026, 8, 21)),
    "hf_daily_papers/hfnl-zh-fork_2026-05-11.json": (41, date(2026, 5, 11)),
    "hf_daily_papers_api.json": (30, date(2026, 6, 12)),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recorded_responses_read_completely_without_warnings(name: str) -> None:
    digest = read_digest_file(shared_sample(name), today=TODAY)
    assert (len(digest.cards), digest.listing_date) == EXPECTED[name]
    assert digest.warnings == ()
    assert all(c.arxiv_id and c.title and c.abstract and "\n" not in c.title for c in digest.cards)


def test_a_capture_that_starts_with_an_upvote_count_is_still_a_capture() -> None:
    text = capture(card("Pruning things", upvotes="[-] 19"), header=[], listing="Dec 17")
    for start in ("[-] 19\n\n", "[]\n\n"):
        data = (start + text).encode()
        digest = read_digest_bytes(data, today=TODAY)
        assert digest.format == "hf-listing"
    assert read_digest_bytes(b"[]\n", today=TODAY).format == "hf-daily"


def test_json_with_bytes_that_are_not_utf8_is_refused_not_a_crash() -> None:
    with pytest.raises(DigestError, match="not UTF-8"):
        read_digest_bytes(b'[{"paper": {"title": "\x80\x81"}}]', today=TODAY)
