"""Database faults are weather: a send and a worker on PostgreSQL ride out a restart of the
server, terminated sessions and connections refused for longer than a lease; they reconnect
with backoff within ``store_retry`` and finish the run, every subscriber one distinct
Message-ID and each repeated id byte-identical. Past the window the send stops with a
message that says what to do, and the next send finishes the run."""

from __future__ import annotations

import collections
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.cluster.test_leader import instance_config
from tests.cluster.test_worker import SUBSCRIBERS, environ, store_of, write_project
from tests.helpers import command, wait_for
from tests.pg_cluster import Cluster
from tests.smtp_server import Sink, SmtpServer

pytestmark = pytest.mark.slow

READERS = {f"reader{n:03}@example.org" for n in range(SUBSCRIBERS)}


def start(config: Path, env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*command(config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def one_distinct_digest_each(sink: Sink) -> None:
    """Every reader got digests of one Message-ID, and copies of an id are the same bytes."""
    ids = collections.defaultdict(set)
    copies = collections.defaultdict(set)
    for message, (_, _, content) in zip(sink.parsed(), sink.messages, strict=True):
        ids[message["To"].addresses[0].addr_spec].add(message["Message-ID"])
        copies[message["Message-ID"]].add(content)
    assert set(ids) == READERS
    assert {to: found for to, found in ids.items() if len(found) != 1} == {}
    assert {i: len(c) for i, c in copies.items() if len(c) != 1} == {}


def fault(cluster: Cluster, url: str, kind: str) -> None:
    if kind == "restart":
        cluster.restart()
    elif kind == "terminate":
        cluster.cut_sessions(url)
    else:  # connections refused for longer than a lease (2 s)
        cluster.refuse(url, True)
        time.sleep(4)
        cluster.refuse(url, False)


@pytest.mark.parametrize("kind", ["restart", "terminate", "refuse"])
def test_a_send_and_a_worker_ride_out_a_database_fault(
    tmp_path: Path, pg_cluster: Cluster, pg_url: str, kind: str
) -> None:
    sink = Sink(delay=0.1)
    with SmtpServer(sink) as server:
        config = write_project(tmp_path, server.port, lease=2, chunk=4)
        env = environ(pg_url)
        worker = start(config, env, "worker")
        try:
            send = start(config, env, "send", "--now", "--json")
            assert wait_for(lambda: len(sink.messages) >= 12, 60)
            fault(pg_cluster, pg_url, kind)
            out, err = send.communicate(timeout=180)
            assert send.returncode == 0, err
            assert worker.poll() is None, worker.communicate()[1]  # it rode it out too
        finally:
            worker.send_signal(signal.SIGTERM)
            _, worker_log = worker.communicate(timeout=30)
        assert worker.returncode == 0, worker_log
        assert "lost the connection" in err + worker_log  # (logged, then ridden out)
        one_distinct_digest_each(sink)
    report = json.loads(out)
    assert {s["subscriber"] for s in report["sent"]} == READERS


def test_a_database_away_past_store_retry_ends_the_send_and_the_next_one_finishes(
    tmp_path: Path, pg_cluster: Cluster, pg_url: str
) -> None:
    sink = Sink(delay=0.1)
    with SmtpServer(sink) as server:
        config = write_project(tmp_path, server.port, lease=2, chunk=4)
        config.write_text(config.read_text() + "store_retry: 2\n")
        env = environ(pg_url)
        send = start(config, env, "send", "--now", "--json")
        # (its first claim, 8 chunks of 4, done and recorded: the second is under way)
        assert wait_for(lambda: len(sink.messages) >= 36, 60)
        pg_cluster.refuse(pg_url, True)
        try:
            out, err = send.communicate(timeout=60)
        finally:
            pg_cluster.refuse(pg_url, False)
        assert send.returncode == 1, err
        assert "store_retry (2 s)" in err and "newsletter send" in err, err
        assert "Traceback" not in err
        report = json.loads(out)  # (a report all the same: what this send did, what is left)
        assert "store_retry (2 s)" in report["store_lost"]
        listed = [s["subscriber"] for key in ("sent", "skipped", "failed") for s in report[key]]
        assert sorted(listed) == sorted(READERS)
        left = [s for s in report["skipped"] if "database went away" in s["reason"]]
        assert left and report["sent"]
        delivered = {m["To"].addresses[0].addr_spec for m in sink.parsed()}
        assert {s["subscriber"] for s in report["sent"]} <= delivered
        with store_of(pg_url) as store:  # ("sent": each digest it handed over and recorded,
            recorded = store.db.execute(  # the claim in hand when it was lost included)
                "SELECT subscriber FROM deliveries WHERE status = 'sent'"
            ).fetchall()
        assert {s["subscriber"] for s in report["sent"]} == {row[0] for row in recorded}
        again = start(config, env, "send", "--now", "--json")
        _, err = again.communicate(timeout=180)
        assert again.returncode == 0, err
        one_distinct_digest_each(sink)


def test_the_scheduler_rides_out_a_restart_in_the_middle_of_a_run(
    tmp_path: Path, pg_cluster: Cluster, pg_url: str
) -> None:
    sink = Sink(delay=0.1)
    with SmtpServer(sink) as server:
        base = write_project(tmp_path, server.port, lease=2, chunk=4)
        config = instance_config(tmp_path, "a", base)
        log = tmp_path / "run.log"
        scheduler = subprocess.Popen(
            [*command(config), "run"], stderr=log.open("w"), env=environ(pg_url)
        )
        try:
            assert wait_for(lambda: len(sink.messages) >= 12, 60), log.read_text()
            pg_cluster.restart()
            assert wait_for(lambda: len({m["To"] for m in sink.parsed()}) == SUBSCRIBERS, 120)
            runs = log.read_text().count("run cron:")  # the schedule goes on after it
            assert wait_for(lambda: log.read_text().count("run cron:") >= runs + 2, 60)
            assert scheduler.poll() is None, log.read_text()
        finally:
            scheduler.send_signal(signal.SIGTERM)
            scheduler.wait(timeout=30)
        text = log.read_text()
        assert scheduler.returncode == 0, text
        assert "lost the connection" in text and "reconnected" in text, text
        assert "run cron failed" not in text, text
        one_distinct_digest_each(sink)
