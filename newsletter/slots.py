"""Send slots: when each subscriber's digest is due, as local send times, computed so that
daylight-saving changes never give two sends in one day nor skip a day.

A slot is (frequency, weekday, local time, time zone). For every local calendar day the slot
fires exactly once: at the first moment the wall clock shows the send time; if that time does
not exist that day (clocks jump forward over it), at the same moment expressed in the offset
before the jump, which is just after the gap. Subscribers that share a slot share one job.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from newsletter.models import WEEKDAYS, Subscriber


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
    time occurs twice, the moment just after the gap when it does not occur at all."""
    return datetime.combine(day, at, tzinfo=zone).replace(fold=0).astimezone(UTC)


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


class SlotTrigger(BaseTrigger):
    """An APScheduler trigger for a slot (see ``next_fire``)."""

    def __init__(self, slot: Slot) -> None:
        self.slot = slot

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        if previous_fire_time is None:
            return next_fire(self.slot, now - timedelta(microseconds=1))
        return next_fire(self.slot, previous_fire_time)

    def __str__(self) -> str:
        return f"slot[{self.slot.label}]"


def cron_trigger(expression: str, timezone: str) -> CronTrigger:
    """``minute hour day month day_of_week [second]``: crontab, with seconds as a sixth field.
    A ValueError says what is wrong (the config loader reports it with its line)."""
    fields = expression.split()
    if len(fields) not in (5, 6):
        raise ValueError(
            "needs 5 fields (minute hour day month day_of_week) or 6 (then seconds last)"
        )
    names = ["minute", "hour", "day", "month", "day_of_week", "second"]
    values = dict(zip(names, fields, strict=False))
    values.setdefault("second", "0")
    return CronTrigger(timezone=ZoneInfo(timezone), **values)


def upcoming(
    subscribers: Sequence[Subscriber], now: datetime, cron: CronTrigger | None = None
) -> list[tuple[Subscriber, datetime]]:
    """Each receiving subscriber's next send time (UTC), soonest first."""
    out = []
    for subscriber in subscribers:
        slot = slot_of(subscriber)
        if slot is None:
            continue
        when = cron.get_next_fire_time(None, now) if cron else next_fire(slot, now)
        out.append((subscriber, when.astimezone(UTC)))
    return sorted(out, key=lambda pair: (pair[1], pair[0].email))
