"""newsletter run as a real process: cron every 2 s, an SMTP sink, new digests, a profile
edit, a bad edit, SIGTERM."""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from newsletter.ledger.ledger import Ledger
from newsletter.store.sqlite import open_store
from tests.helpers import SAMPLES, child_env, command, wait_for
from tests.shop import SHOP_PROFILES, smtp_config, start_daemon
from tests.smtp_server import ScriptedServer, SmtpServer

PROFILES = """\
subscribers:
  - email: ada@example.org
    keywords: [pruning, "knowledge distillation"]
  - email: grace@example.org
    keywords: ["zero-shot", transformer]
"""


def test_run_sends_new_digests_takes_edits_and_stops_cleanly(tmp_path: Path) -> None:
    (tmp_path / "digests").mkdir()
    shutil.copy(SAMPLES / "mar-10-daily.txt", tmp_path / "digests")
    (tmp_path / "subscribers.yaml").write_text(PROFILES)
    with SmtpServer() as server:
        (tmp_path / "config.yaml").write_text(
            "sender: Research digest <digest@example.org>\n"
            "schedule:\n  cron: '* * * * * */2'\n"
            "delivery: smtp\n"
            f"smtp:\n  host: 127.0.0.1\n  port: {server.port}\n  security: none\n"
            "  retry_delay: 0\n"
        )
        log = tmp_path / "run.log"
        with log.open("w") as sink_log:
            process = subprocess.Popen(
                [*command(tmp_path / "config.yaml"), "run"], stderr=sink_log, env=child_env()
            )
        try:
            recipients = server.sink.recipients
            # The first run ingests the Mar 10 digest and sends Ada hers (Grace: nothing yet).
            assert wait_for(lambda: "ada@example.org" in recipients()), log.read_text()
            assert "grace@example.org" not in recipients()
            # A new digest file arrives: Grace's papers are in it.
            shutil.copy(SAMPLES / "mar-11-search-zero-shot.txt", tmp_path / "digests")
            assert wait_for(lambda: "grace@example.org" in recipients()), log.read_text()
            # A bad edit is logged with its line and the last good profiles keep running.
            (tmp_path / "subscribers.yaml").write_text(PROFILES + "  - email: broken@\n")
            assert wait_for(lambda: "invalid edit" in log.read_text()), log.read_text()
            assert "subscribers.yaml:6" in log.read_text()
            # A good edit takes effect without a restart.
            (tmp_path / "subscribers.yaml").write_text(
                PROFILES + "  - email: carol@example.org\n    keywords: [compress*]\n"
            )
            shutil.copy(SAMPLES / "mar-12-compact.txt", tmp_path / "digests")
            assert wait_for(lambda: "carol@example.org" in recipients()), log.read_text()
            time.sleep(2.5)  # another run or two: nothing new, nothing sent again
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                returncode = process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                raise
        assert returncode == 0, log.read_text()
        messages = server.sink.parsed()
    text = log.read_text()
    assert "run cron:" in text and "stopped" in text
    ids = [m["Message-ID"] for m in messages]
    assert len(ids) == len(set(ids))  # no message twice
    with open_store(tmp_path / "state") as store:
        rows = Ledger(store).rows()
    pairs = collections.Counter((r["subscriber"], r["paper_id"]) for r in rows)
    assert all(count == 1 for count in pairs.values())  # no paper twice to anyone
    assert {r["status"] for r in rows} == {"sent"}
    assert len({r["message_id"] for r in rows}) == len(messages)


def test_sigterm_stops_the_daemon_within_10_s_against_a_slow_server(shop: Path) -> None:
    with ScriptedServer(drip=1.0) as server:  # a greeting of 20 bytes takes 20 s
        config = smtp_config(shop, server.port, timeout=30, message_timeout=600)
        config.write_text(config.read_text() + "schedule:\n  cron: '* * * * * */1'\n")
        log = shop / "run.log"
        process = start_daemon(shop, log)
        try:
            assert wait_for(lambda: server.connections > 0), log.read_text()
            time.sleep(0.5)  # well inside the slow conversation
            process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            returncode = process.wait(timeout=30)
            took = time.monotonic() - started
        finally:
            process.kill()
    assert returncode == 0, log.read_text()
    assert took < 10, f"took {took:.1f} s to stop\n{log.read_text()}"
    assert "stopped" in log.read_text()
    with open_store(shop / "state") as store:
        pending = {p.subscriber for p in Ledger(store).pending()}
    assert "ada@example.org" in pending  # cut short, kept, sent by the next run


def test_sighup_reloads_the_files_and_keeps_running(shop: Path) -> None:
    config = shop / "config.yaml"
    config.write_text(config.read_text() + "schedule:\n  cron: '0 0 1 1 *'\n")
    log = shop / "run.log"
    process = start_daemon(shop, log)
    try:
        assert wait_for(lambda: "running;" in log.read_text()), log.read_text()
        profiles = shop / "subscribers.yaml"
        stamp = profiles.stat().st_mtime
        profiles.write_text(SHOP_PROFILES + "  - email: carol@example.org\n    keywords: [x]\n")
        config.write_text(config.read_text().replace("0 0 1 1 *", "0 6 * * *"))
        for path in (profiles, config):  # the watcher sees no change: only SIGHUP can tell
            os.utime(path, (stamp, stamp))
        process.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "cron '0 6 * * *'" in log.read_text()), log.read_text()
        assert "SIGHUP" in log.read_text() and "schedule rebuilt" in log.read_text()
        assert process.poll() is None  # still running
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0, log.read_text()
