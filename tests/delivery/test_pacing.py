"""Rate limits: the pace of ``smtp.rate.per_second``, the caps per hour and day, and the
limits per recipient domain (``smtp.domains``), all on a fake clock: no test sleeps."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from newsletter.config.settings import DomainLimit, RateSettings, SmtpSettings
from newsletter.delivery.flow import Retry, deliver
from newsletter.delivery.pacing import Clock, Pacer, recipient_domain
from newsletter.delivery.transport import Connection, Outgoing, Transport
from newsletter.models import Envelope
from newsletter.reports import CapReached, SendReport
from newsletter.schedule.daemon import AFTER_CAP, Daemon
from newsletter.world import World
from tests.helpers import NOW, FakeClock, invoke, readers_of_pruning
from tests.send.test_send import configure, ledger_rows
from tests.smtp_server import SmtpServer


class Watched(Pacer):
    """A pacer that notes when (on its clock) each message was handed over, and where to."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.handovers: list[tuple[float, str]] = []

    def handed(self, item) -> None:  # type: ignore[no-untyped-def]
        self.handovers.append((self.clock.monotonic(), recipient_domain(item.envelope)))
        super().handed(item)


class Memory(Transport, Connection):
    """A transport keeping what it is given over ``parallel`` connections; it notes the
    most messages to one domain that were ever on their way at once."""

    where = "memory"
    rate_limited = True

    def __init__(self, parallel: int = 2) -> None:
        self.parallel = parallel
        self.sent: list[str] = []
        self.lock = threading.Lock()
        self.busy: Counter[str] = Counter()
        self.most: Counter[str] = Counter()

    def connect(self) -> Memory:
        return self

    def send(self, outgoing: Outgoing) -> None:
        domain = recipient_domain(outgoing.envelope)
        with self.lock:
            self.busy[domain] += 1
            self.most[domain] = max(self.most[domain], self.busy[domain])
        time.sleep(0.002)  # (real time: long enough for another connection to overlap)
        with self.lock:
            self.busy[domain] -= 1
            self.sent.append(outgoing.envelope.recipient)


def message(recipient: str) -> Outgoing:
    envelope = Envelope("digest@example.org", recipient)
    return Outgoing(f"<{recipient}>", recipient, envelope, b"Subject: x\r\n\r\nx\r\n")


def pacer(clock: FakeClock, **smtp: object) -> Watched:
    return Watched(SmtpSettings(**smtp), Clock(clock.monotonic, clock.sleep), NOW)  # type: ignore[arg-type]


def run(transport: Memory, messages: list[Outgoing], paced: Pacer) -> list[bool]:
    bursts = deliver(transport, messages, Retry(1, 0), pacer=paced)
    return [r.delivered for burst in bursts for r in burst]


def test_per_second_spaces_the_messages_evenly() -> None:
    clock = FakeClock()
    paced = pacer(clock, rate=RateSettings(per_second=4))
    results = run(Memory(), [message(f"r{i}@example.org") for i in range(12)], paced)
    assert results == [True] * 12
    times = [at for at, _ in paced.handovers]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= 0.25 - 1e-9  # one every quarter second: no burst
    assert 11 * 0.25 - 1e-9 <= times[-1] <= 11 * 0.25 + 1.0


def test_a_fast_pace_still_goes_out_in_small_bursts_only() -> None:
    clock = FakeClock()
    paced = pacer(clock, rate=RateSettings(per_second=100))
    assert run(Memory(), [message(f"r{i}@example.org") for i in range(300)], paced) == [True] * 300
    times = [at for at, _ in paced.handovers]
    assert times[-1] >= 2.9 - 1e-9  # 300 at 100 a second: about 3 s
    worst = max(sum(1 for t in times if start <= t < start + 0.1) for start in times)
    assert worst <= 11  # at most a tenth of a second's worth at once (10), plus one


def test_a_domain_limit_holds_back_only_that_domain() -> None:
    clock = FakeClock()
    limits = {"gmail.com": DomainLimit(connections=1, per_minute=60)}
    paced = pacer(clock, domains=limits)
    messages = [message(f"g{i}@gmail.com") for i in range(6)]
    messages += [message(f"o{i}@example.org") for i in range(6)]
    transport = Memory(parallel=3)
    assert run(transport, messages, paced) == [True] * 12
    gmail = [at for at, domain in paced.handovers if domain == "gmail.com"]
    others = [at for at, domain in paced.handovers if domain == "example.org"]
    gaps = [later - earlier for earlier, later in itertools.pairwise(gmail)]
    assert min(gaps) >= 1.0 - 1e-9  # 60 a minute
    assert max(others) < 1.0  # not held behind gmail's queue
    assert transport.most["gmail.com"] == 1  # one at a time
    assert transport.most["example.org"] >= 2  # (the others use every connection)


