"""Send slots: when each subscriber's digest is due, as local send times, computed so that
daylight-saving changes never give two sends in one day nor skip a day.

A slot is (frequency, weekday, local time, time zone). For every local calendar day the slot
fires exactly once: at the first moment the wall clock shows the send time; if that time does
not exist that day (clocks jump forward over it), at the jump itself, the first moment after
the gap (03:00 for a 02:30 send time in Berlin on the last Sunday of March). Subscribers
that share a slot share one job.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from newsletter.models import WEEKDAYS, History, Subscriber


@dataclass(frozen=True, order=True)
class Slot:
    """A shared send time."""

    frequency: str  # daily | weekly
    day: str | None  # weekday name, weekly only
    send_at: time
    timezone: str

    @property
    def label(self) -> str:
        """E.g. ``weekly monday 07:00 Europe/Berlin``."""
        when = f"weekly {self.day}" if self.frequency == "weekly" else "daily"
        return f"{when} {self.send_at:%H:%M} {self.timezone}"


def slot_of(subscriber: Subscriber) -> Slot | None:
    """The subscriber's slot, or None for someone paused or inactive."""
    if not subscriber.receives:
        return None
    day = subscriber.day if subscriber.frequency == "weekly" else None
    return Slot(subscriber.frequency, day, subscriber.send_at, subscriber.timezone)


def group_by_slot(subscribers: Iterable[Subscriber]) -> dict[Slot, list[Subscriber]]:
    """Receiving subscribers grouped by slot, slots in a stable order."""
    groups: dict[Slot, list[Subscriber]] = {}
    for subscriber in subscribers:
        slot = slot_of(subscriber)
        if slot is not None:
            groups.setdefault(slot, []).append(subscriber)
    return dict(sorted(groups.items()))


def local_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of wall-clock ``at`` on ``day`` in ``zone``: the first one when the
    time occurs twice, the moment the gap ends (the clocks jump) when it does not occur."""
    wall = datetime.combine(day, at, tzinfo=zone)
    instant = wall.replace(fold=0).astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == wall.replace(tzinfo=None):
        return instant
    return _gap_end(wall.replace(fold=1).astimezone(UTC), instant, zone)


def _gap_end(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The instant between ``before`` and ``after`` (UTC, a gap's two readings) where the
    zone's offset changes: the first moment after the gap, to the second."""
    offset = after.astimezone(zone).utcoffset()
    while after - before > timedelta(seconds=1):
        middle = before + (after - before) / 2
        if middle.astimezone(zone).utcoffset() == offset:
            after = middle
        else:
            before = middle
    return after.replace(microsecond=0)


def next_fire(slot: Slot, after: datetime) -> datetime:
    """The slot's first fire time strictly after ``after`` (an aware datetime), in UTC."""
    zone = ZoneInfo(slot.timezone)
    start = after.astimezone(zone).date() - timedelta(days=1)
    for offset in range(16):
        day = start + timedelta(days=offset)
        if slot.frequency == "weekly" and WEEKDAYS[day.weekday()] != slot.day:
            continue
        instant = local_instant(day, slot.send_at, zone)
        if instant > after:
            return instant
    raise AssertionError("a daily or weekly slot always fires within 16 days")


def previous_fire(slot: Slot, at: datetime) -> datetime:
    """The slot's last fire time at or before ``at`` (an aware datetime), in UTC."""
    zone = ZoneInfo(slot.timezone)
    today = at.astimezone(zone).date() + timedelta(days=1)
    for offset in range(16):
        day = today - timedelta(days=offset)
        if slot.frequency == "weekly" and WEEKDAYS[day.weekday()] != slot.day:
            continue
        instant = local_instant(day, slot.send_at, zone)
        if instant <= at:
            return instant
    raise AssertionError("a daily or weekly slot always fired within 16 days")


def cron_trigger(expression: str, timezone: str):  # -> CronTrigger
    """``minute hour day month day_of_week [second]``: crontab, with seconds as a sixth field.
    A ValueError says what is wrong (the config loader reports it with its line)."""
    from apscheduler.triggers.cron import CronTrigger  # only where a cron is configured

    fields = expression.split()
    if len(fields) not in (5, 6):
        raise ValueError(
            "needs 5 fields (minute hour day month day_of_week) or 6 (then seconds last)"
        )
    names = ["minute", "hour", "day", "month", "day_of_week", "second"]
    values = dict(zip(names, fields, strict=False))
    values.setdefault("second", "0")
    return CronTrigger(timezone=ZoneInfo(timezone), **values)


