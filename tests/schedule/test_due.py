"""`send` respects schedules: only due subscribers, by the daemon's own rule (issue 12, 1)."""

from __future__ import annotations

import collections
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from newsletter.ledger.ledger import Ledger
from newsletter.schedule.daemon import Daemon
from newsletter.world import World
from tests.digest_text import capture, card
from tests.helpers import STORE_ENV, invoke, open_project_store

pytestmark = pytest.mark.usefixtures("each_store")

MONDAY = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)  # 07:00 in Berlin

PROFILES = """\
subscribers:
  - email: daily@example.org
    keywords: [alpha]
    timezone: Europe/Berlin
  - email: weekly@example.org
    keywords: [alpha, beta]
    frequency: weekly
    day: friday
    timezone: America/New_York
  - email: evening@example.org
    keywords: [beta]
    send_at: "09:00"
    timezone: America/New_York
  - email: paused@example.org
    keywords: [alpha, beta]
    frequency: paused
"""


def make_project(folder: Path) -> Path:
    (folder / "digests").mkdir(parents=True)
    (folder / "subscribers.yaml").write_text(PROFILES)
    (folder / "config.yaml").write_text("sender: Digest <digest@example.org>\n")
    return folder / "config.yaml"


def drop_digest(folder: Path, day: datetime) -> None:
    """The day's listing: two alpha papers and one beta paper, titled by the day."""
    stamp = f"{day:%b} {day.day}"
    cards = [
        card(f"Alpha results of {stamp}", upvotes="3"),
        card(f"Alpha methods of {stamp}", upvotes="2"),
        card(f"Beta findings of {stamp}", upvotes="1"),
    ]
    (folder / "digests" / f"{day:%Y-%m-%d}.txt").write_text(capture(*cards, listing=stamp))


def send(config: Path, *args: str, now: datetime) -> dict:
    result = invoke(config, "send", "--json", *args, now=now)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def sent_to(report: dict) -> list[str]:
    return sorted(item["subscriber"] for item in report["sent"])


def reasons(report: dict) -> dict[str, str]:
    return {item["subscriber"]: item["reason"] for item in report["skipped"]}


def test_send_sends_only_the_due_and_says_until_when(tmp_path: Path) -> None:
    config = make_project(tmp_path)
    drop_digest(tmp_path, MONDAY)
    first = send(config, now=MONDAY)
    # Daily-in-Berlin is at its send time; the weekly and the evening ones are not.
    assert sent_to(first) == ["daily@example.org"]
    skipped = reasons(first)
    assert skipped["weekly@example.org"] == "not due until Fri 2026-11-27 07:00 EST"
    assert skipped["evening@example.org"] == "not due until Mon 2026-11-23 09:00 EST"
    assert skipped["paused@example.org"] == "paused"
    later = send(config, now=MONDAY + timedelta(hours=1))
    assert sent_to(later) == []
    assert reasons(later)["daily@example.org"] == "not due until Tue 2026-11-24 07:00 CET"


def test_send_now_ignores_schedules_and_naming_someone_implies_it(tmp_path: Path) -> None:
    config = make_project(tmp_path)
    drop_digest(tmp_path, MONDAY)
    named = send(config, "--subscriber", "weekly@example.org", now=MONDAY + timedelta(hours=1))
    assert sent_to(named) == ["weekly@example.org"]
    everyone = send(config, "--now", now=MONDAY + timedelta(hours=2))
    assert sent_to(everyone) == ["daily@example.org", "evening@example.org"]
    assert reasons(everyone) == {
        "weekly@example.org": "no new papers since the last digest",
        "paused@example.org": "paused",
    }


def test_a_subscriber_who_never_got_a_digest_is_not_told_about_a_last_one(tmp_path) -> None:
    config = make_project(tmp_path)
    report = send(config, "--now", now=MONDAY)  # nothing ingested at all
    for reason in reasons(report).values():
        assert "last digest" not in reason
    assert reasons(report)["daily@example.org"] == ("no papers from the last 7 days to choose from")


# -- the crontab alternative: hourly `send` against the daemon, over a week -----------------


def arrivals(folder: Path, now: datetime) -> None:
    """The digests that have arrived by ``now``: one a day at 03:00 UTC, from MONDAY on."""
    for offset in range(15):
        day = MONDAY - timedelta(hours=3) + timedelta(days=offset)
        if day <= now and not (folder / "digests" / f"{day:%Y-%m-%d}.txt").exists():
            drop_digest(folder, day)


