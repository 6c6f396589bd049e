"""A graceful stop for ``newsletter send``: the first SIGTERM or Ctrl-C hands nothing more
over, lets the messages on their way finish, records them and prints the report with what
is left (exit 143 or 130); a second signal stops at once. Run on each store."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import child_env, command
from tests.send.test_send import configure
from tests.smtp_server import ScriptedServer, Sink, SmtpServer

pytestmark = [pytest.mark.usefixtures("each_store"), pytest.mark.slow]

COUNT = 30


def readers(project: Path, count: int = COUNT) -> None:
    (project / "subscribers.yaml").write_text(
        "subscribers:\n"
        + "".join(
            f"  - email: reader{i}@example.org\n    keywords: [pruning]\n" for i in range(count)
        )
    )


def start_send(project: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*command(project / "config.yaml"), "send", "--now", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )


def wait_until(check, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_signal_finishes_what_is_on_its_way_reports_and_resumes_without_a_copy(
    shop: Path, signum: int, code: int
) -> None:
    readers(shop)
    sink = Sink(delay=0.2)  # the server takes 0.2 s to accept each message
    with SmtpServer(sink) as server:
        configure(shop, server.port, connections=1)
        process = start_send(shop, "--json")
        wait_until(lambda: len(sink.messages) >= 3)
        process.send_signal(signum)
        out, err = process.communicate(timeout=30)
        assert process.returncode == code, err
        accepted = {m["Message-ID"] for m in sink.parsed()}
        report = json.loads(out)
        assert report["stopped"] is True
        assert {s["message_id"] for s in report["sent"]} == accepted  # each one recorded
        listed = [s["subscriber"] for key in ("sent", "skipped", "failed") for s in report[key]]
        assert sorted(listed) == sorted(f"reader{i}@example.org" for i in range(COUNT))
        left = [s for s in report["skipped"] if "stopped" in s["reason"]]
        assert len(left) == COUNT - len(accepted) - len(report["failed"]) > 0
        assert "stopping" in err
        resumed = start_send(shop, "--json")
        out, err = resumed.communicate(timeout=60)
        assert resumed.returncode == 0, err
    ids = collections.defaultdict(list)
    for message in sink.parsed():
        ids[message["To"].addresses[0].addr_spec].append(message["Message-ID"])
    assert len(ids) == COUNT
    assert all(len(found) == 1 for found in ids.values()), ids  # not even a same-id copy


def test_a_second_signal_stops_at_once(shop: Path) -> None:
    readers(shop, 3)
    with ScriptedServer(replies={"DATA-END": ""}) as server:  # never answers the message
        configure(shop, server.port, connections=1, timeout=60, message_timeout=60)
        process = start_send(shop)
        wait_until(lambda: "DATA" in server.commands)
        process.send_signal(signal.SIGINT)
        time.sleep(1)
        assert process.poll() is None  # waiting for the message on its way
        process.send_signal(signal.SIGINT)
        started = time.monotonic()
        _, err = process.communicate(timeout=10)
    assert time.monotonic() - started < 5
    assert process.returncode == 130, err
    assert "stopped at once" in err
    assert "Traceback" not in err


def test_the_report_in_words_says_how_many_a_stop_left(shop: Path) -> None:
    readers(shop, 8)
    sink = Sink(delay=0.2)
    with SmtpServer(sink) as server:
        configure(shop, server.port, connections=1)
        process = start_send(shop)
        wait_until(lambda: len(sink.messages) >= 2)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 143, err
    sent = out.count("\nsent: ") + out.startswith("sent: ")
    assert sent == len(sink.messages)
    assert f"stopped: {8 - sent} due subscribers left for the next send" in out, out


def test_a_stop_signalled_to_the_whole_process_group_is_as_graceful(shop: Path) -> None:
    """systemd's stop (KillMode=control-group) and a terminal's Ctrl-C signal every process
    of the send, its rendering workers too: the send still stops gracefully."""
    readers(shop, 2_100)  # (enough for rendering workers, on either store)
    sink = Sink(delay=0.05)
    with SmtpServer(sink) as server:
        configure(shop, server.port, connections=1)
        process = subprocess.Popen(
            [*command(shop / "config.yaml"), "send", "--now", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
            start_new_session=True,  # (its own process group, as under systemd)
        )
        wait_until(lambda: len(sink.messages) >= 3)
        os.killpg(process.pid, signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert "Traceback" not in err and "worker" not in err.replace("workers", ""), err
    report = json.loads(out)
    assert report["stopped"] is True
    assert {s["message_id"] for s in report["sent"]} == {m["Message-ID"] for m in sink.parsed()}