@dataclass(frozen=True)
class Timetable:
    """When subscribers are due: each at their own slot, or everyone at ``cron`` times.

    The one rule for ``newsletter send`` and every run of the daemon: a subscriber is due
    when their schedule fired after they were last served. One never served is due at a
    fire since a send first saw them, or within ``grace`` after any fire (so the daemon's
    own run at their slot serves them, as does a crontab send shortly after it)."""

    cron: str | None = None
    timezone: str = "UTC"  # the cron's
    grace: timedelta = timedelta(hours=1)

    def last_fire(self, subscriber: Subscriber, now: datetime) -> datetime | None:
        """The subscriber's latest scheduled time at or before ``now`` (None: never, or
        paused)."""
        return self._fire(subscriber, now, _slot_previous, _cron_previous)

    def next_fire(self, subscriber: Subscriber, now: datetime) -> datetime | None:
        """The subscriber's first scheduled time after ``now`` (None: never, or paused)."""
        return self._fire(subscriber, now, _slot_next, _cron_next)

    def fire_of(self, slot: Slot | None, now: datetime) -> datetime | None:
        """The latest fire at or before ``now`` of the cron, or else of ``slot``: which fire
        a run of the scheduler is."""
        if self.cron:
            return _cron_previous(self.cron, self.timezone, now)
        return _slot_previous(slot, now) if slot else None

    def _fire(self, subscriber: Subscriber, now: datetime, by_slot, by_cron) -> datetime | None:
        slot = slot_of(subscriber)
        if slot is None:
            return None
        return by_cron(self.cron, self.timezone, now) if self.cron else by_slot(slot, now)

    def is_due(self, subscriber: Subscriber, now: datetime, history: History | None) -> bool:
        """Is ``subscriber`` due at ``now``, given what sends recorded about them?"""
        last = self.last_fire(subscriber, now)
        if last is None:
            return False
        history = history or History()
        if history.last_served is not None:
            return last > history.last_served
        if history.first_seen is not None and last >= history.first_seen:
            return True
        return now - last <= self.grace


# One run asks the same few questions for many subscribers: cached per (slot, moment).
@functools.lru_cache(maxsize=4096)
def _slot_previous(slot: Slot, now: datetime) -> datetime:
    return previous_fire(slot, now)


@functools.lru_cache(maxsize=4096)
def _slot_next(slot: Slot, now: datetime) -> datetime:
    return next_fire(slot, now)


@functools.lru_cache(maxsize=64)
def _cron(expression: str, timezone: str):  # -> CronTrigger
    return cron_trigger(expression, timezone)


@functools.lru_cache(maxsize=256)
def _cron_next(expression: str, timezone: str, now: datetime) -> datetime | None:
    return _first_fire(expression, timezone, now + _TICK)


@functools.lru_cache(maxsize=256)
def _cron_previous(expression: str, timezone: str, now: datetime) -> datetime | None:
    """The cron's last fire at or before ``now``, by bisection over "first fire at or
    after" (a cron has no "previous fire"; about 60 steps cover ten years)."""
    low = _first_fire(expression, timezone, now - timedelta(days=3660))
    if low is None or low > now:
        return None
    end = now + _TICK  # no fire in [end, now]: the answer lies in [low, end)
    while (later := _first_fire(expression, timezone, low + _TICK)) and later < end:
        middle = low + (end - low) / 2
        found = _first_fire(expression, timezone, middle)
        if found is not None and found < end:
            low = found
        else:
            end = middle
            low = later if later < end else low
    return low


def _first_fire(expression: str, timezone: str, moment: datetime) -> datetime | None:
    """The cron's first fire at or after ``moment``, in UTC."""
    found = _cron(expression, timezone).get_next_fire_time(None, moment)
    return found.astimezone(UTC) if found else None


_TICK = timedelta(microseconds=1)


def upcoming(
    subscribers: Sequence[Subscriber], now: datetime, timetable: Timetable
) -> list[tuple[Subscriber, datetime]]:
    """Each receiving subscriber's next send time (UTC), soonest first."""
    out = []
    for subscriber in subscribers:
        when = timetable.next_fire(subscriber, now)
        if when is not None:
            out.append((subscriber, when))
    return sorted(out, key=lambda pair: (pair[1], pair[0].email))
