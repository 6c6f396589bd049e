"""A lost connection is weather: the step runs again once a reconnection succeeds, the
pauses between tries double up to 5 s, and a database away past the window ends it."""

from __future__ import annotations

import pytest

from newsletter.errors import StoreError, StoreUnavailable
from newsletter.store.weather import Weather


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


class FlakyDatabase:
    """Refuses ``refusals`` reconnections, then takes them."""

    where = "postgresql://db.example/newsletter"

    def __init__(self, refusals: int, error: StoreError | None = None) -> None:
        self.refusals = refusals
        self.error = error
        self.reconnects = 0

    def reconnect(self) -> None:
        self.reconnects += 1
        if self.error is not None:
            raise self.error
        if self.reconnects <= self.refusals:
            raise StoreUnavailable("cannot connect to the PostgreSQL store: refused")


def losing(times: int) -> tuple[list[int], object]:
    calls: list[int] = []

    def step() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise StoreUnavailable("lost the connection to the PostgreSQL store")
        return "done"

    return calls, step


def test_a_step_that_lost_its_connection_runs_again_after_the_reconnection() -> None:
    clock, db = FakeClock(), FlakyDatabase(refusals=3)
    calls, step = losing(1)
    assert Weather(db, 300, clock.monotonic, clock.sleep).run(step) == "done"
    assert len(calls) == 2
    assert db.reconnects == 4
    assert clock.pauses == [0.25, 0.5, 1.0, 2.0]


def test_the_pauses_double_up_to_five_seconds() -> None:
    clock, db = FakeClock(), FlakyDatabase(refusals=8)
    _, step = losing(1)
    Weather(db, 300, clock.monotonic, clock.sleep).run(step)
    assert clock.pauses == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0]


def test_each_loss_gets_a_window_of_its_own() -> None:
    clock, db = FakeClock(), FlakyDatabase(refusals=0)
    calls, step = losing(5)
    Weather(db, 1, clock.monotonic, clock.sleep).run(step)
    assert len(calls) == 6


def test_a_database_away_past_the_window_ends_it_saying_what_to_do() -> None:
    clock, db = FakeClock(), FlakyDatabase(refusals=1000)
    _, step = losing(1)
    with pytest.raises(StoreUnavailable) as raised:
        Weather(db, 10, clock.monotonic, clock.sleep).run(step)
    assert clock.now == 10  # (the last pause ends at the window, not past it)
    message = str(raised.value)
    assert "store_retry (10 s)" in message and "newsletter send" in message


def test_a_store_error_that_is_not_weather_ends_it_at_once() -> None:
    clock = FakeClock()
    db = FlakyDatabase(refusals=0, error=StoreError("password authentication failed"))
    _, step = losing(1)
    with pytest.raises(StoreError, match="password authentication failed"):
        Weather(db, 300, clock.monotonic, clock.sleep).run(step)
    assert db.reconnects == 1
