"""Against Debian's Postfix on loopback (a private instance the test starts): an unknown
local recipient refused at RCPT is suppressed as bounced with Postfix's words; a relayed
digest the next hop keeps deferring brings a real "Delayed Mail" notice and then a real
"Undelivered Mail" report, which ``newsletter bounces`` counts as one lost digest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import SAMPLES, invoke, wait_for
from tests.postfix_server import PostfixServer, missing_reason
from tests.smtp_server import Sink, SmtpServer

pytestmark = [
    pytest.mark.slow,  # Postfix retries for a few seconds before it gives up
    pytest.mark.skipif(missing_reason() is not None, reason=str(missing_reason())),
]
ENV = {"NEWSLETTER_UNSUBSCRIBE_SECRET": "k2Jx9-TqLw_0aZr7Vn4bYc8uHs1eDf6gPm3"}
PROFILES = """\
subscribers:
  - email: ada@example.org
    keywords: [pruning]
  - email: ghost@lab.example.net
    keywords: [pruning]
  - email: slow@slow.example.com
    keywords: [pruning]
"""


def reports_in(sink: Sink) -> list:
    """The delivery reports a sink received (from Postfix's MAILER-DAEMON)."""
    return [m for m in sink.parsed() if "MAILER-DAEMON" in str(m["From"] or "")]


def test_postfix_refusals_suppress_and_its_reports_count_one_lost_digest(tmp_path: Path) -> None:
    shutil.copytree(SAMPLES, tmp_path / "digests")
    (tmp_path / "subscribers.yaml").write_text(PROFILES)
    deferring = Sink(refuse={"slow@slow.example.com": (452, "4.2.2 Mailbox full", -1)})
    with SmtpServer(deferring) as next_hop, SmtpServer() as our_mailbox:
        routes = {"slow.example.com": next_hop.port, "example.org": our_mailbox.port}
        with PostfixServer(routes=routes) as postfix:
            config = tmp_path / "config.yaml"
            config.write_text(
                "sender: Research digest <digest@example.org>\n"
                "bounce_address: bounces@example.org\ndelivery: smtp\n"
                f"smtp:\n  host: 127.0.0.1\n  port: {postfix.port}\n  security: none\n"
            )
            sent = invoke(config, "send", "--now", "--json", environ=ENV)
            assert sent.stdout, sent.output
            report = json.loads(sent.stdout)
            (refused,) = report["failed"]
            assert refused["subscriber"] == "ghost@lab.example.net", postfix.maillog()
            assert refused["refusal"] == "mailbox" and "5.1.1" in refused["error"]
            listed = invoke(config, "subscribers", "--json", environ=ENV).stdout
            ghost = next(r for r in json.loads(listed) if r["address"].startswith("ghost"))
            assert ghost["status"] == "bounced"
            assert "User unknown in local recipient table" in json.dumps(ghost)
            # Postfix keeps retrying slow@slow.example.com, warns, then gives up: two real DSNs.
            two = wait_for(lambda: len(reports_in(our_mailbox.sink)) == 2, seconds=40)
            assert two, postfix.maillog()[-3000:]
    delay, failure = sorted(
        reports_in(our_mailbox.sink), key=lambda m: "Undelivered" in m["Subject"]
    )
    assert delay["Subject"] == "Delayed Mail (still being retried)", delay["Subject"]
    paths = []
    for number, message in enumerate((delay, failure)):
        path = tmp_path / f"dsn-{number}.eml"
        path.write_bytes(message.as_bytes())
        paths.append(str(path))
    decisions = json.loads(invoke(config, "bounces", "--json", *paths, environ=ENV).stdout)
    assert [(d["address"], d["kind"], d["action"]) for d in decisions] == [
        ("slow@slow.example.com", "delayed", "ignored"),
        ("slow@slow.example.com", "temporary", "counted"),
    ]
    assert "temporary failure 1 of" in decisions[1]["detail"]
    again = invoke(config, "bounces", "--json", paths[1], environ=ENV).stdout
    assert json.loads(again)[0]["action"] == "ignored"  # read twice: still one count
