"""Send times: daily/weekly, time zones, daylight saving, missed runs (times passed in)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from newsletter.config.load import load_config
from newsletter.errors import ConfigError
from newsletter.schedule.daemon import Daemon
from newsletter.schedule.slots import Slot, cron_trigger, group_by_slot, next_fire
from newsletter.world import World
from tests.helpers import invoke
from tests.matching_helpers import subscriber

BERLIN, NEW_YORK = "Europe/Berlin", "America/New_York"


def fires(slot: Slot, start: datetime, count: int) -> list[datetime]:
    out, when = [], start
    for _ in range(count):
        when = next_fire(slot, when)
        out.append(when)
    return out


def write_project(folder: Path, config: str, profiles: str) -> Path:
    """A project with ``config`` and ``profiles`` and an empty digests folder."""
    (folder / "digests").mkdir()
    (folder / "subscribers.yaml").write_text(profiles)
    (folder / "config.yaml").write_text(config)
    return folder / "config.yaml"


def test_daily_in_a_time_zone() -> None:
    slot = Slot("daily", None, time(7, 0), BERLIN)
    now = datetime(2026, 11, 21, 6, 30, tzinfo=UTC)  # 07:30 in Berlin: today's send is past
    assert next_fire(slot, now) == datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
    early = datetime(2026, 11, 21, 5, 59, tzinfo=UTC)
    assert next_fire(slot, early) == datetime(2026, 11, 21, 6, 0, tzinfo=UTC)


def test_weekly_on_its_day() -> None:
    slot = Slot("weekly", "monday", time(7, 0), NEW_YORK)
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)  # a Saturday
    first = next_fire(slot, now)
    assert first == datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # Monday 07:00 EST
    assert [f.astimezone(ZoneInfo(NEW_YORK)).weekday() for f in fires(slot, now, 4)] == [0] * 4
    assert next_fire(slot, first) - first == timedelta(days=7)


@pytest.mark.parametrize(
    ("zone", "spring", "autumn"),
    [
        (BERLIN, date(2026, 3, 29), date(2026, 10, 25)),
        (NEW_YORK, date(2026, 3, 8), date(2026, 11, 1)),
    ],
)
@pytest.mark.parametrize("at", [time(1, 30), time(2, 30), time(7, 0), time(23, 59)])
def test_daylight_saving_never_doubles_or_skips_a_day(zone, spring, autumn, at) -> None:
    slot = Slot("daily", None, at, zone)
    for change in (spring, autumn):
        start = datetime.combine(change - timedelta(days=4), time(12), tzinfo=UTC)
        local_days = [f.astimezone(ZoneInfo(zone)).date() for f in fires(slot, start, 8)]
        expected = [local_days[0] + timedelta(days=i) for i in range(8)]
        assert local_days == expected, (zone, change, at)  # one a day, none skipped
        assert change in local_days
        for fire in fires(slot, start, 8):
            local = fire.astimezone(ZoneInfo(zone))
            in_gap = local.date() == spring and time(2) <= at < time(3)
            assert local.time() == (time(3, 0) if in_gap else at), local  # the gap's end


def test_a_send_time_inside_the_spring_gap_goes_out_just_after_it() -> None:
    slot = Slot("daily", None, time(2, 30), BERLIN)
    on_change = next_fire(slot, datetime(2026, 3, 29, 0, 0, tzinfo=UTC))
    assert on_change.astimezone(ZoneInfo(BERLIN)).strftime("%H:%M %Z") == "03:00 CEST"
    assert on_change == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # the moment the clocks jump


def test_an_ambiguous_autumn_time_goes_out_once_at_its_first_occurrence() -> None:
    slot = Slot("daily", None, time(1, 30), NEW_YORK)
    first = next_fire(slot, datetime(2026, 11, 1, 4, 0, tzinfo=UTC))
    assert first == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT, not 01:30 EST
    assert next_fire(slot, first) == datetime(2026, 11, 2, 6, 30, tzinfo=UTC)


def test_subscribers_sharing_a_slot_share_a_job() -> None:
    a = subscriber("x", email="a@example.org")
    b = subscriber("y", email="b@example.org")
    c = subscriber("z", email="c@example.org")
    from dataclasses import replace

    c = replace(c, timezone=BERLIN)
    paused = replace(subscriber("x", email="p@example.org"), frequency="paused")
    groups = group_by_slot([a, b, c, paused])
    assert [[s.email for s in group] for group in groups.values()] == [
        ["c@example.org"],
        ["a@example.org", "b@example.org"],
    ]


def test_the_daemons_jobs_catch_up_once_within_the_grace_time(tmp_path: Path) -> None:
    """The daemon's own jobs: one per shared slot, coalescing missed runs into one catch-up
    run, late by at most the configured grace time, never two at once."""
    config = write_project(
        tmp_path,
        "schedule:\n  misfire_grace_time: 1800\n",
        "subscribers:\n"
        "  - email: ada@example.org\n    keywords: [x]\n    timezone: Europe/Berlin\n"
        "  - email: bob@example.org\n    keywords: [y]\n    timezone: Europe/Berlin\n"
        "  - email: grace@example.org\n    keywords: [x]\n    frequency: weekly\n"
        "    day: tue\n    timezone: America/New_York\n",
    )
    daemon = Daemon(config, World())
    daemon.reload()
    daemon.schedule_jobs()
    jobs = {job.id: job for job in daemon.scheduler.get_jobs()}
    assert sorted(jobs) == ["daily 07:00 Europe/Berlin", "weekly tuesday 07:00 America/New_York"]
    daily = jobs["daily 07:00 Europe/Berlin"]
    assert (daily.coalesce, daily.misfire_grace_time, daily.max_instances) == (True, 1800, 1)
    # The machine slept from Monday's run until Wednesday 07:20 Berlin time: Tuesday's and
    # Wednesday's runs were missed; the catch-up is Wednesday's, 20 minutes late (in grace).
    monday = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    wednesday = daily.trigger.get_next_fire_time(
        daily.trigger.get_next_fire_time(monday, monday), monday
    )
    assert wednesday == datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
    assert timedelta(minutes=20) <= timedelta(seconds=daily.misfire_grace_time)
    after = daily.trigger.get_next_fire_time(wednesday, wednesday + timedelta(minutes=20))
    assert after == datetime(2026, 11, 26, 6, 0, tzinfo=UTC)


def test_the_daemon_schedules_one_job_in_cron_mode(tmp_path: Path) -> None:
    (tmp_path / "digests").mkdir()
    (tmp_path / "config.yaml").write_text("schedule:\n  cron: '30 6 * * mon-fri'\n")
    (tmp_path / "subscribers.yaml").write_text(
        "subscribers:\n  - email: ada@example.org\n    keywords: [x]\n"
    )
    daemon = Daemon(tmp_path / "config.yaml", World())
    daemon.reload()
    daemon.schedule_jobs()
    (job,) = daemon.scheduler.get_jobs()
    assert job.id == "cron" and job.coalesce
    friday = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)
    assert job.trigger.get_next_fire_time(None, friday) == datetime(2026, 11, 30, 6, 30, tzinfo=UTC)


def test_cron_with_seconds_as_a_sixth_field() -> None:
    trigger = cron_trigger("* * * * * */2", "UTC")
    now = datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert trigger.get_next_fire_time(None, now) == datetime(2026, 1, 1, 0, 0, 2, tzinfo=UTC)
    daily = cron_trigger("30 6 * * mon-fri", BERLIN)
    first = daily.get_next_fire_time(None, now)
    assert first.astimezone(ZoneInfo(BERLIN)).strftime("%a %H:%M") == "Thu 06:30"
    with pytest.raises(ValueError, match="5 fields"):
        cron_trigger("* * *", "UTC")
    with pytest.raises(ValueError, match="99"):
        cron_trigger("99 * * * *", "UTC")


@pytest.mark.parametrize(
    ("cron", "message"),
    [("* * *", "needs 5 fields"), ("99 * * * *", "'cron' '99 * * * *': Error validating")],
)
def test_a_bad_cron_is_a_config_problem_with_its_line(tmp_path: Path, cron, message) -> None:
    (tmp_path / "digests").mkdir()
    (tmp_path / "config.yaml").write_text(f"sender: a@example.org\nschedule:\n  cron: '{cron}'\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "config.yaml")
    (problem,) = caught.value.problems
    assert problem.startswith("config.yaml:3: ") and message in problem


def test_schedule_command_lists_next_sends(tmp_path: Path) -> None:
    config = write_project(
        tmp_path,
        "schedule:\n  send_at: '06:30'\n",
        "subscribers:\n"
        "  - email: ada@example.org\n    keywords: [x]\n    timezone: Europe/Berlin\n"
        "  - email: grace@example.org\n    keywords: [x]\n    frequency: weekly\n"
        "    day: tue\n    send_at: '08:00'\n    timezone: America/New_York\n"
        "  - email: paused@example.org\n    keywords: [x]\n    frequency: paused\n",
    )
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)  # Saturday
    result = invoke(config, "schedule", "--json", now=now)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["subscriber"], r["next_local"], r["next_utc"]) for r in rows] == [
        ("ada@example.org", "2026-11-22T06:30:00+01:00", "2026-11-22T05:30:00+00:00"),
        ("grace@example.org", "2026-11-24T08:00:00-05:00", "2026-11-24T13:00:00+00:00"),
    ]
    human = invoke(config, "schedule", now=now)
    assert human.stdout.splitlines()[-1] == "2 subscribers scheduled, 1 paused or inactive"
