"""What ``newsletter schedule`` lists: each receiving subscriber's next send."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from newsletter.config.settings import ScheduleDefaults
from newsletter.models import Subscriber
from newsletter.reports import NextSend
from newsletter.schedule.slots import slot_of, upcoming


def next_sends(
    subscribers: Sequence[Subscriber], now: datetime, schedule: ScheduleDefaults
) -> list[NextSend]:
    """Each receiving subscriber's next send after ``now``, soonest first."""
    rows = []
    for subscriber, when in upcoming(subscribers, now, schedule.timetable()):
        slot = slot_of(subscriber)
        assert slot is not None  # (upcoming lists only those who receive)
        rows.append(
            NextSend(
                subscriber.email,
                f"cron {schedule.cron}" if schedule.cron else slot.label,
                subscriber.timezone,
                when.astimezone(ZoneInfo(subscriber.timezone)),
                when,
            )
        )
    return rows
