"""newsletter send against a real SMTP server on loopback (aiosmtpd), and the ledger."""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import Result

from newsletter.ledger.ledger import Ledger
from newsletter.ledger.lock import state_lock
from newsletter.send.sending import SENT_GROUP
from tests.digest_text import capture, card
from tests.helpers import NOW, SAMPLES, child_env, command, invoke, open_project_store
from tests.smtp_server import SilentServer, Sink, SmtpServer

pytestmark = pytest.mark.usefixtures("each_store")

PROFILES = """\
subscribers:
  - email: ada@example.org
    name: Ada
    keywords: [pruning, "knowledge distillation", "compress*"]
  - email: grace@example.org
    name: Grace
    keywords: [transformer, "zero-shot"]
  - email: bob@example.org
    keywords: [distillation]
"""


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A project with our sample digests and three subscribers."""
    shutil.copytree(SAMPLES, tmp_path / "digests")
    (tmp_path / "subscribers.yaml").write_text(PROFILES)
    return tmp_path


def configure(project: Path, port: int, **smtp: object) -> None:
    settings = {"host": "127.0.0.1", "port": port, "security": "none", "timeout": 2}
    settings.update({"retry_delay": 0}, **smtp)
    lines = "".join(f"  {key}: {value}\n" for key, value in settings.items())
    (project / "config.yaml").write_text(
        "sender: Research digest <digest@example.org>\ndelivery: smtp\nsmtp:\n" + lines
    )


def send(project: Path, *args: str, environ: dict | None = None, now=NOW) -> Result:
    return invoke(project / "config.yaml", "send", "--now", *args, now=now, environ=environ)


def report(result: Result) -> dict:
    return json.loads(result.stdout)


def ledger_rows(project: Path) -> list[dict]:
    with open_project_store(project) as store:
        return Ledger(store).rows()


def test_plain_delivery_and_nothing_twice(shop: Path) -> None:
    with SmtpServer() as server:
        configure(shop, server.port)
        first = send(shop, "--json")
        assert first.exit_code == 0, first.output
        data = report(first)
        assert sorted(s["subscriber"] for s in data["sent"]) == [
            "ada@example.org", "bob@example.org", "grace@example.org",
        ]  # fmt: skip
        messages = server.sink.parsed()
        assert sorted(m["To"].addresses[0].addr_spec for m in messages) == sorted(
            s["subscriber"] for s in data["sent"]
        )
        assert {m["Message-ID"] for m in messages} == {s["message_id"] for s in data["sent"]}
        assert all(m.get_content_type() == "multipart/alternative" for m in messages)
        again = send(shop, "--json", now=NOW + timedelta(hours=1))
        assert again.exit_code == 0
        assert report(again)["sent"] == []
        unsent = {s["subscriber"]: 12 - len(s["papers"]) for s in data["sent"]}  # 12 stored
        assert {s["subscriber"]: s["reason"] for s in report(again)["skipped"]} == {
            who: f"no new matches ({count} papers of the last 7 days not sent yet, none matching)"
            for who, count in unsent.items()
        }
        assert len(server.sink.messages) == 3
    rows = ledger_rows(shop)
    assert {r["status"] for r in rows} == {"sent"}
    assert {r["attempts"] for r in rows} == {1}


def test_a_refused_recipient_fails_alone_and_is_not_retried(shop: Path) -> None:
    # (a refusal that is not about the mailbox: one that is suppresses it, tests/send/test_refusals)
    sink = Sink(refuse={"bob@example.org": (554, "5.6.0 Message refused here", -1)})
    with SmtpServer(sink) as server:
        configure(shop, server.port)
        result = send(shop, "--json")
        assert result.exit_code == 1
        data = report(result)
        assert [f["subscriber"] for f in data["failed"]] == ["bob@example.org"]
        assert data["failed"][0]["code"] == 554
        assert "Message refused here" in data["failed"][0]["error"]
        assert sorted(server.sink.recipients()) == ["ada@example.org", "grace@example.org"]
        later = send(shop, "--json", now=NOW + timedelta(hours=1))
        assert later.exit_code == 0 and report(later)["failed"] == []
        sink.refuse.clear()
        retried = send(shop, "--json", "--retry-failed", now=NOW + timedelta(hours=2))
        assert [s["subscriber"] for s in report(retried)["sent"]] == ["bob@example.org"]
    statuses = {(r["subscriber"], r["status"]) for r in ledger_rows(shop)}
    assert ("bob@example.org", "sent") in statuses


def test_451_is_retried_within_the_run(shop: Path) -> None:
    sink = Sink(refuse={"grace@example.org": (451, "4.7.1 Try again later", 1)})
    with SmtpServer(sink) as server:
        configure(shop, server.port)
        result = send(shop, "--json")
        assert result.exit_code == 0, result.output
        assert sorted(sink.recipients()) == [
            "ada@example.org", "bob@example.org", "grace@example.org",
        ]  # fmt: skip
    attempts = {r["subscriber"]: r["attempts"] for r in ledger_rows(shop)}
    assert attempts["grace@example.org"] == 2 and attempts["ada@example.org"] == 1


def test_a_dropped_connection_mid_batch_is_resumed(shop: Path) -> None:
    sink = Sink(drop_at=2)
    with SmtpServer(sink) as server:
        configure(shop, server.port, connections=1)
        result = send(shop, "--json")
        assert result.exit_code == 0, result.output
        assert sorted(sink.recipients()) == [
            "ada@example.org", "bob@example.org", "grace@example.org",
        ]  # fmt: skip
        assert sink.datas == 4  # one DATA was cut off and sent again


@pytest.mark.slow
def test_a_server_that_never_answers_times_out_and_stays_pending(shop: Path) -> None:
    with SilentServer() as server:
        configure(shop, server.port, timeout=1, max_attempts=2, connections=1)
        result = send(shop, "--json", "--subscriber", "ada@example.org")
        assert result.exit_code == 1
        (failed,) = report(result)["failed"]
        assert "did not answer within" in failed["error"]
    rows = ledger_rows(shop)
    assert {r["status"] for r in rows} == {"pending"}  # deferred: retried on the next run


def test_authentication_failure_stops_the_run_with_a_hint(shop: Path) -> None:
    with SmtpServer(credentials=("digest", "right")) as server:
        configure(shop, server.port, username="digest", password_env="SMTP_PASSWORD")
        wrong = send(shop, environ={"SMTP_PASSWORD": "wrong"})
        assert wrong.exit_code == 1
        assert "refused the login" in wrong.stderr and "app password" in wrong.stderr
        assert server.sink.messages == []
        assert not any(r["status"] == "sent" for r in ledger_rows(shop))
        right = send(shop, environ={"SMTP_PASSWORD": "right"})
        assert right.exit_code == 0, right.output
        assert len(server.sink.messages) == 3


def test_the_password_never_comes_from_the_config(shop: Path) -> None:
    configure(shop, 25, password="hunter2")
    result = send(shop)
    assert result.exit_code == 2
    assert "never put the password in the config" in result.stderr
    assert "hunter2" not in result.output


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, bytes]:
    trustme = pytest.importorskip("trustme")
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    return server_context, authority.cert_pem.bytes()


def test_starttls_verifies_certificates(shop: Path, tls) -> None:
    context, ca_pem = tls
    (shop / "ca.pem").write_bytes(ca_pem)
    with SmtpServer(tls_context=context) as server:
        configure(shop, server.port, security="starttls")
        untrusted = send(shop)
        assert untrusted.exit_code == 1
        assert "not trusted" in untrusted.stderr and "ca_file" in untrusted.stderr
        assert server.sink.messages == []
        configure(shop, server.port, security="starttls", ca_file="ca.pem")
        trusted = send(shop)
        assert trusted.exit_code == 0, trusted.output
        assert len(server.sink.messages) == 3


def test_missing_starttls_fails_closed(shop: Path) -> None:
    with SmtpServer() as server:
        configure(shop, server.port, security="starttls")
        result = send(shop)
        assert result.exit_code == 1
        assert "does not offer STARTTLS" in result.stderr
        assert server.sink.messages == []


def test_international_addresses(shop: Path) -> None:
    (shop / "subscribers.yaml").write_text(
        "subscribers:\n"
        "  - email: zoe@bücher.de\n    keywords: [pruning]\n"
        "  - email: jürgen@example.org\n    keywords: [pruning]\n"
    )
    with SmtpServer(smtputf8=False) as server:
        configure(shop, server.port)
        result = send(shop, "--json")
        assert server.sink.recipients() == ["zoe@xn--bcher-kva.de"]  # IDNA on the wire
        (failed,) = report(result)["failed"]
        assert failed["subscriber"] == "jürgen@example.org" and "SMTPUTF8" in failed["error"]
    with SmtpServer(smtputf8=True) as server:
        configure(shop, server.port)
        result = send(shop, "--json", "--retry-failed", now=NOW + timedelta(minutes=5))
        assert result.exit_code == 0, result.output
        assert server.sink.recipients() == ["jürgen@example.org"]


def test_dry_run_delivers_and_records_nothing(shop: Path) -> None:
    with SmtpServer() as server:
        configure(shop, server.port)
        result = send(shop, "--json", "--dry-run")
        assert result.exit_code == 0
        data = report(result)
        assert data["dry_run"] is True and len(data["sent"]) == 3
        assert server.sink.messages == []
    assert ledger_rows(shop) == []


def test_paused_and_inactive_subscribers_are_skipped_with_a_reason(shop: Path) -> None:
    (shop / "subscribers.yaml").write_text(
        PROFILES.replace("    name: Grace\n", "    name: Grace\n    frequency: paused\n").replace(
            "  - email: bob@example.org\n", "  - email: bob@example.org\n    active: false\n"
        )
    )
    with SmtpServer() as server:
        configure(shop, server.port)
        data = report(send(shop, "--json"))
        assert [s["subscriber"] for s in data["sent"]] == ["ada@example.org"]
        assert {s["subscriber"]: s["reason"] for s in data["skipped"]} == {
            "grace@example.org": "paused",
            "bob@example.org": "inactive (active: false)",
        }


def test_a_second_send_is_refused_while_the_lock_is_held(shop: Path) -> None:
    configure(shop, 25)
    with state_lock(shop / "state", "test"):
        result = send(shop)
    assert result.exit_code == 1
    assert "another send or the scheduler is running" in result.stderr
    assert "newsletter test (pid" in result.stderr


@pytest.mark.slow
def test_killed_send_resumes_and_nobody_gets_a_digest_twice(shop: Path) -> None:
    import collections

    count = 150
    (shop / "subscribers.yaml").write_text(
        "subscribers:\n"
        + "".join(
            f"  - email: reader{i}@example.org\n    keywords: [pruning]\n" for i in range(count)
        )
    )
    sink = Sink(delay=0.01)
    with SmtpServer(sink) as server:
        configure(shop, server.port, connections=2)
        send_command = [*command(shop / "config.yaml"), "send", "--now"]
        process = subprocess.Popen(send_command, stdout=subprocess.DEVNULL, env=child_env())
        deadline = time.monotonic() + 60
        while len(sink.messages) < 40 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL, "send finished before it could be killed"
        delivered_before = len(sink.messages)
        assert 0 < delivered_before < count
        finish = subprocess.run(send_command, capture_output=True, text=True, env=child_env())
        assert finish.returncode == 0, finish.stderr
    per_reader = collections.defaultdict(set)
    for message in sink.parsed():
        per_reader[message["To"].addresses[0].addr_spec].add(message["Message-ID"])
    assert len(per_reader) == count
    assert all(len(ids) == 1 for ids in per_reader.values())  # one digest each (same id if resent)
    # At most the messages in flight came twice: per connection, one on the wire and one the
    # server accepted while the next digest was being composed (recorded right after it),
    # and those accepted while waiting to share a commit (SENT_GROUP at most).
    assert len(sink.messages) <= count + 2 * 2 + SENT_GROUP


def kill_repeatedly(
    send_command: list[str], kills: list[tuple[str, float]], delivered: Callable[[], int]
) -> int:
    """Start ``send_command`` once per kill and SIGKILL it: ("after", seconds) from its
    start, or ("delivered", n) once ``delivered()`` reaches n. How many kills caught a run
    still going."""
    interrupted = 0
    for kind, point in kills:
        process = subprocess.Popen(send_command, stdout=subprocess.DEVNULL, env=child_env())
        started = time.monotonic()
        while process.poll() is None and time.monotonic() - started < 60:
            if kind == "after" and time.monotonic() - started >= point:
                break
            if kind == "delivered" and delivered() >= point:
                break
            time.sleep(0.002)
        interrupted += process.poll() is None
        process.send_signal(signal.SIGKILL)
        process.wait()
    return interrupted


@pytest.mark.slow
def test_twenty_kills_of_a_2000_subscriber_send_lose_and_change_nothing(shop: Path) -> None:
    """Issue 16: SIGKILL at 20 random points (start-up, matching, delivery); after the last
    run each subscriber has exactly one digest, and any copy handed over twice (the window
    between the server's 250 and the ledger's record) is the same message: same Message-ID,
    same papers, same bytes, rendered again from the ledger's record."""
    import collections
    import random

    count, rng = 2000, random.Random(16)
    keywords = ["pruning", "transformer", "distillation", "diffusion"]
    (shop / "subscribers.yaml").write_text(
        "subscribers:\n"
        + "".join(
            f"  - email: reader{i}@example.org\n    keywords: [{keywords[i % 4]}]\n"
            for i in range(count)
        )
    )
    sink = Sink()
    with SmtpServer(sink) as server:
        configure(shop, server.port, connections=2)
        send_command = [*command(shop / "config.yaml"), "send", "--now"]
        targets = sorted(rng.sample(range(1, count), 15))
        kills = [("after", rng.uniform(0.05, 1.5)) for _ in range(5)]
        kills += [("delivered", target) for target in targets]
        interrupted = kill_repeatedly(send_command, kills, lambda: len(sink.messages))
        finish = subprocess.run(send_command, capture_output=True, text=True, env=child_env())
        assert finish.returncode == 0, finish.stderr
    copies: dict[str, set[str]] = collections.defaultdict(set)
    bodies: dict[str, set[bytes]] = collections.defaultdict(set)
    for _, recipients, data in sink.messages:
        message_id = data.split(b"Message-ID: ", 1)[1].split(b"\r\n", 1)[0]
        copies[recipients[0]].add(message_id.decode())
        bodies[message_id.decode()].add(data)
    assert len(copies) == count  # nobody lost
    assert all(len(ids) == 1 for ids in copies.values())  # nobody got two different digests
    assert all(len(versions) == 1 for versions in bodies.values())  # a copy is the same bytes
    duplicates = len(sink.messages) - count
    # per kill: 2 a connection at most, and the accepted ones waiting to share a commit
    assert duplicates <= len(kills) * (2 * 2 + SENT_GROUP), duplicates
    print(f"{interrupted} kills interrupted a run; {duplicates} copies handed over twice")
    assert interrupted >= 15  # the kills landed in runs, not after them
    with open_project_store(shop) as store:
        sent = Ledger(store).totals()
    assert len(sent) == count  # the ledger agrees


