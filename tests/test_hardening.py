"""Faults and hostile input around a send (issue 13): stores that are not ours, full and
unusable disks, misbehaving SMTP servers, signals. Where the point is about processes, files
or signals, the command runs as a real child process."""

from __future__ import annotations

import contextlib
import json
import mailbox
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest

from newsletter.config.load import load_config
from newsletter.errors import StoreError
from newsletter.ledger.ledger import Ledger
from newsletter.profiles.cache import profiles_of
from newsletter.send.run import Run
from newsletter.store.sqlite import STORE_FILE, open_store
from newsletter.world import World
from tests.digest_text import capture, card
from tests.helpers import NOW, SAMPLES, child_env, command, invoke, wait_for
from tests.smtp_server import ScriptedServer, Sink, SmtpServer

PROFILES = """\
subscribers:
  - email: ada@example.org
    keywords: [pruning, "knowledge distillation", "compress*"]
  - email: grace@example.org
    keywords: [transformer, "zero-shot"]
"""


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    shutil.copytree(SAMPLES, tmp_path / "digests")
    (tmp_path / "subscribers.yaml").write_text(PROFILES)
    (tmp_path / "config.yaml").write_text("sender: Research digest <digest@example.org>\n")
    return tmp_path


def smtp_config(project: Path, port: int, **smtp: object) -> Path:
    settings = {"host": "127.0.0.1", "port": port, "security": "none", "timeout": 5}
    settings.update({"retry_delay": 0, "max_attempts": 1}, **smtp)
    lines = "".join(f"  {key}: {value}\n" for key, value in settings.items())
    path = project / "config.yaml"
    path.write_text("sender: Research digest <digest@example.org>\ndelivery: smtp\nsmtp:\n" + lines)
    return path


def send(project: Path, *args: str, now=NOW, environ=None):
    return invoke(project / "config.yaml", "send", "--now", *args, now=now, environ=environ)


def outbox_messages(project: Path) -> list:
    return list(mailbox.Maildir(project / "outbox", create=False))


# -- 4: a store that is not ours; an outbox that is not a Maildir yet --------------------------


@pytest.mark.parametrize("content", [b"", "schema-less"])
def test_a_store_file_without_our_schema_is_refused_not_taken_for_a_new_install(
    shop: Path, content: bytes | str
) -> None:
    (shop / "state").mkdir()
    store = shop / "state" / STORE_FILE
    if content == "schema-less":
        with sqlite3.connect(store) as db:
            db.execute("CREATE TABLE other (x)")
    else:
        store.write_bytes(content)
    result = send(shop)
    assert result.exit_code == 1, result.output
    assert f"{store}" in result.stderr and "not a newsletter store" in result.stderr
    assert "restore it from a backup" in result.stderr
    assert not (shop / "outbox").exists()  # nothing sent to anyone
    # With no file at all, a new store is made (a new install).
    store.unlink()
    assert send(shop).exit_code == 0
    assert len(outbox_messages(shop)) == 2