def test_the_default_limit_applies_to_each_other_domain_on_its_own() -> None:
    clock = FakeClock()
    paced = pacer(clock, domains={"default": DomainLimit(per_minute=30)})
    messages = [message(f"{name}{i}@{name}.org") for i in range(3) for name in ("a", "b")]
    assert run(Memory(), messages, paced) == [True] * 6
    for name in ("a.org", "b.org"):
        times = [at for at, domain in paced.handovers if domain == name]
        assert len(times) == 3 and times[-1] - times[0] >= 4.0 - 1e-9  # one every 2 s each
    assert max(at for at, _ in paced.handovers) < 4.0 + 0.5  # side by side, not one after other


def test_a_cap_counts_earlier_sends_and_says_when_it_resets() -> None:
    clock = FakeClock()
    earlier = [NOW - timedelta(minutes=50), NOW - timedelta(minutes=10)]
    settings = SmtpSettings(rate=RateSettings(per_hour=3))
    paced = Pacer(settings, Clock(clock.monotonic, clock.sleep), NOW, earlier)
    transport = Memory()
    assert run(transport, [message(f"r{i}@example.org") for i in range(5)], paced) == [True]
    assert paced.capped == CapReached("per_hour", 3, NOW + timedelta(minutes=10))
    assert len(transport.sent) == 1


def test_a_rolling_day_cap_resets_when_its_oldest_message_leaves_the_window() -> None:
    clock = FakeClock()
    earlier = [NOW - timedelta(hours=h) for h in (30, 20, 5, 1)]  # 30 h ago: not counted
    settings = SmtpSettings(rate=RateSettings(per_day=3))
    paced = Pacer(settings, Clock(clock.monotonic, clock.sleep), NOW, earlier)
    assert paced.check_caps()
    assert paced.capped == CapReached("per_day", 3, NOW + timedelta(hours=4))


RECIPIENTS = [f"reader{i}@example.org" for i in range(10)]


@pytest.fixture
def readers(tmp_path: Path) -> Path:
    """A project with our sample digests and ten readers of papers on pruning."""
    return readers_of_pruning(tmp_path, RECIPIENTS)


def capped_readers(readers: Path, port: int, **rate: int) -> None:
    limits = ", ".join(f"{key}: {value}" for key, value in rate.items())
    configure(readers, port, rate=f"{{{limits}}}")


def send_at(readers: Path, clock: FakeClock) -> dict:
    result = invoke(readers / "config.yaml", "send", "--now", "--json", world=clock.world())
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_caps_hold_the_rest_due_and_the_next_runs_continue(readers: Path) -> None:
    with SmtpServer() as server:
        capped_readers(readers, server.port, per_hour=4, per_day=9)
        first = send_at(readers, FakeClock(NOW))
        assert len(first["sent"]) == 4
        assert first["held"] == {
            "count": 6,
            "limit": "per_hour",
            "cap": 4,
            "resets_at": (NOW + timedelta(hours=1)).isoformat(),
        }
        held = [s for s in first["skipped"] if s["reason"].startswith("held back")]
        assert len(held) == 6 and "smtp.rate.per_hour" in held[0]["reason"]

        # (--now makes everyone due: the four served are held too, not looked at)
        soon = send_at(readers, FakeClock(NOW + timedelta(minutes=30)))
        assert soon["sent"] == [] and soon["held"]["count"] == 10

        later = send_at(readers, FakeClock(NOW + timedelta(hours=1, seconds=1)))
        assert len(later["sent"]) == 4 and later["held"]["count"] == 6
        last = send_at(readers, FakeClock(NOW + timedelta(hours=2, seconds=2)))
        assert len(last["sent"]) == 1  # the day's 9th
        assert last["held"] == {
            "count": 9,  # one digest still pending, and the eight served (--now)
            "limit": "per_day",
            "cap": 9,
            "resets_at": (NOW + timedelta(days=1)).isoformat(),
        }
        received = server.sink.recipients()
    assert len(received) == 9 and len(set(received)) == 9  # nobody twice
    sent = {
        row["message_id"]: row["subscriber"]
        for row in ledger_rows(readers)
        if row["status"] == "sent"
    }
    assert sorted(sent.values()) == sorted(received)


