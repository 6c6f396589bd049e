"""The mailto unsubscribe of every digest's ``List-Unsubscribe`` works: the address carries
the subscriber's token, and ``newsletter bounces`` unsubscribes whom a mail to it names, or
its subscribed sender when From and envelope agree; anything else is reported, not done."""

from __future__ import annotations

import email
import json
import logging
import re
import shutil
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from newsletter.render.tokens import Signer
from tests.helpers import SAMPLES, invoke

SECRET = "k2Jx9-TqLw_0aZr7Vn4bYc8uHs1eDf6gPm3"
ENV = {"NEWSLETTER_UNSUBSCRIBE_SECRET": SECRET}
TOKEN = Signer(SECRET).mailto("ada@example.org")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copytree(SAMPLES, tmp_path / "digests")
    (tmp_path / "config.yaml").write_text(
        "sender: Research digest <digest@example.org>\npublic_url: https://digest.example.org\n"
        "outbox_dir: outbox\n"
    )
    (tmp_path / "subscribers.yaml").write_text(
        "subscribers:\n  - email: ada@example.org\n    keywords: [pruning]\n"
        "  - email: grace@example.org\n    keywords: [transformer]\n"
    )
    return tmp_path


def write(project: Path, name: str, to: str, sender: str, envelope: str | None, **more) -> str:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = "unsubscribe"
    message["Message-ID"] = f"<{name}@mail.example.net>"
    if envelope is not None:
        message["Return-Path"] = f"<{envelope}>"
    for header, value in more.items():
        message[header.replace("_", "-")] = value
    message.set_content("please stop")
    path = project / f"{name}.eml"
    path.write_bytes(message.as_bytes())
    return str(path)


def decide(project: Path, *paths: str) -> list[dict]:
    result = invoke(project / "config.yaml", "bounces", "--json", *paths, environ=ENV)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def status(project: Path, address: str) -> dict:
    listed = json.loads(
        invoke(project / "config.yaml", "subscribers", "--json", environ=ENV).stdout
    )
    return next(row for row in listed if row["address"] == address)


def test_every_digest_offers_a_mailto_carrying_its_subscribers_token(project: Path) -> None:
    assert invoke(project / "config.yaml", "send", "--now", environ=ENV).exit_code == 0
    headers = {}
    for path in (project / "outbox" / "new").iterdir():
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        headers[message["To"].addresses[0].addr_spec] = str(message["List-Unsubscribe"])
    mailto = re.search(r"<mailto:([^>]+)>", headers["ada@example.org"]).group(1)
    assert mailto == f"unsubscribe+{TOKEN}@example.org?subject=unsubscribe"
    assert TOKEN not in headers["grace@example.org"]


def test_a_mail_to_the_tokened_address_unsubscribes_whom_it_names(project, caplog) -> None:
    # (from another address of hers: the token decides, not the sender)
    path = write(project, "m1", f"unsubscribe+{TOKEN}@example.org", "ada@home.example", None)
    with caplog.at_level(logging.INFO):
        (decision,) = decide(project, path)
    assert (decision["address"], decision["kind"], decision["action"]) == (
        "ada@example.org", "unsubscribe", "unsubscribed",
    )  # fmt: skip
    row = status(project, "ada@example.org")
    assert row["status"] == "unsubscribed" and "(mailto)" in json.dumps(row)
    assert "ada@example.org: unsubscribe, unsubscribed" in caplog.text
    (again,) = decide(project, path)  # the same mail read twice
    assert again["action"] == "ignored" and "already read" in again["detail"]


def test_without_a_token_the_aligned_subscribed_sender_is_unsubscribed(project: Path) -> None:
    aligned = write(project, "m2", "unsubscribe@example.org", "Grace <grace@example.org>",
                    "grace@example.org")  # fmt: skip
    (decision,) = decide(project, aligned)
    assert (decision["address"], decision["action"]) == ("grace@example.org", "unsubscribed")
    assert "From and envelope aligned" in decision["detail"]
    assert status(project, "grace@example.org")["status"] == "unsubscribed"


@pytest.mark.parametrize(
    ("to", "sender", "envelope", "more", "why"),
    [
        ("unsubscribe@example.org", "ada@example.org", "bulk@spoof.example", {},
         "its From is not its envelope sender"),
        ("unsubscribe@example.org", "ada@example.org", None, {}, "none recorded"),
        ("unsubscribe@example.org", "eve@example.net", "eve@example.net", {},
         "its sender is not a subscriber"),
        ("unsubscribe+0123456789abcdef0123@example.org", "eve@example.net", "eve@example.net",
         {}, "its token is not valid"),
        (f"unsubscribe+{TOKEN}@example.org", "ada@example.org", "ada@example.org",
         {"Auto_Submitted": "auto-replied"}, "an automatic reply"),
    ],
)  # fmt: skip
def test_anything_else_is_reported_and_never_acted_on(project, to, sender, envelope, more, why):
    (decision,) = decide(project, write(project, "m3", to, sender, envelope, **more))
    assert decision["action"] == "ignored" and why in decision["detail"], decision
    assert status(project, "ada@example.org")["status"] == "active"


def test_mail_to_another_address_is_not_an_unsubscribe_request(project: Path) -> None:
    path = write(project, "m4", "digest@example.org", "ada@example.org", "ada@example.org")
    (decision,) = decide(project, path)
    assert decision["kind"] == "none" and decision["action"] == "ignored"
    assert status(project, "ada@example.org")["status"] == "active"
