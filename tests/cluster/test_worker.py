"""Sends shared by workers through PostgreSQL: chunks claimed with SKIP LOCKED under a lease,
a worker killed mid-chunk replaced by another, exactly one digest per subscriber across
all of them (against an aiosmtpd sink), and ``newsletter workers``."""

from __future__ import annotations

import collections
import json
import shutil
import signal
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from newsletter.cluster.queue import Queue, decode, encode, merge
from newsletter.config.load import load_config
from newsletter.config.settings import Config
from newsletter.errors import LeaseLost
from newsletter.ledger.ledger import Ledger
from newsletter.ledger.suppression import SubscriberState
from newsletter.reports import CapReached, FailedItem, SendReport, SentItem, SkippedItem
from newsletter.send.run import Run
from newsletter.send.shared import ChunkWorker
from newsletter.store.backend import open_store_for
from newsletter.world import World
from tests.helpers import NOW, SAMPLES, child_env, command, invoke, wait_for
from tests.pg_cluster import PASSWORD, PASSWORD_ENV
from tests.smtp_server import Sink, SmtpServer

SUBSCRIBERS = 60


def write_project(folder: Path, port: int, lease: int = 3, chunk: int = 4) -> Path:
    shutil.copytree(SAMPLES, folder / "digests")
    entries = "".join(
        f"  - email: reader{n:03}@example.org\n    keywords: [model*, learning, language]\n"
        for n in range(SUBSCRIBERS)
    )
    (folder / "subscribers.yaml").write_text("subscribers:\n" + entries)
    config = folder / "config.yaml"
    config.write_text(
        "sender: Research digest <digest@example.org>\ndelivery: smtp\n"
        f"smtp:\n  host: 127.0.0.1\n  port: {port}\n  security: none\n  retry_delay: 0\n"
        f"workers:\n  chunk_size: {chunk}\n  lease: {lease}\n  poll: 0.1\n"
    )
    return config


def store_of(url: str):
    return open_store_for(Config(path=Path("config.yaml"), store=url), {PASSWORD_ENV: PASSWORD})


def environ(url: str) -> dict[str, str]:
    return child_env(NEWSLETTER_STORE=url, **{PASSWORD_ENV: PASSWORD})