def test_a_pre_created_empty_outbox_folder_becomes_a_maildir(shop: Path) -> None:
    (shop / "outbox").mkdir()
    result = send(shop, "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["sent"]) == 2
    assert len(outbox_messages(shop)) == 2


def test_an_outbox_folder_of_other_files_is_refused_with_the_fix(shop: Path) -> None:
    (shop / "outbox").mkdir()
    (shop / "outbox" / "notes.txt").write_text("mine")
    result = send(shop)
    assert result.exit_code != 0
    assert "is not a Maildir" in result.output and "new or empty folder" in result.output
    assert (shop / "outbox" / "notes.txt").read_text() == "mine"


# -- 2 and 13: full, unusable and damaged disks -------------------------------------------------


@contextmanager
def small_disk(folder: Path, size: str = "16m") -> Iterator[Path]:
    """A real, small filesystem (tmpfs) at ``folder``, to fill up for real."""
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(disk: Path) -> Path:
    """Write to ``disk`` until it is full; the file that filled it."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as handle:
        for size in (65536, 4096, 1):  # to the last byte
            with contextlib.suppress(OSError):
                while True:
                    handle.write(b"\0" * size)
    return filler


def new_digest(shop: Path) -> None:
    (shop / "digests" / "later.txt").write_text(
        capture(card("Pruning transformers, again and better"), listing="Mar 12")
    )


def test_a_full_disk_stops_the_send_before_anything_more_is_handed_over(shop: Path) -> None:
    with small_disk(shop / "state"):
        assert send(shop).exit_code == 0
        delivered = len(outbox_messages(shop))
        new_digest(shop)
        filler = fill(shop / "state")
        later = NOW + timedelta(days=1)
        full = send(shop, now=later)
        assert full.exit_code == 1, full.output
        assert f"the disk holding {shop / 'state'}" in full.stderr and "is full" in full.stderr
        assert "internal error" not in full.stderr
        assert len(outbox_messages(shop)) == delivered  # nothing handed over
        again = send(shop, now=later)  # still full: still nothing, still said
        assert again.exit_code == 1 and len(outbox_messages(shop)) == delivered
        filler.unlink()
        assert send(shop, now=later).exit_code == 0
    messages = outbox_messages(shop)
    assert len(messages) == delivered + 2  # the new paper, once to each of its two readers
    assert len({m["Message-ID"] for m in messages}) == len(messages)


def test_when_sqlite_itself_cannot_write_no_pending_digest_is_handed_over_again(
    shop: Path,
) -> None:
    """The free-space check aside (a disk that says it has room), a ledger that cannot be
    written stops the hand-over: a pending digest goes out again only once its ledger row
    has been written."""
    sink = Sink(refuse={"grace@example.org": (451, "try later", 1)})
    roomy = World(now=lambda: NOW, environ={}, free_bytes=lambda path: 10**12)
    with small_disk(shop / "state"), SmtpServer(sink) as server:
        config = load_config(smtp_config(shop, server.port))
        subscribers = profiles_of(config).subscribers
        first = Run(config, roomy, ignore_schedule=True).send(subscribers)
        assert [f.subscriber for f in first.failed] == ["grace@example.org"]
        filler = fill(shop / "state")
        for _ in range(3):  # each cron cycle: refused, never one more copy
            with pytest.raises(StoreError, match="is full"):
                Run(config, roomy, ignore_schedule=True).send(subscribers)
        assert sink.recipients().count("grace@example.org") == 0
        filler.unlink()
        Run(config, roomy, ignore_schedule=True).send(subscribers)
    assert sink.recipients().count("grace@example.org") == 1


def test_a_disk_short_of_room_to_record_is_a_clear_error_and_nothing_goes_out(shop: Path) -> None:
    config = load_config(shop / "config.yaml")
    tight = World(now=lambda: NOW, environ={}, free_bytes=lambda path: 200_000)
    with pytest.raises(StoreError, match=r"is full \(195 KB free\).*free some space"):
        Run(config, tight, ignore_schedule=True).send(profiles_of(config).subscribers)
    assert not (shop / "outbox").exists() or not outbox_messages(shop)


def test_an_unusable_state_folder_is_named_with_the_fix(shop: Path) -> None:
    (shop / "blocker").write_text("a file where a folder should be")
    (shop / "config.yaml").write_text(
        "sender: Research digest <digest@example.org>\nstate_dir: blocker/state\n"
    )
    for args in (("send", "--now"), ("papers",), ("ingest",)):
        result = invoke(shop / "config.yaml", *args)
        assert result.exit_code == 1, result.output
        assert "cannot use the state folder" in result.stderr and "blocker/state" in result.stderr
        assert "internal error" not in result.stderr


def test_a_read_only_state_disk_is_named_with_the_fix(shop: Path) -> None:
    with small_disk(shop / "state"):
        assert send(shop).exit_code == 0
        new_digest(shop)
        subprocess.run(["mount", "-o", "remount,ro", str(shop / "state")], check=True)
        result = send(shop, now=NOW + timedelta(days=1))
    assert result.exit_code == 1, result.output
    assert "internal error" not in result.stderr
    assert str(shop / "state") in result.stderr and "read-only" in result.stderr.lower()


def test_a_damaged_store_page_is_named_with_how_to_recover(shop: Path) -> None:
    assert send(shop).exit_code == 0
    store = shop / "state" / STORE_FILE
    with sqlite3.connect(store) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = db.execute("PRAGMA page_count").fetchone()[0]
    data = bytearray(store.read_bytes())
    page = len(data) // pages
    for number in range(1, pages):  # every page but the header's
        data[number * page : number * page + 64] = b"\xa5" * 64
    store.write_bytes(bytes(data))
    result = invoke(shop / "config.yaml", "papers")
    assert result.exit_code == 1, result.output
    assert "internal error" not in result.stderr
    assert "is damaged" in result.stderr and ".recover" in result.stderr


@pytest.mark.parametrize("key", ["list_id", "unsubscribe_mailto"])
def test_validate_catches_a_line_break_in_a_header_setting(shop: Path, key: str) -> None:
    (shop / "config.yaml").write_text(
        f'sender: Research digest <digest@example.org>\n{key}: "x@example.org\\r\\nBcc: a@b.c"\n'
    )
    result = invoke(shop / "config.yaml", "validate")
    assert result.exit_code == 1, result.output
    assert f"config.yaml:2: '{key}' must be one line of plain text" in result.output
    assert "U+000D" in result.output


# -- 13: SMTP replies that mean "busy", not "broken" --------------------------------------------


def test_a_421_to_ehlo_under_starttls_is_a_transient_failure_with_its_code(shop: Path) -> None:
    with ScriptedServer(replies={"EHLO": "421 4.3.2 too busy, come back later"}) as server:
        smtp_config(shop, server.port, security="starttls")
        result = send(shop, "--json")
    assert result.exit_code == 1, result.output
    failed = json.loads(result.stdout)["failed"]
    assert {f["code"] for f in failed} == {421} and not any(f["permanent"] for f in failed)
    assert all("refused EHLO (421" in f["error"] for f in failed)
    assert not any("STARTTLS" in f["error"] for f in failed)


def test_a_421_greeting_is_reported_with_its_code(shop: Path) -> None:
    with ScriptedServer(greeting="421 4.7.0 too many connections from your host") as server:
        smtp_config(shop, server.port)
        result = send(shop, "--json")
    assert result.exit_code == 1, result.output
    failed = json.loads(result.stdout)["failed"]
    assert {f["code"] for f in failed} == {421}
    assert all("refused the session (421" in f["error"] for f in failed)


def test_a_server_that_drips_a_byte_at_a_time_is_cut_at_the_message_deadline(shop: Path) -> None:
    with ScriptedServer(drip=0.2) as server:  # each reply takes seconds; no timeout trips
        smtp_config(shop, server.port, timeout=5, message_timeout=2, connections=1)
        (shop / "subscribers.yaml").write_text(PROFILES.split("  - email: grace")[0])
        result = send(shop, "--json")
    assert result.exit_code == 1, result.output
    (failed,) = json.loads(result.stdout)["failed"]
    assert "took longer than 2 s in all (smtp.message_timeout)" in failed["error"]
    assert not failed["permanent"]
    with open_store(shop / "state") as store:
        (pending,) = Ledger(store).pending()  # kept for the next run
    assert pending.subscriber == "ada@example.org"


# -- 8: signals ------------------------------------------------------------------------------


def start_daemon(project: Path, log: Path) -> subprocess.Popen:
    with log.open("w") as sink:
        return subprocess.Popen(
            [*command(project / "config.yaml"), "run"], stderr=sink, env=child_env()
        )


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
        profiles.write_text(PROFILES + "  - email: carol@example.org\n    keywords: [x]\n")
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


# -- 1: a SIGKILL mid-delivery, then a new digest -----------------------------------------------


def test_a_killed_delivery_is_resent_and_the_next_digest_still_arrives(shop: Path) -> None:
    (shop / "subscribers.yaml").write_text(PROFILES.split("  - email: grace")[0])
    with ScriptedServer(drip=1.0) as slow:
        smtp_config(shop, slow.port, timeout=30)
        process = subprocess.Popen(
            [*command(shop / "config.yaml"), "send", "--now"],
            env=child_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert wait_for(lambda: slow.connections > 0)
        finally:
            process.kill()  # SIGKILL mid-delivery: nothing recorded after the pending copy
            process.wait()
    new_digest(shop)
    sink = Sink()
    with SmtpServer(sink) as server:
        smtp_config(shop, server.port)
        runs = [send(shop, "--json", now=NOW + timedelta(hours=h)) for h in (1, 2)]
    sent = [s for run in runs for s in json.loads(run.stdout)["sent"]]
    assert [s.get("resent", False) for s in sent] == [True, False]
    with open_store(shop / "state") as store:
        (new,) = [p.id for p in store.papers() if p.title.startswith("Pruning transformers, ag")]
    received = [p for s in sent for p in s["papers"]]
    assert received.count(new) == 1
    assert sink.recipients() == ["ada@example.org", "ada@example.org"]


# -- 10: what a terminal is shown ------------------------------------------------------------


def test_papers_never_prints_escape_sequences_a_store_holds(shop: Path) -> None:
    from datetime import date

    from newsletter.models import Card
    from newsletter.store.papers import DigestRecord

    hostile = Card(
        title="\x1b]0;pwned\x07Pruning \x1b[31mred\x1b[0m",
        abstract="An abstract.",
        line=1,
        organization="Org\x9b2J",
    )
    with open_store(shop / "state") as store:  # as an older version could have stored it
        record = DigestRecord("f" * 64, "old.txt", "hf-listing", date(2026, 3, 12), 1, 0)
        store.add_digest(record, [hostile], NOW)
    result = invoke(shop / "config.yaml", "papers")
    assert result.exit_code == 0, result.output
    assert not any(ch in result.stdout for ch in "\x1b\x07\x9b")
    assert "Pruning  [31mred" in result.stdout
