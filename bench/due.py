"""Who is due: the schedule rule `send` and the daemon share, for a long subscriber list.

Run:  python bench/due.py [--subscribers 100000]

Times ``Timetable.is_due`` plus ``next_fire`` (the "not due until" and "N more" times) for
every subscriber, as a send does, against the same questions answered without the per-slot
cache (each subscriber's slot worked out from scratch), side by side in one run.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from newsletter.matching.keywords import parse_keyword
from newsletter.models import History, Subscriber
from newsletter.schedule.slots import Timetable, next_fire, previous_fire, slot_of

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney"]
NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)


def subscribers(count: int) -> list[Subscriber]:
    """Daily and weekly readers spread over 24 send times and 5 zones."""
    keyword = (parse_keyword("pruning"),)
    return [
        Subscriber(
            email=f"reader{i}@example.org",
            keywords=keyword,
            timezone=ZONES[i % len(ZONES)],
            send_at=clock(i % 24, 0),
            frequency="weekly" if i % 3 == 0 else "daily",
            day="friday" if i % 3 == 0 else None,
        )
        for i in range(count)
    ]


def cached(readers: list[Subscriber], history: History) -> int:
    timetable = Timetable()
    due = 0
    for reader in readers:
        due += timetable.is_due(reader, NOW, history)
        timetable.next_fire(reader, NOW)
    return due


def uncached(readers: list[Subscriber], history: History) -> int:
    assert history.last_served is not None
    due = 0
    for reader in readers:
        slot = slot_of(reader)
        assert slot is not None
        due += previous_fire(slot, NOW) > history.last_served
        next_fire(slot, NOW)
    return due


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    args = parser.parse_args()
    readers = subscribers(args.subscribers)
    history = History(last_served=NOW - timedelta(days=1))
    results = {}
    for name, method in (("cached", cached), ("uncached", uncached)):
        start = time.perf_counter()
        due = method(readers, history)
        results[name] = (time.perf_counter() - start, due)
    assert results["cached"][1] == results["uncached"][1], results
    fast, slow = results["cached"][0], results["uncached"][0]
    print(
        f"{args.subscribers:,} subscribers, {results['cached'][1]:,} due: "
        f"{fast:.2f} s ({args.subscribers / fast:,.0f}/s) against {slow:.2f} s without the "
        f"per-slot cache: {slow / fast:.1f}x"
    )


if __name__ == "__main__":
    main()
