"""The digest in every mail client: Outlook's table layout and settings, the Apple and
format metas, the HTML part's transfer encoding, the budget counted on the encoded part,
the source's TL;DR and the trending section."""

from __future__ import annotations

import binascii
import re
from dataclasses import replace
from pathlib import Path

from newsletter.models import Details
from newsletter.render.mime import encoded_html
from newsletter.render.renderer import HTML_BUDGET
from tests.render_helpers import ABSTRACT, ada, fixed_papers, parse, parts, render


def html_part(data: bytes):
    """The message's HTML part as it travels: (transfer encoding, encoded body bytes)."""
    (part,) = [p for p in parse(data).iter_parts() if p.get_content_type() == "text/html"]
    raw = data.split(b'Content-Type: text/html; charset="utf-8"\r\n', 1)[1]
    body = raw.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n--", 1)[0]
    return part["Content-Transfer-Encoding"], body


def test_the_layout_is_presentation_tables_with_the_outlook_settings(tmp_path: Path) -> None:
    html = render(tmp_path).html
    assert re.search(r'<html lang="en" dir="ltr"[^>]*xmlns:o="urn:schemas-microsoft-com', html)
    assert "<o:OfficeDocumentSettings>" in html and "<o:PixelsPerInch>96</o:PixelsPerInch>" in html
    assert '<meta name="x-apple-disable-message-reformatting">' in html
    assert '<meta name="format-detection" content="telephone=no' in html
    # Each card a cell of a role="presentation" table, padded and bordered there: Outlook
    # for Windows drops padding, borders and widths on divs.
    cards = re.findall(r'<td class="card" bgcolor="#ffffff" style="([^"]*)"', html)
    assert len(cards) == 3 and all("padding:" in c and "border:" in c for c in cards)
    tables = re.findall(r"<table ([^>]*)>", html)
    assert len(tables) >= 5 and all('role="presentation"' in t for t in tables)
    assert not re.search(r"<div[^>]*style=\"[^\"]*(padding|border)", html)


def test_the_html_part_goes_quoted_printable_unless_base64_is_shorter(tmp_path: Path) -> None:
    rendered = render(tmp_path)
    encoding, body = html_part(rendered.data)
    assert encoding == "quoted-printable" and body == encoded_html(rendered.html).data
    assert read_back(rendered.data) == rendered.html  # (as rendered, CRLF line ends aside)
    cjk = [
        replace(p, abstract="剪枝 pruning " + "神经网络的剪枝与知识蒸馏。" * 30)
        for p in fixed_papers()
    ]
    rendered = render(tmp_path, papers=cjk)
    encoding, body = html_part(rendered.data)
    assert encoding == "base64" and body == encoded_html(rendered.html).data
    assert len(body) < len(always_quoted_printable(rendered.html))
    assert read_back(rendered.data) == rendered.html


def read_back(data: bytes) -> str:
    """The HTML part as a mail reader decodes it, with LF line ends."""
    return parts(parse(data))[1].replace("\r\n", "\n")


def always_quoted_printable(html: str) -> bytes:
    """``html`` quoted-printable whatever its size."""
    return binascii.b2a_qp(html.encode(), istext=True)


def test_the_budget_counts_the_encoded_html_part(tmp_path: Path) -> None:
    """Neither reading of Gmail's limit (encoded or decoded) clips a long digest: the part
    on the wire stays within the budget, in Latin and in non-Latin text."""
    base = fixed_papers()[0]
    for abstract in (ABSTRACT * 4, "剪枝 pruning " + "神经网络的剪枝与知识蒸馏。" * 40):
        papers = [
            replace(base, id=f"p{i}", title=f"Pruning {i}", abstract=abstract) for i in range(100)
        ]
        rendered = render(
            tmp_path, subscriber=ada(max_papers=100), papers=papers, extra="abstract_chars: 5000\n"
        )
        _, body = html_part(rendered.data)
        shown = len(rendered.paper_ids)
        assert len(body) <= HTML_BUDGET and len(rendered.html.encode()) <= HTML_BUDGET
        assert 1 <= shown < 100 and f"{100 - shown} more matches did not fit" in rendered.text
        # One more paper would not have fitted: the budget is used, not merely respected.
        assert len(body) > HTML_BUDGET * (shown - 1) / shown


def test_a_sources_ai_summary_shows_under_the_title_labelled_and_the_abstract_stays(
    tmp_path: Path,
) -> None:
    summary = "Pruning at initialization matches iterative pruning once the schedule is fixed."
    papers = fixed_papers()
    papers[0] = replace(papers[0], details=replace(papers[0].details, ai_summary=summary))
    rendered = render(tmp_path, papers=papers)
    assert f"<b>AI summary from Hugging Face:</b> {summary}</p>" in rendered.html
    assert "AI summary from Hugging Face: Pruning at initialization matches" in rendered.text
    assert rendered.html.count("AI summary from Hugging Face") == 1
    assert "cheaper training and inference" in rendered.html  # (the abstract stays)


def test_trending_papers_come_in_their_own_section_and_are_recorded(tmp_path: Path) -> None:
    hot = replace(fixed_papers()[1], id="hot", title="Robots That Fold Laundry", upvotes=300)
    papers = [*fixed_papers(), replace(hot, abstract="Robots.", details=Details())]
    rendered = render(tmp_path, subscriber=ada(trending=2), papers=papers)
    assert rendered.paper_ids[-1] == "hot" and len(rendered.paper_ids) == 4
    html, text = rendered.html, rendered.text
    assert html.index("Trending today") < html.index("Robots That Fold Laundry")
    assert html.index("Robots That Fold Laundry") > html.index("3 / 3")
    assert "<b>Trending:</b> among the most upvoted new papers, outside your keywords" in html
    assert "TRENDING TODAY" in text and "* Robots That Fold Laundry" in text
    assert rendered.subject.startswith("3 new papers:")
    assert "3 new papers from" in text and "and 1 trending paper." in " ".join(text.split())