@pytest.mark.slow
def test_kills_of_a_2000_subscriber_send_to_the_outbox_leave_one_file_each(shop: Path) -> None:
    """The outbox's spool under SIGKILL: the workers write digests into tmp/ before the ledger
    has them; after kills at random points (start-up, rendering, hand-over) and a last run,
    each subscriber has exactly one message in new/, tmp/ is empty and the ledger agrees."""
    import mailbox
    import random

    count, rng = 2000, random.Random(1616)
    (shop / "subscribers.yaml").write_text(
        "subscribers:\n"
        + "".join(
            f"  - email: reader{i}@example.org\n    keywords: [pruning]\n" for i in range(count)
        )
    )
    (shop / "config.yaml").write_text("sender: Research digest <digest@example.org>\n")
    new = shop / "outbox" / "new"
    send_command = [*command(shop / "config.yaml"), "send", "--now"]
    kills = [("after", rng.uniform(0.05, 2.0)) for _ in range(4)]
    kills += [("delivered", target) for target in sorted(rng.sample(range(1, count), 8))]
    kill_repeatedly(send_command, kills, lambda: len(os.listdir(new)) if new.is_dir() else 0)
    finish = subprocess.run(send_command, capture_output=True, text=True, env=child_env())
    assert finish.returncode == 0, finish.stderr
    recipients = [str(m["To"]) for m in mailbox.Maildir(shop / "outbox", create=False)]
    assert len(recipients) == len(set(recipients)) == count
    assert os.listdir(shop / "outbox" / "tmp") == []
    with open_project_store(shop) as store:
        assert len(Ledger(store).totals()) == count