def deliveries(config: Path) -> list[tuple[str, str, str]]:
    with open_project_store(config.parent) as store:
        rows = Ledger(store).rows()
    return sorted((r["subscriber"], str(r["sent_at"]), r["paper_id"]) for r in rows)


def daemon_week(folder: Path, start: datetime, end: datetime) -> list[datetime]:
    """Run the daemon's jobs at each of their fire times (clock passed in); the times."""
    config = make_project(folder)
    clock = [start]
    daemon = Daemon(config, World(now=lambda: clock[0], environ=dict(STORE_ENV)))
    daemon.reload()
    daemon.schedule_jobs()
    fires = []
    for job in daemon.scheduler.get_jobs():
        when = job.trigger.get_next_fire_time(None, start)
        while when < end:
            fires.append((when, job.args[0]))
            when = job.trigger.get_next_fire_time(when, when)
    for when, slot in sorted(fires, key=lambda pair: pair[0]):
        clock[0] = when
        arrivals(folder, when)
        daemon.run_due(slot)
    return [when for when, _ in fires]


@pytest.mark.slow
def test_hourly_send_from_crontab_delivers_exactly_what_the_daemon_does(tmp_path: Path) -> None:
    start, end = MONDAY, MONDAY + timedelta(days=7)
    fire_times = daemon_week(tmp_path / "daemon", start, end)
    config = make_project(tmp_path / "cron")
    hour = start
    while hour < end:
        arrivals(tmp_path / "cron", hour)
        send(config, now=hour)
        hour += timedelta(hours=1)
    by_daemon, by_cron = deliveries(tmp_path / "daemon" / "config.yaml"), deliveries(config)
    assert by_cron == by_daemon
    digests = collections.Counter((who, when) for who, when, _ in by_cron)
    per_subscriber = collections.Counter(who for who, _ in digests)
    assert per_subscriber["daily@example.org"] == 7
    assert per_subscriber["weekly@example.org"] == 1  # on Friday only
    assert per_subscriber["evening@example.org"] == 7
    assert "paused@example.org" not in per_subscriber
    (weekly,) = [when for who, when in digests if who == "weekly@example.org"]
    assert weekly.startswith("2026-11-27T12:00")
    assert len(set(by_cron)) == len({(who, paper) for who, _, paper in by_cron})  # never twice
    assert len(fire_times) >= 15


def test_cron_mode_makes_everyone_due_at_the_cron_times(tmp_path: Path) -> None:
    config = make_project(tmp_path)
    (tmp_path / "config.yaml").write_text(
        "sender: Digest <digest@example.org>\nschedule:\n  cron: '0 5 * * *'\n"
    )
    drop_digest(tmp_path, MONDAY)
    at_five = send(config, now=MONDAY - timedelta(hours=1))  # 05:00 UTC: the cron time
    assert sent_to(at_five) == ["daily@example.org", "evening@example.org", "weekly@example.org"]
    after = send(config, now=MONDAY)
    assert reasons(after)["weekly@example.org"] == "not due until Tue 2026-11-24 00:00 EST"


def test_a_daily_crontab_send_keeps_weekly_subscribers_weekly(tmp_path: Path) -> None:
    """README's crontab line, `0 7 * * * newsletter send`: every run at 07:00 UTC."""
    config = make_project(tmp_path)
    runs = [MONDAY + timedelta(hours=1, days=d) for d in range(14)]
    for when in runs:
        arrivals(tmp_path, when)
        send(config, now=when)
    digests = {(who, when) for who, when, _ in deliveries(config)}
    per_subscriber = collections.Counter(who for who, _ in digests)
    assert per_subscriber["daily@example.org"] == 14  # one a day, at the run after 07:00 CET
    assert per_subscriber["weekly@example.org"] == 2  # the Saturday runs after each Friday
    assert per_subscriber["evening@example.org"] == 13  # from the day after it was first seen
    assert "paused@example.org" not in per_subscriber
    weekly = sorted(when for who, when in digests if who == "weekly@example.org")
    assert [when[:10] for when in weekly] == ["2026-11-28", "2026-12-05"]
