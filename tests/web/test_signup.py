"""Readers sign up on their own: ``newsletter serve`` as a real process, driven over HTTP.
The confirmation mail arrives in the Maildir outbox, the profile file changes only on the
POST of the confirmation (its comments kept), the next send mails the new subscriber; bad
tokens change nothing; the answer never tells who is subscribed; the limits and the honeypot
hold; the form shows what is wrong with the typed values kept."""

from __future__ import annotations

import email
import html
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path

import httpx
import pytest

from tests.helpers import ROOT, invoke, open_project_store
from tests.smtp_server import SmtpServer
from tests.web.test_app import ENV, PROFILES, Site, served_project

SIGNUP = """\
subscribe:
  enabled: true
  confirm_hours: 48
  limits:
    per_address_hours: 24
    per_hour: {per_hour}
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    with served_project(tmp_path_factory.mktemp("signup"), SIGNUP.format(per_hour=200)) as s:
        yield s


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, follow_redirects=False) as client:
        yield client


def mails_to(site: Site, address: str) -> list[email.message.EmailMessage]:
    """The messages the outbox holds for ``address``, oldest first."""
    paths = sorted(
        (site.folder / "outbox" / "new").iterdir(), key=lambda p: (p.stat().st_mtime_ns, p.name)
    )
    found = [email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in paths]
    return [m for m in found if m["To"].addresses[0].addr_spec == address]


def link_of(message, path: str) -> str:
    text = message.get_body(("plain",)).get_content()
    return next(w for w in text.split() if f"/{path}?t=" in w)


def sign_up(site: Site, http: httpx.Client, address: str, **values: str) -> httpx.Response:
    form = {"email": address, "keywords": "pruning, distill*", "website": ""} | values
    return http.post(f"{site.url}/subscribe", data=form)


def profiles(site: Site) -> str:
    return (site.folder / "subscribers.yaml").read_text()


def test_the_form_asks_for_keywords_and_explains_them(site: Site, http) -> None:
    page = http.get(f"{site.url}/subscribe")
    assert page.status_code == 200
    for field in ('name="email"', 'name="keywords"', 'name="name"', 'name="frequency"'):
        assert field in page.text
    assert "<option selected>UTC</option>" in page.text  # the configured default zone
    assert "<code>|</code>" in page.text and "<code>*</code>" in page.text


def test_signing_up_mails_a_link_and_only_confirming_changes_the_file(site: Site, http) -> None:
    before = profiles(site)
    answer = sign_up(site, http, "kim@example.net", name="Kim", frequency="weekly", day="friday")
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    (mail,) = mails_to(site, "kim@example.net")
    assert mail["Subject"].startswith("Confirm your subscription")
    link = link_of(mail, "confirm")
    shown = http.get(link)  # what a mail scanner's prefetch does: nothing
    assert shown.status_code == 200 and "kim@example.net" in shown.text
    assert "Confirm my subscription" in shown.text
    assert profiles(site) == before
    token = link.partition("?t=")[2]
    done = http.post(f"{site.url}/confirm", data={"t": token})
    assert done.status_code == 200 and "You are subscribed" in done.text
    after = profiles(site)
    assert after.startswith(before)  # the operator's comments and entries, byte for byte
    assert "- email: kim@example.net\n    name: Kim\n" in after
    assert "frequency: weekly\n    day: friday\n" in after
    welcome = mails_to(site, "kim@example.net")[-1]
    assert welcome["Subject"].startswith("Welcome")
    again = http.post(f"{site.url}/confirm", data={"t": token})  # confirming twice: harmless
    assert again.status_code == 200 and "confirmed already" in again.text
    assert profiles(site) == after and len(mails_to(site, "kim@example.net")) == 2
    sent = invoke(site.config, "send", "--now", "--json", environ=ENV)
    assert "kim@example.net" in [item["subscriber"] for item in json.loads(sent.stdout)["sent"]]


def test_the_answer_is_the_same_for_known_and_unknown_addresses(site: Site, http) -> None:
    known = sign_up(site, http, "ada@example.org")
    unknown = sign_up(site, http, "lin@example.net")
    assert known.status_code == unknown.status_code == 200
    assert known.content == unknown.content
    (note,) = mails_to(site, "ada@example.org")[-1:]
    assert note["Subject"].startswith("You are already subscribed")
    assert "/preferences?t=" in link_of(note, "preferences")
    assert mails_to(site, "lin@example.net")[-1]["Subject"].startswith("Confirm")


def test_forged_expired_and_other_purpose_tokens_change_nothing(site: Site, http) -> None:
    sign_up(site, http, "max@example.net")
    token = link_of(mails_to(site, "max@example.net")[-1], "confirm").partition("?t=")[2]
    before = profiles(site)
    forged = token[:-3] + ("abc" if not token.endswith("abc") else "xyz")
    other = site.links["ada@example.org"]["List-Unsubscribe"].partition("?t=")[2]
    for bad in (forged, other, ""):
        assert http.get(f"{site.url}/confirm", params={"t": bad}).status_code == 403
        assert http.post(f"{site.url}/confirm", data={"t": bad}).status_code == 403
    with open_project_store(site.folder) as store:  # the request was made 49 hours ago
        asked = (datetime.now(UTC) - timedelta(hours=49)).isoformat()
        with store.transaction() as db:
            db.execute(
                "UPDATE signups SET asked_at = ? WHERE address = ?", (asked, "max@example.net")
            )
    expired = http.post(f"{site.url}/confirm", data={"t": token})
    assert expired.status_code == 410 and "expired" in expired.text
    assert profiles(site) == before
    assert "max@example.net" not in invoke(site.config, "subscribers", environ=ENV).output


def test_the_honeypot_is_answered_like_anyone_and_mails_nothing(site: Site, http) -> None:
    trapped = sign_up(site, http, "bot@example.net", website="http://spam.example")
    assert trapped.status_code == 200 and "Check your inbox" in trapped.text
    assert mails_to(site, "bot@example.net") == []
    assert any("bot@example.net: no mail sent (honeypot)" in line for line in site.log)


def test_a_bad_keyword_is_shown_with_the_typed_values_kept(site: Site, http) -> None:
    answer = sign_up(site, http, "ren@example.net", keywords="pruning, com*press", name="Ren")
    assert answer.status_code == 400
    text = html.unescape(answer.text)
    assert "bad keyword 'com*press': '*' may only end a keyword" in text
    assert 'value="pruning, com*press"' in text and 'value="Ren"' in text
    assert 'value="ren@example.net"' in text
    assert mails_to(site, "ren@example.net") == []


def test_pending_sign_ups_are_listed_and_never_sent_to(site: Site, http) -> None:
    sign_up(site, http, "pia@example.net")
    now = datetime.now(UTC)
    listed = invoke(site.config, "subscribers", "--pending", "--json", environ=ENV, now=now)
    assert "pia@example.net" in [row["address"] for row in json.loads(listed.stdout)]
    text = invoke(site.config, "subscribers", "--pending", environ=ENV, now=now).output
    assert re.search(r"pia@example\.net  asked .* UTC, expires .* \[pruning, distill\*\]", text)
    sent = invoke(site.config, "send", "--now", "--json", environ=ENV)
    assert "pia@example.net" not in [i["subscriber"] for i in json.loads(sent.stdout)["sent"]]


def test_the_limits_hold_for_one_address_and_for_all(tmp_path: Path, http) -> None:
    with served_project(tmp_path, SIGNUP.format(per_hour=2)) as limited:
        for address in ("a@example.net", "a@example.net", "b@example.net", "c@example.net"):
            answer = sign_up(limited, http, address)
            assert answer.status_code == 200 and "Check your inbox" in answer.text
        assert len(mails_to(limited, "a@example.net")) == 1  # once in 24 hours
        assert len(mails_to(limited, "b@example.net")) == 1
        assert mails_to(limited, "c@example.net") == []  # the hour's two are spent
        log = "".join(limited.log)
        assert "a@example.net: no mail sent (per-address limit" in log
        assert "c@example.net: no mail sent (hourly limit" in log


def test_the_page_is_not_found_until_the_operator_enables_it(tmp_path: Path, http) -> None:
    with served_project(tmp_path) as closed:
        assert http.get(f"{closed.url}/subscribe").status_code == 404
        assert sign_up(closed, http, "x@example.net").status_code == 404
        assert (closed.folder / "subscribers.yaml").read_text() == PROFILES


def test_over_smtp_the_confirmation_and_welcome_reach_a_real_server(tmp_path: Path, http) -> None:
    with SmtpServer() as server:
        smtp = f"delivery: smtp\nsmtp:\n  host: 127.0.0.1\n  port: {server.port}\n"
        with served_project(
            tmp_path, SIGNUP.format(per_hour=50) + smtp + "  security: none\n"
        ) as s:
            assert sign_up(s, http, "eve@example.net").status_code == 200
            (confirm,) = [m for m in server.sink.parsed() if m["To"] == "eve@example.net"]
            assert confirm.get_body(("html",)) is not None  # multipart: text and HTML
            token = link_of(confirm, "confirm").partition("?t=")[2]
            assert "eve@example.net" not in profiles(s)
            assert http.post(f"{s.url}/confirm", data={"t": token}).status_code == 200
            assert "- email: eve@example.net" in profiles(s)
            mails = [m for m in server.sink.parsed() if m["To"] == "eve@example.net"]
            assert [m["Subject"].split()[0] for m in mails] == ["Confirm", "Welcome"]
            invoke(s.config, "send", "--now", environ=ENV)
            assert server.sink.recipients().count("eve@example.net") == 3  # and her digest


def readme_form() -> dict[str, str]:
    """The fields of the embeddable form in the README, with the values it would send."""
    from html.parser import HTMLParser

    block = re.search(r"```html\n(<form.*?</form>)\n```", (ROOT / "README.md").read_text(), re.S)
    assert block, "README has no embeddable form"
    fields: dict[str, str] = {}

    class Fields(HTMLParser):
        def handle_starttag(self, tag, attrs):
            named = dict(attrs)
            if tag in ("input", "select") and "name" in named:
                fields.setdefault(named["name"] or "", named.get("value") or "")
            if tag == "option" and fields.get("frequency") == "":
                fields["frequency"] = named["value"] or ""

    Fields().feed(block.group(1))
    return fields


def test_the_readme_form_signs_up_from_another_site(site: Site, http) -> None:
    fields = readme_form()
    assert fields.keys() >= {"email", "keywords", "frequency", "website"}
    fields |= {"email": "lab@example.net", "keywords": "pruning, sparse attention"}
    posted = http.post(
        f"{site.url}/subscribe", data=fields, headers={"Origin": "https://lab.example.edu"}
    )
    assert posted.status_code == 200 and "Check your inbox" in posted.text
    (mail,) = mails_to(site, "lab@example.net")
    assert "/confirm?t=" in link_of(mail, "confirm")