def test_the_report_says_how_many_are_held_and_until_when(readers: Path) -> None:
    with SmtpServer() as server:
        capped_readers(readers, server.port, per_hour=2)
        clock = FakeClock(NOW)
        result = invoke(readers / "config.yaml", "send", "--now", world=clock.world())
    assert result.exit_code == 0, result.output
    assert "8 due subscribers held back: the cap of 2 messages per hour" in result.output
    assert "2026-03-12 13:00 UTC" in result.output


def test_a_send_paces_itself_on_the_clock_passed_in(readers: Path) -> None:
    with SmtpServer() as server:
        capped_readers(readers, server.port, per_second=2)
        clock = FakeClock(NOW)
        report = send_at(readers, clock)
        assert len(server.sink.recipients()) == 10
    assert len(report["sent"]) == 10 and report["held"] is None
    assert clock.monotonic() >= 9 * 0.5 - 1e-9  # ten messages at two a second


def test_the_outbox_is_not_paced(readers: Path) -> None:
    capped_readers(readers, 1, per_hour=2)
    config = readers / "config.yaml"
    config.write_text(config.read_text().replace("delivery: smtp", "delivery: outbox"))
    report = send_at(readers, FakeClock(NOW))
    assert len(report["sent"]) == 10 and report["held"] is None


def test_a_dry_run_counts_the_caps_without_waiting(readers: Path) -> None:
    capped_readers(readers, 1, per_hour=3, per_second=1)
    clock = FakeClock(NOW)
    args = "send", "--now", "--json", "--dry-run"
    result = invoke(readers / "config.yaml", *args, world=clock.world())
    report = json.loads(result.stdout)
    assert len(report["sent"]) == 3 and report["held"]["count"] == 7
    assert clock.monotonic() == 0
    config = readers / "config.yaml"
    config.write_text(config.read_text().replace("delivery: smtp", "delivery: outbox"))
    result = invoke(config, *args, world=clock.world())
    assert json.loads(result.stdout)["held"] is None  # (as a send to the outbox would)


@pytest.mark.parametrize(
    ("smtp", "expected"),
    [
        ("rate: {per_second: 0}", "'per_second' must be a number from 0.001"),
        ("rate: {per_hour: many}", "'per_hour' must be a whole number"),
        ("rate: {per_minute: 5}", "per_minute"),
        ("domains: {gmail: {connections: 1}}", "'gmail' is not a domain name"),
        ("domains: {gmail.com: 5}", "the limits of gmail.com must be a mapping"),
        ("domains: {gmail.com: {connections: 99}}", "'connections' must be from 1 to 32"),
        ("domains: [gmail.com]", "'domains' must map domains to limits"),
    ],
)
def test_limit_mistakes_name_their_line(tmp_path: Path, smtp: str, expected: str) -> None:
    (tmp_path / "digests").mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(f"delivery: smtp\nsmtp:\n  host: mail.example.org\n  {smtp}\n")
    result = invoke(config, "validate")
    assert result.exit_code != 0
    assert expected in result.output
    assert "config.yaml:4" in result.output


def test_domain_names_match_as_they_go_on_the_wire(tmp_path: Path) -> None:
    from newsletter.config.load import load_config

    (tmp_path / "digests").mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(
        "smtp:\n  domains:\n    GMail.com: {connections: 1}\n    bücher.de: {per_minute: 6}\n"
    )
    domains = load_config(config).smtp.domains
    assert set(domains) == {"gmail.com", "xn--bcher-kva.de"}


def test_the_daemon_runs_again_when_the_cap_lets_more_go(tmp_path: Path) -> None:
    (tmp_path / "digests").mkdir()
    (tmp_path / "config.yaml").write_text("schedule:\n  cron: '0 7 * * *'\n")
    (tmp_path / "subscribers.yaml").write_text(
        "subscribers:\n  - email: ada@example.org\n    keywords: [x]\n"
    )
    daemon = Daemon(tmp_path / "config.yaml", World())
    daemon.reload()
    daemon.schedule_jobs()
    resets = NOW + timedelta(minutes=20)
    report = SendReport((), (), (), capped=CapReached("per_hour", 5, resets), held=3)
    daemon.after_cap(None, report)
    daemon.schedule_jobs()  # (an edit rebuilds the schedule: the catch-up stays)
    job = daemon.scheduler.get_job(AFTER_CAP)
    assert job is not None and job.trigger.run_date == resets
