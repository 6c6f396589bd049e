"""The MIME message: its structure and headers, no header injection, short CRLF lines on
the wire, international names and subjects encoded."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from tests.render_helpers import (
    ada,
    fixed_papers,
    parse,
    parts,
    render,
)


def test_message_structure_and_headers(tmp_path: Path) -> None:
    rendered = render(tmp_path)
    message = parse(rendered.data)
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in message.iter_parts())
    assert message["From"] == "Research digest <digest@example.org>"
    assert message["To"] == "Ada <ada@example.org>"
    assert message["Subject"] == (
        "3 new papers: Compressing KV Caches with Learned Low-Rank Projections"
    )
    assert message["Date"] == "Thu, 12 Mar 2026 12:00:00 +0000"
    assert re.fullmatch(r"<digest\.[0-9a-f]{32}@example\.org>", message["Message-ID"])
    assert message["List-Id"] == "Research digest <digest.example.org>"
    assert message["List-Unsubscribe"] == "<mailto:unsubscribe@example.org?subject=unsubscribe>"
    assert "List-Unsubscribe-Post" not in message
    assert (message["Precedence"], message["Auto-Submitted"]) == ("bulk", "auto-generated")
    assert "Feedback-ID" not in message
    text, html = parts(message)
    assert text.replace("\r\n", "\n") == rendered.text
    assert html.replace("\r\n", "\n") == rendered.html
    assert rendered.paper_ids == ("t-compress", "2603.01234", "t-distil")


def test_no_header_injection(tmp_path: Path) -> None:
    evil = fixed_papers()
    evil[2] = replace(evil[2], title="Compress\r\nBcc: victim@example.org\r\nX-Evil: 1")
    rendered = render(tmp_path, subscriber=ada(name="Ada\r\nBcc: other@example.org"), papers=evil)
    message = parse(rendered.data)
    assert message["Bcc"] is None and message["X-Evil"] is None
    assert "\n" not in message["Subject"] and "Bcc" in message["Subject"]
    assert message["To"].addresses[0].addr_spec == "ada@example.org"
    header_block = rendered.data.split(b"\r\n\r\n")[0].decode()
    assert not re.search(r"^(Bcc|X-Evil):", header_block, re.MULTILINE)


def test_control_and_bidi_override_characters_never_reach_a_header(tmp_path: Path) -> None:
    evil = fixed_papers()
    evil[2] = replace(evil[2], title="Compress\x00ion \u202egpj.exe\u202c caches\x85")
    rendered = render(tmp_path, subscriber=ada(name="Ada\u0000 \u2066Lovelace\u2069"), papers=evil)
    header_block = rendered.data.split(b"\r\n\r\n")[0]
    message = parse(rendered.data)
    for value in (str(message["Subject"]), str(message["To"])):
        assert not re.search("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", value), value
    assert "Compress ion gpj.exe caches" in str(message["Subject"])
    assert str(message["To"]) == "Ada Lovelace <ada@example.org>"
    assert b"\x00" not in header_block


def test_every_line_on_the_wire_is_short_and_ends_with_crlf(tmp_path: Path) -> None:
    long_title = "Pruning " + "x" * 3000
    papers = fixed_papers()
    papers[0] = replace(papers[0], title=long_title, abstract="pruning " * 2000)
    data = render(tmp_path, papers=papers).data
    assert data.endswith(b"\r\n")
    lines = data.split(b"\r\n")
    assert all(b"\r" not in line and b"\n" not in line for line in lines)
    assert max(len(line) for line in lines) <= 998


def test_international_names_and_addresses(tmp_path: Path) -> None:
    zoe = render(tmp_path, subscriber=ada(name="Zoë Ünal", email="zoe@bücher.de"))
    message = parse(zoe.data)
    assert message["To"].addresses[0].display_name == "Zoë Ünal"
    assert message["To"].addresses[0].domain == "xn--bcher-kva.de"  # IDNA on the wire
    assert zoe.data.isascii()
    utf8 = render(tmp_path, subscriber=ada(email="jürgen@example.org"))
    assert 'To: "Ada" <jürgen@example.org>'.encode() in utf8.data  # SMTPUTF8 header
    utf8.data.decode("utf-8")  # raw UTF-8 headers, valid throughout


def test_long_non_ascii_subject_is_encoded_and_folded(tmp_path: Path) -> None:
    papers = fixed_papers()
    papers[2] = replace(papers[2], title="Über-Sparse Compression — " + "Ärger " * 30)
    rendered = render(tmp_path, papers=papers)
    message = parse(rendered.data)
    assert message["Subject"] == rendered.subject
    assert rendered.subject.endswith("...") and len(rendered.subject) <= 100
    header_block = rendered.data.split(b"\r\n\r\n")[0]
    assert header_block.isascii()
    assert max(len(line) for line in header_block.split(b"\r\n")) <= 78


def test_a_configured_feedback_id_is_carried(tmp_path: Path) -> None:
    message = parse(render(tmp_path, extra="feedback_id: 'digest:research:newsletter'\n").data)
    assert message["Feedback-ID"] == "digest:research:newsletter"
