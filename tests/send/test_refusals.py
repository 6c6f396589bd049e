"""Refusals at the door: an address a real SMTP server (aiosmtpd) refuses as unknown or
disabled, at RCPT or after DATA, is suppressed as bounced with the server's words and never
offered papers again; a policy refusal (5.7.x) leaves the address alone and says why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import invoke, readers_of_pruning
from tests.smtp_server import Sink, SmtpServer

READERS = ("ada", "ghost", "plain", "gone", "policy", "full")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return readers_of_pruning(tmp_path, (f"{r}@example.org" for r in READERS))


def refusing_sink() -> Sink:
    sink = Sink()
    sink.refuse = {
        "ghost@example.org": (550, "5.1.1 <ghost@example.org>: Recipient address rejected: "
                              "User unknown in local recipient table", -1),
        "plain@example.org": (550, "User unknown", -1),
        "policy@example.org": (554, "5.7.1 Message rejected due to local policy", -1),
        "full@example.org": (552, "5.2.2 Mailbox full", -1),
    }  # fmt: skip
    sink.refuse_data = {"gone@example.org": "550 5.2.1 This mailbox is disabled"}
    return sink


def send(project: Path, port: int, *args: str):
    (project / "config.yaml").write_text(
        "sender: Research digest <digest@example.org>\ndelivery: smtp\n"
        f"smtp:\n  host: 127.0.0.1\n  port: {port}\n  security: none\n  retry_delay: 0\n"
    )
    return invoke(project / "config.yaml", "send", "--now", *args)


def statuses(project: Path) -> dict[str, dict]:
    listed = invoke(project / "config.yaml", "subscribers", "--json")
    return {row["address"].split("@")[0]: row for row in json.loads(listed.stdout)}


def test_an_unknown_or_disabled_mailbox_is_suppressed_with_the_servers_words(project) -> None:
    with SmtpServer(refusing_sink()) as server:
        result = send(project, server.port, "--json")
        failed = {f["subscriber"].split("@")[0]: f for f in json.loads(result.stdout)["failed"]}
        assert set(failed) == {"ghost", "plain", "gone", "policy", "full"}
        assert {r: failed[r]["refusal"] for r in failed} == {
            "ghost": "mailbox", "plain": "mailbox", "gone": "mailbox", "policy": "policy",
            "full": None,
        }  # fmt: skip
        status = statuses(project)
        for reader in ("ghost", "plain", "gone"):
            assert status[reader]["status"] == "bounced", status[reader]
        assert "User unknown in local recipient table" in json.dumps(status["ghost"])
        assert f"127.0.0.1:{server.port}" in json.dumps(status["ghost"])  # which host said it
        for reader in ("ada", "policy", "full"):
            assert status[reader]["status"] == "active", status[reader]
        # The next send (failed ones retried) offers the refused mailboxes nothing more.
        server.sink.refuse.clear()
        server.sink.refuse_data.clear()
        again = send(project, server.port, "--retry-failed", "--json")
        report = json.loads(again.stdout)
        skipped = {s["subscriber"].split("@")[0]: s["reason"] for s in report["skipped"]}
        for reader in ("ghost", "plain", "gone"):
            assert skipped[reader].startswith("bounced on"), skipped
        assert {s["subscriber"] for s in report["sent"]} == {
            "policy@example.org", "full@example.org",
        }  # fmt: skip


def test_the_report_says_what_each_refusal_means(project) -> None:
    with SmtpServer(refusing_sink()) as server:
        output = send(project, server.port).output
    assert "failed (failed for good): ghost@example.org: 550 5.1.1" in output
    assert "the mailbox does not exist: the address is suppressed as bounced" in output
    assert "a policy refusal (5.7.x) is about the sender or the message" in output
    assert "SPF, DKIM and DMARC" in output


def test_a_subscriber_refused_for_good_is_told_why_the_next_send_skips_them(project) -> None:
    with SmtpServer(refusing_sink()) as server:
        send(project, server.port)
        again = send(project, server.port, "--json")
    skipped = {
        s["subscriber"].split("@")[0]: s["reason"] for s in json.loads(again.stdout)["skipped"]
    }
    for reader in ("policy", "full"):  # refused for good, the address left alone
        assert "refused for good" in skipped[reader], skipped
        assert "--retry-failed" in skipped[reader], skipped
    assert "5.7.1 Message rejected due to local policy" in skipped["policy"]
    assert "refused" not in skipped["ada"]  # (ada's digest went out: nothing new for her)
