"""The sign-up flow's mails: multipart, CSS inlined, escaped, personal rather than list mail;
a template in the user's folder replaces the shipped one, and a broken one names its line."""

from __future__ import annotations

import email
from email import policy
from pathlib import Path

import pytest

from newsletter.config.settings import RenderSettings
from newsletter.errors import TemplateError
from newsletter.render.notices import KINDS, Notices, NoticeView
from tests.helpers import NOW


def view(notices: Notices, kind: str, **changes: object) -> NoticeView:
    values: dict[str, object] = {
        "kind": kind,
        "subject": notices.subject(kind),
        "brand": notices.brand,
        "address": "kim@example.net",
        "link": "https://digest.example.org/confirm?t=abc",
        "hours": 48,
        "keywords": ("pruning", "distill*"),
        "schedule": "daily at 07:00 (UTC)",
        "first_digest": "Tue 08 Dec 2026, 07:00 (UTC)",
    }
    return NoticeView(**(values | changes))  # type: ignore[arg-type]


def parsed(notices: Notices, shown: NoticeView) -> email.message.EmailMessage:
    data = notices.render(shown, NOW).data
    return email.message_from_bytes(data, policy=policy.default)  # type: ignore[return-value]


@pytest.mark.parametrize("kind", KINDS)
def test_each_notice_is_a_personal_multipart_mail_with_its_link(tmp_path: Path, kind) -> None:
    notices = Notices(RenderSettings(), tmp_path)
    message = parsed(notices, view(notices, kind))
    assert message["To"] == "kim@example.net" and message["Auto-Submitted"] == "auto-generated"
    assert message["List-Unsubscribe"] is None and message["Precedence"] is None
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "https://digest.example.org/confirm?t=abc" in text
    assert 'href="https://digest.example.org/confirm?t=abc"' in html
    assert "<style" not in html.split("<body")[1] and 'style="' in html  # (inlined)


def test_what_the_reader_typed_is_escaped_in_the_html(tmp_path: Path) -> None:
    notices = Notices(RenderSettings(), tmp_path)
    message = parsed(notices, view(notices, "confirm", keywords=("<b>x</b>",)))
    html = message.get_body(("html",)).get_content()
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html


def test_a_template_in_the_users_folder_replaces_the_shipped_one(tmp_path: Path) -> None:
    (tmp_path / "confirm.txt.j2").write_text("Lab digest: open {{ notice.link }}\n")
    notices = Notices(RenderSettings(), tmp_path)
    message = parsed(notices, view(notices, "confirm"))
    text = message.get_body(("plain",)).get_content()
    assert text.strip() == "Lab digest: open https://digest.example.org/confirm?t=abc"


def test_a_broken_template_names_its_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "welcome.html.j2").write_text("<p>hi</p>\n{% if notice.link %}\n")
    notices = Notices(RenderSettings(), tmp_path)
    with pytest.raises(TemplateError, match=r"welcome\.html\.j2:2: template error"):
        notices.render(view(notices, "welcome"), NOW)
    (tmp_path / "welcome.html.j2").write_text("<p>{{ notice.nothing }}</p>\n")
    with pytest.raises(TemplateError, match=r"welcome\.html\.j2: template error: .*nothing"):
        notices.render(view(notices, "welcome"), NOW)
