"""A lost database connection is weather: a step that meets one waits for the database
(reconnecting with backoff) and runs again, within the ``store_retry`` window; only a
database that stays away longer ends the command."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from newsletter.errors import StoreError, StoreUnavailable
from newsletter.store.database import SharedDatabase

log = logging.getLogger("newsletter.store")

T = TypeVar("T")

_FIRST_PAUSE = 0.25  # seconds before the first reconnection; doubling up to _LONGEST
_LONGEST = 5.0


class Weather:
    """Runs steps on ``db`` through lost connections, within ``window`` seconds of the loss
    (``clock`` and ``sleep`` from the world)."""

    def __init__(
        self,
        db: SharedDatabase,
        window: float,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        self.db = db
        self.window = window
        self.clock = clock
        self.sleep = sleep

    def run(self, step: Callable[[], T]) -> T:
        """``step()``, run again after each lost connection once the database is back."""
        while True:
            try:
                return step()
            except StoreUnavailable as lost:
                self.wait_for_database(lost)

    def wait_for_database(self, lost: StoreUnavailable) -> None:
        """Reconnect with backoff; StoreUnavailable once ``window`` seconds have passed."""
        log.warning("%s; reconnecting (for up to %g s: store_retry)", lost, self.window)
        started, pause = self.clock(), _FIRST_PAUSE
        while True:
            waited = self.clock() - started
            if waited >= self.window:
                raise StoreUnavailable(
                    f"{lost}; it stayed away longer than store_retry ({self.window:g} s), so "
                    "this command stopped: what the server had accepted and was not recorded "
                    "goes again as it was (same Message-ID); run `newsletter send` again once "
                    "the database is back, and it finishes the run"
                ) from lost
            self.sleep(min(pause, self.window - waited))
            pause = min(pause * 2, _LONGEST)
            try:
                self.db.reconnect()
            except StoreUnavailable:
                continue
            except StoreError:
                raise
            log.warning("reconnected to %s", self.db.where)
            return
