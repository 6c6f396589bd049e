"""Two ``newsletter run`` instances on one PostgreSQL store: one leads the schedule, the
other works on its chunks; the leader is killed in the middle of a run, the other takes
over, finishes that run, and sends the next fire once (against an aiosmtpd sink)."""

from __future__ import annotations

import collections
import re
import signal
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from newsletter.cluster.leader import ALREADY, NOT_LEADING, Leadership
from newsletter.config.settings import Config
from tests.cluster.test_worker import SUBSCRIBERS, claimed_by, environ, store_of, write_project
from tests.digest_text import capture, card
from tests.helpers import NOW, command, wait_for
from tests.pg_cluster import PASSWORD, PASSWORD_ENV
from tests.smtp_server import Sink, SmtpServer

CRON = "* * * * * */2"  # every 2 s: the next fire comes soon after the takeover


def instance_config(folder: Path, name: str, base: Path) -> Path:
    """A config of its own for an instance (its own state folder, as on its own host)."""
    config = folder / f"config-{name}.yaml"
    config.write_text(
        base.read_text().replace("  poll: 0.1\n", "  poll: 0.1\n  leader_poll: 0.5\n")
        + f"state_dir: state-{name}\nschedule:\n  cron: '{CRON}'\n"
    )
    return config


def digests_by_reader(sink: Sink) -> dict[str, set[str]]:
    """Each reader's distinct digests. A digest the killed leader handed over but had not
    recorded yet (the one ambiguous window) goes again with the same Message-ID: one digest."""
    found = collections.defaultdict(set)
    for message in sink.parsed():
        found[str(message["To"])].add(str(message["Message-ID"]))
    return found


def resends_differing(sink: Sink) -> list[str]:
    """The Message-IDs received more than once with other bytes (a resend must be the same)."""
    seen: dict[str, set[bytes]] = collections.defaultdict(set)
    for (_, _, content), message in zip(sink.messages, sink.parsed(), strict=True):
        seen[str(message["Message-ID"])].add(content)
    return [message_id for message_id, versions in seen.items() if len(versions) > 1]


@pytest.mark.slow
def test_a_follower_takes_over_from_a_killed_leader_and_sends_each_fire_once(
    tmp_path: Path, pg_url: str
) -> None:
    sink = Sink(delay=0.05)  # (a run takes a few seconds: the kill lands inside it)
    readers = {f"reader{n:03}@example.org" for n in range(SUBSCRIBERS)}
    with SmtpServer(sink) as server:
        base = write_project(tmp_path, server.port, chunk=6)
        env = environ(pg_url)
        logs = {name: tmp_path / f"run-{name}.log" for name in "ab"}
        configs = {name: instance_config(tmp_path, name, base) for name in "ab"}

        def start(name: str) -> subprocess.Popen[bytes]:
            out = logs[name].open("w")
            return subprocess.Popen([*command(configs[name]), "run"], stderr=out, env=env)

        leader = start("a")
        follower = None
        try:
            assert wait_for(lambda: "leading the schedule" in logs["a"].read_text(), 30)
            follower = start("b")
            assert wait_for(lambda: "following" in logs["b"].read_text(), 30), logs["b"]
            # The leader's first run is under way: kill it once a chunk of its own is part sent.
            assert wait_for(lambda: claimed_by(pg_url, leader.pid), 60), logs["a"].read_text()
            leader.send_signal(signal.SIGKILL)
            leader.wait(timeout=10)
            assert len(sink.messages) < SUBSCRIBERS  # (killed mid-run)
            # The follower leads within a few polls and finishes the run the leader left.
            assert wait_for(lambda: "leading the schedule" in logs["b"].read_text(), 30)
            assert wait_for(lambda: set(digests_by_reader(sink)) == readers, 60), logs["b"]
            # New papers: the next fire sends each reader one more digest, once.
            cards = [card(f"Failover-proof language models, part {n}") for n in range(3)]
            (tmp_path / "digests" / "nov-23-new.txt").write_text(capture(*cards, listing="Nov 23"))
            two_each = lambda: all(len(ids) == 2 for ids in digests_by_reader(sink).values())  # noqa: E731
            assert wait_for(two_each, 60), logs["b"].read_text()
            runs = logs["b"].read_text().count("run cron:")  # two fires more: nothing more
            assert wait_for(lambda: logs["b"].read_text().count("run cron:") >= runs + 2, 30)
        finally:
            for process in (leader, follower):
                if process is not None and process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    process.wait(timeout=30)
        assert follower.returncode == 0, logs["b"].read_text()
        found = digests_by_reader(sink)
    b_log = logs["b"].read_text()
    assert set(found) == readers
    assert {reader: ids for reader, ids in found.items() if len(ids) != 2} == {}
    assert resends_differing(sink) == []  # a resend in the ambiguous window: the same bytes
    assert "finishing run" in b_log  # the run the killed leader left
    assert re.search(r"run cron: .* \d+ workers", b_log)  # the log line counts workers
    with store_of(pg_url) as store:
        sent = store.db.execute(
            "SELECT subscriber, count(*) FROM deliveries WHERE status = 'sent' GROUP BY subscriber"
        ).fetchall()
        fires = store.db.execute("SELECT count(*), count(DISTINCT fire) FROM slot_runs").fetchone()
        unfinished = store.db.execute(
            "SELECT count(*) FROM send_runs WHERE finished IS NULL"
        ).fetchone()[0]
    assert dict(sent) == dict.fromkeys(readers, 2)  # the ledger agrees
    assert fires[0] == fires[1] and fires[0] >= 2  # each fire ran once, across both leaders
    assert unfinished == 0  # the killed leader's run was finished by its successor


def test_one_instance_leads_and_a_fire_starts_one_run_whoever_leads(pg_url: str) -> None:
    config = Config(path=Path("config.yaml"), store=pg_url)
    env = {PASSWORD_ENV: PASSWORD}
    first, second = (Leadership(config, env, f"instance {n}") for n in (1, 2))
    fire, later = NOW, NOW + timedelta(days=1)
    try:
        assert first.contend() and not second.contend()
        assert first.contend()  # (still leading at the next poll)
        assert first.claim("daily 07:00 UTC", fire, "run-1") is None
        assert first.claim("daily 07:00 UTC", fire, "run-2") == ALREADY
        assert second.claim("daily 07:00 UTC", later, "run-3") == NOT_LEADING
        first.close()  # (gives the role up; a leader that dies: the test above)
        assert second.contend()
        assert second.claim("daily 07:00 UTC", fire, "run-4") == ALREADY
        assert second.claim("daily 07:00 UTC", later, "run-5") is None
    finally:
        first.close()
        second.close()
    with store_of(pg_url) as store:
        rows = store.db.execute("SELECT run FROM slot_runs ORDER BY fire").fetchall()
    assert rows == [("run-1",), ("run-5",)]
