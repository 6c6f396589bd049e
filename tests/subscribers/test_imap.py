"""Bounce and unsubscribe mail read from a real IMAP server (a private Dovecot on
loopback): its unseen messages acted on and marked seen, read once; a refused login, a
missing folder or no server named with what to fix."""

from __future__ import annotations

import imaplib
import json
from email.message import EmailMessage
from pathlib import Path

import pytest

from newsletter.render.tokens import Signer
from tests import imap_server
from tests.helpers import invoke
from tests.smtp_server import free_port

pytestmark = [
    pytest.mark.slow,  # a real server
    pytest.mark.skipif(
        imap_server.missing_reason() is not None, reason=str(imap_server.missing_reason())
    ),
]
SECRET = "k2Jx9-TqLw_0aZr7Vn4bYc8uHs1eDf6gPm3"
HERE = Path(__file__).parent / "bounces"


@pytest.fixture(scope="module")
def server():
    with imap_server.ImapServer() as running:
        yield running


def project(where: Path, port: int, **imap: str) -> Path:
    settings = {"host": "127.0.0.1", "port": str(port), "security": "none", "username":
                "bounces", "password_env": "NEWSLETTER_IMAP_PASSWORD"} | imap  # fmt: skip
    block = "".join(f"    {key}: {value}\n" for key, value in settings.items())
    where.mkdir(exist_ok=True)
    (where / "digests").mkdir()
    (where / "config.yaml").write_text(
        "sender: Research digest <digest@example.org>\npublic_url: https://digest.example.org\n"
        f"state_dir: state\nbounce:\n  imap:\n{block}"
    )
    (where / "subscribers.yaml").write_text(
        "subscribers:\n  - email: ada@example.org\n    keywords: [pruning]\n"
        "  - email: grace@example.org\n    keywords: [transformer]\n"
    )
    return where / "config.yaml"


def env(server) -> dict[str, str]:
    return {"NEWSLETTER_UNSUBSCRIBE_SECRET": SECRET, "NEWSLETTER_IMAP_PASSWORD": server.password}


def deliver(server, *messages: bytes, folder: str = "INBOX") -> None:
    imap = imaplib.IMAP4("127.0.0.1", server.port)
    imap.login(server.user, server.password)
    quoted = f'"{folder}"'  # (imaplib sends names as given: quote one with a space)
    if folder != "INBOX":
        assert imap.create(quoted)[0] == "OK"
    for data in messages:
        assert imap.append(quoted, None, None, data)[0] == "OK"
    imap.logout()


def seen(server) -> tuple[int, int]:
    """(all, unseen) messages of the inbox."""
    imap = imaplib.IMAP4("127.0.0.1", server.port)
    imap.login(server.user, server.password)
    imap.select("INBOX")
    every = imap.uid("SEARCH", "ALL")[1][0].split()
    unseen = imap.uid("SEARCH", "UNSEEN")[1][0].split()
    imap.logout()
    return len(every), len(unseen)


def mailto_unsubscribe(address: str) -> bytes:
    message = EmailMessage()
    message["From"] = f"<{address}>"
    message["To"] = f"unsubscribe+{Signer(SECRET).mailto(address)}@example.org"
    message["Subject"] = "unsubscribe"
    message["Message-ID"] = "<stop-1@mail.example.net>"
    message.set_content("please stop")
    return message.as_bytes()


def test_unseen_mail_on_the_imap_server_is_acted_on_once(server, tmp_path: Path) -> None:
    config = project(tmp_path, server.port)
    before = seen(server)
    complaint = (HERE / "arf-complaint.eml").read_bytes()
    deliver(server, mailto_unsubscribe("grace@example.org"), complaint)
    result = invoke(config, "bounces", "--json", environ=env(server))
    assert result.exit_code == 0, result.output
    decisions = {d["address"]: d for d in json.loads(result.stdout)}
    assert decisions["grace@example.org"]["action"] == "unsubscribed"
    assert decisions["ada@example.org"]["kind"] == "complaint"
    assert all(d["source"].startswith("imap://bounces@127.0.0.1:") for d in decisions.values())
    assert seen(server) == (before[0] + 2, 0)  # marked seen, kept on the server
    again = invoke(config, "bounces", "--json", environ=env(server))
    assert again.exit_code == 0 and json.loads(again.stdout) == []
    listed = json.loads(invoke(config, "subscribers", "--json", environ=env(server)).stdout)
    assert {row["address"]: row["status"] for row in listed} == {
        "ada@example.org": "complained",
        "grace@example.org": "unsubscribed",
    }


def test_a_refused_login_names_the_server_and_the_setting(tmp_path: Path) -> None:
    # (a server of its own: Dovecot slows every later login from an address that failed one)
    with imap_server.ImapServer() as own:
        config = project(tmp_path, own.port)
        wrong = env(own) | {"NEWSLETTER_IMAP_PASSWORD": "no"}
        result = invoke(config, "bounces", environ=wrong)
    assert result.exit_code == 1
    assert f"imap://bounces@127.0.0.1:{own.port}/INBOX" in result.output
    assert "refused the login" in result.output and "$NEWSLETTER_IMAP_PASSWORD" in result.output


def test_a_missing_folder_or_no_server_says_what_to_fix(server, tmp_path: Path) -> None:
    config = project(tmp_path / "a", server.port, folder='"Bounce mail"')
    result = invoke(config, "bounces", environ=env(server))
    assert result.exit_code == 1 and "no folder 'Bounce mail'" in result.output
    deliver(server, mailto_unsubscribe("ada@example.org"), folder="Bounce mail")
    found = invoke(config, "bounces", "--json", environ=env(server))
    assert [d["action"] for d in json.loads(found.stdout)] == ["unsubscribed"]
    nobody = project(tmp_path / "b", free_port())
    result = invoke(nobody, "bounces", environ=env(server))
    assert result.exit_code == 1 and "nothing listens there" in result.output


def test_a_password_in_clear_over_a_network_is_refused(tmp_path: Path) -> None:
    config = project(tmp_path, 143, host="mail.example.net")
    result = invoke(config, "validate")
    assert result.exit_code != 0, result.output
    assert "bounce.imap.security" in result.output or "security: none" in result.output
    assert "in clear" in result.output