def test_invalid_profiles_send_nothing_and_exit_2(shop: Path) -> None:
    (shop / "subscribers.yaml").write_text(PROFILES + "  - email: broken@\n    keywords: [x]\n")
    with SmtpServer() as server:
        configure(shop, server.port)
        result = send(shop)
        assert result.exit_code == 2
        assert "subscribers.yaml:10: invalid address 'broken@'" in result.stderr
        assert server.sink.messages == []


def test_a_deferred_subscriber_still_gets_the_papers_of_the_run_that_resends(
    shop: Path,
) -> None:
    """Issue 13, 1: the run that hands over a deferred digest also ingests a new digest; its
    papers must still reach that subscriber (the resend's sent_at is after that ingest)."""
    sink = Sink(refuse={"grace@example.org": (451, "4.7.1 Try again later", 1)})
    with SmtpServer(sink) as server:
        configure(shop, server.port, max_attempts=1)
        first = send(shop, "--json")
        assert [f["subscriber"] for f in report(first)["failed"]] == ["grace@example.org"]
        (shop / "digests" / "later.txt").write_text(
            capture(card("Zero-shot transformers for everything"), listing="Mar 12")
        )
        runs = [send(shop, "--json", now=NOW + timedelta(hours=h)) for h in (1, 2)]
    resent = report(runs[0])["sent"]
    assert [(s["subscriber"], s.get("resent")) for s in resent] == [("grace@example.org", True)]
    received = [p for run in runs for s in report(run)["sent"] for p in s["papers"]]
    with open_project_store(shop) as store:
        new = [p.id for p in store.papers() if p.title.startswith("Zero-shot transformers")]
    assert len(new) == 1 and received.count(new[0]) == 1
    grace = [m for m in sink.parsed() if m["To"].addresses[0].addr_spec == "grace@example.org"]
    assert len(grace) == 2  # the deferred digest, then the new paper's