def claimed_by(url: str, pid: int) -> bool:
    """Has the worker of ``pid`` a chunk that is part sent (a digest of it accepted)?"""
    with store_of(url) as store:
        row = store.db.execute(
            "SELECT count(*) FROM send_chunks c JOIN deliveries d ON d.run = c.run "
            "WHERE c.status = 'claimed' AND c.worker LIKE ? AND d.status = 'sent' "
            "AND c.subscribers LIKE '%' || d.subscriber || '%'",
            (f"%:{pid}:%",),
        ).fetchone()
    return row[0] > 0


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_a_worker_killed_mid_chunk_is_replaced_and_each_reader_gets_one_digest(
    tmp_path: Path, pg_url: str, how: signal.Signals
) -> None:
    """SIGKILL: the lease runs out and another worker does the chunk again. SIGTERM: the
    worker finishes the messages in flight and hands the rest of its chunk back at once."""
    sink = Sink(delay=0.1)  # (chunks take a while: the kill lands inside one)
    with SmtpServer(sink) as server:
        config = write_project(tmp_path, server.port, chunk=12)
        env = environ(pg_url)
        logs = [tmp_path / f"worker{n}.log" for n in range(3)]

        def worker(log: Path) -> subprocess.Popen:
            return subprocess.Popen([*command(config), "worker"], stderr=log.open("w"), env=env)

        workers = [worker(logs[0])]  # (the victim; the others come once it holds a chunk)
        try:
            assert wait_for(lambda: "waiting for chunks" in logs[0].read_text(), 60)
            send = subprocess.Popen(
                [*command(config), "send", "--now", "--json"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                text=True,
            )
            victim = workers[0]
            assert wait_for(lambda: claimed_by(pg_url, victim.pid), 60), logs[0].read_text()
            workers += [worker(log) for log in logs[1:]]
            assert wait_for(lambda: all("waiting" in log.read_text() for log in logs[1:]), 60)
            victim.send_signal(how)
            if how == signal.SIGTERM:
                assert victim.wait(timeout=10) == 0, logs[0].read_text()
                assert "handed back" in logs[0].read_text()
            out, err = send.communicate(timeout=180)
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            for worker in workers:
                worker.wait(timeout=30)
        assert send.returncode == 0, err
        report = json.loads(out)
        digests = collections.defaultdict(set)
        for message in sink.parsed():
            digests[str(message["To"])].add(str(message["Message-ID"]))
    readers = {f"reader{n:03}@example.org" for n in range(SUBSCRIBERS)}
    assert set(digests) == readers
    assert {to: len(ids) for to, ids in digests.items() if len(ids) != 1} == {}
    assert {item["subscriber"] for item in report["sent"]} == readers
    with store_of(pg_url) as store:
        rows = store.db.execute(
            "SELECT subscriber, count(*) FROM deliveries WHERE status = 'sent' GROUP BY subscriber"
        ).fetchall()
        claims = store.db.execute("SELECT max(claims) FROM send_chunks").fetchone()[0]
        sent_ids = {r["message_id"] for r in Ledger(store).rows()}
    assert dict(rows) == dict.fromkeys(readers, 1)  # the ledger agrees: one each
    assert sent_ids == {i for ids in digests.values() for i in ids}
    assert claims >= 2  # the killed worker's chunk was claimed again
    assert all(w.returncode == 0 for w in workers[1:])


def test_send_on_postgresql_works_in_chunks_alone_and_lists_no_worker_after(
    tmp_path: Path, pg_url: str
) -> None:
    with SmtpServer() as server:
        config = write_project(tmp_path, server.port)
        env = {"NEWSLETTER_STORE": pg_url, PASSWORD_ENV: PASSWORD}
        result = invoke(config, "send", "--now", "--json", environ=env)
        assert result.exit_code == 0, result.output
        assert len(json.loads(result.stdout)["sent"]) == SUBSCRIBERS
        assert len(server.sink.messages) == SUBSCRIBERS
        again = invoke(config, "send", "--now", "--json", environ=env)
        assert json.loads(again.stdout)["sent"] == []  # nothing twice
    with store_of(pg_url) as store:
        chunks = store.db.execute(
            "SELECT count(*), min(status), max(status) FROM send_chunks GROUP BY run"
        ).fetchall()
    assert chunks == [(SUBSCRIBERS // 4, "done", "done")] * 2  # two runs, all done
    listed = invoke(config, "workers", "--json", environ=env)
    assert json.loads(listed.stdout) == []  # the sender left when its run was done


def test_newsletter_workers_lists_a_live_worker(tmp_path: Path, pg_url: str) -> None:
    config = write_project(tmp_path, 9)
    env = environ(pg_url)
    log = tmp_path / "worker.log"
    worker = subprocess.Popen([*command(config), "worker"], stderr=log.open("w"), env=env)
    try:
        assert wait_for(lambda: "waiting for chunks" in log.read_text(), 30), log.read_text()
        listed = invoke(
            config,
            "workers",
            "--json",
            environ={"NEWSLETTER_STORE": pg_url, PASSWORD_ENV: PASSWORD},
        )
        (shown,) = json.loads(listed.stdout)
        assert shown["pid"] == worker.pid and shown["chunk"] is None
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    assert "stopped" in log.read_text()


def test_a_worker_needs_a_postgresql_store(tmp_path: Path) -> None:
    config = write_project(tmp_path, 9)
    result = invoke(config, "worker")
    assert result.exit_code == 2
    assert "store: postgresql://" in result.output


def test_a_chunk_report_survives_the_database() -> None:
    report = SendReport(
        (SentItem("a@example.org", ("p1", "p2"), "<m@x>", True),),
        (SkippedItem("b@example.org", "paused"), SkippedItem("c@example.org", "not due", NOW)),
        (FailedItem("d@example.org", "550 no", 550, True),),
        where="127.0.0.1:25",
        capped=CapReached("per_hour", 100, NOW),
        held=3,
    )
    assert decode(encode(report)) == report
    plan = SendReport(
        (), (SkippedItem("e@example.org", "x"), SkippedItem("A@example.org", "y")), ()
    )
    merged = merge(plan, [report, report])  # (a chunk done twice: each subscriber once)
    assert [s.subscriber for s in merged.sent] == ["a@example.org"]  # (not its plan skip)
    assert len(merged.skipped) == 3 and len(merged.failed) == 1 and merged.held == 6


def test_a_chunk_skips_an_address_suppressed_after_the_run_was_planned(
    tmp_path: Path, pg_url: str
) -> None:
    """Each chunk reads the suppressions of its own addresses (not the whole list): one
    unsubscribed between planning and its chunk is skipped, the others of the chunk sent."""
    path = write_project(tmp_path, 9)
    assert invoke(path, "ingest", environ=environ(pg_url)).exit_code == 0
    config = load_config(path)
    world = World(now=lambda: NOW, environ=environ(pg_url))
    outbox = replace(config, delivery="outbox")
    addresses = [f"reader{n:03}@example.org" for n in range(4)]
    with store_of(pg_url) as store:
        Queue(store).open_run("r1", NOW, "send", False, [addresses[:2], addresses[2:]])
        SubscriberState(store).suppress("Reader003@example.org", "unsubscribed", "link", NOW)
        worker = ChunkWorker(store, Run(outbox, world, holder="test"), "test-worker")
        worker.work(["r1"])
        worker.leave()
        report = merge(SendReport((), (), ()), Queue(store).reports("r1"))
    assert sorted(item.subscriber for item in report.sent) == addresses[:3]
    (skip,) = report.skipped
    assert skip.subscriber == addresses[3] and "unsubscribed" in skip.reason


@pytest.mark.slow
def test_the_send_that_finishes_an_interrupted_run_reports_what_it_sent_and_what_was_sent_before(
    tmp_path: Path, pg_url: str
) -> None:
    sink = Sink(delay=0.05)
    with SmtpServer(sink) as server:
        config = write_project(tmp_path, server.port, chunk=4)
        env = environ(pg_url)
        first = subprocess.Popen(
            [*command(config), "send", "--now"], stdout=subprocess.DEVNULL, env=env
        )
        assert wait_for(lambda: len(sink.messages) >= 20, 60)
        first.send_signal(signal.SIGKILL)
        first.wait()
        with store_of(pg_url) as store:
            before = {r["subscriber"] for r in Ledger(store).rows() if r["status"] == "sent"}
        delivered = len(sink.messages)
        finish = subprocess.run(
            [*command(config), "send", "--now", "--json"],
            capture_output=True, text=True, env=env, timeout=180,
        )  # fmt: skip
        assert finish.returncode == 0, finish.stderr
        handed = len(sink.messages) - delivered
    report = json.loads(finish.stdout)
    listed = [s["subscriber"] for key in ("sent", "skipped", "failed") for s in report[key]]
    assert sorted(listed) == sorted(f"reader{n:03}@example.org" for n in range(SUBSCRIBERS))
    assert len(report["sent"]) == handed  # "sent": handed over by this command
    assert report["sent_earlier"] == len(before) > 0  # what the interrupted run had sent
    earlier = [s for s in report["skipped"] if "interrupted" in s["reason"]]
    assert {s["subscriber"] for s in earlier} == before


def test_one_claim_takes_half_its_share_of_what_is_queued_and_single_chunks_at_the_end(
    pg_url: str,
) -> None:
    """Guided claims: a lone worker's first claim of 10 chunks takes 5, then 3, 1, 1 (so
    that workers joining later still find work, and all finish together); each claim is
    leased, fenced and recorded done as one, its report counted once."""
    addresses = [f"reader{n:03}@example.org" for n in range(20)]
    with store_of(pg_url) as store:
        queue = Queue(store)
        queue.join("w1")
        queue.open_run("r1", NOW, "send", False, [addresses[i : i + 2] for i in range(0, 20, 2)])
        claims = []
        while (chunk := queue.claim("w1", 60, "r1", most=100)) is not None:
            assert queue.renew("w1", chunk, 60)
            queue.fence("w1", chunk)(store.db)  # (no LeaseLost: every chunk of it is held)
            sent = tuple(SentItem(a, ("p1",), f"<{a}>") for a in chunk.subscribers)
            assert queue.finish("w1", chunk, SendReport(sent, (), ()))
            claims.append(chunk)
        assert [c.numbers for c in claims] == [(0, 1, 2, 3, 4), (5, 6, 7), (8,), (9,)]
        assert [c.label for c in claims[:3]] == ["r1/0-4", "r1/5-7", "r1/8"]
        assert claims[0].subscribers == tuple(addresses[:10])
        report = merge(SendReport((), (), ()), queue.reports("r1"))
        assert [item.subscriber for item in report.sent] == addresses
        assert queue.left("r1") == 0
        queue.open_run("r2", NOW, "send", False, [addresses[:2], addresses[2:4]])
        single = queue.claim("w1", 60, "r2")  # (by default: one chunk a claim)
        assert single is not None and single.numbers == (0,)
        queue.leave("w1")


def test_a_claim_whose_lease_another_worker_took_over_is_not_recorded_done(pg_url: str) -> None:
    with store_of(pg_url) as store:
        queue = Queue(store)
        queue.join("w1")
        queue.open_run("r1", NOW, "send", False, [["a@example.org"]] * 4)
        chunk = queue.claim("w1", 60, "r1", most=100)
        assert chunk is not None and chunk.numbers == (0, 1)
        store.db.execute("UPDATE send_chunks SET worker = 'w2' WHERE number = 1")
        assert not queue.renew("w1", chunk, 60)
        with pytest.raises(LeaseLost, match="r1/0-1"):
            queue.fence("w1", chunk)(store.db)
        assert not queue.finish("w1", chunk, SendReport((), (), ()))
        assert queue.left("r1") == 4  # (neither of the two recorded done)
        queue.leave("w1")
