"""Pacing: when each message may be handed to the SMTP server (``smtp.rate``, ``smtp.domains``).

- A pace, ``per_second``: a token bucket holding a tenth of a second's worth at most, so
  messages go out evenly rather than in bursts.
- Caps, ``per_hour`` and ``per_day``, counted as providers count them: over a rolling window,
  the messages of earlier runs included (from the ledger). Once one is reached nothing more
  is handed over; the rest stays due and ``CapReached`` says when the cap lets more go.
- Per recipient domain: messages on their way at once (``connections``) and a pace
  (``per_minute``); ``default`` applies to each domain not named. A message held back for its
  domain does not hold back the others: ``deliver`` looks ``lookahead`` messages ahead.

Time comes from the clock passed in, so tests run hours of pacing without waiting.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from newsletter.config.settings import DEFAULT_DOMAIN, DomainLimit, SmtpSettings
from newsletter.models import Envelope
from newsletter.reports import CapReached

# Messages looked at ahead of one held back for its domain; each is rendered (~50 KB) and
# recorded as pending, so the window stays small.
LOOKAHEAD = 256
BURST_SECONDS = 0.1  # a bucket holds this long's worth of messages (at least one)


class Addressed(Protocol):
    """A message, as far as pacing cares: where it goes."""

    @property
    def envelope(self) -> Envelope: ...


@dataclass(frozen=True)
class Clock:
    """Seconds from a monotonic clock, and a way to wait; tests pass a fake one."""

    monotonic: Callable[[], float]
    sleep: Callable[[float], None]


class Bucket:
    """A token bucket: ``rate`` tokens a second, holding ``BURST_SECONDS`` worth (one at least)."""

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate * BURST_SECONDS)
        self.tokens = 1.0  # (not full: a run starts at the pace, not with a burst)
        self.at = now

    def wait(self, now: float) -> float:
        """Seconds until a token is there (0: now)."""
        self._fill(now)
        # (a token short by a rounding error is there: a wait of 1e-17 s would not move a
        # clock that is far from zero)
        return 0.0 if self.tokens >= 1 - 1e-9 else (1 - self.tokens) / self.rate

    def take(self, now: float) -> None:
        """Use a token (the caller waited for it)."""
        self._fill(now)
        self.tokens -= 1

    def _fill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now


class Cap:
    """At most ``cap`` messages in any ``window``, counting those sent before this run."""

    def __init__(self, limit: str, cap: int, window: timedelta, earlier: Iterable[datetime]):
        self.limit = limit
        self.cap = cap
        self.window = window
        self.times: deque[datetime] = deque(sorted(earlier))

    def reached(self, now: datetime) -> CapReached | None:
        """The cap, with when it lets one more go, if it is reached at ``now``."""
        while self.times and self.times[0] <= now - self.window:
            self.times.popleft()
        if len(self.times) < self.cap:
            return None
        return CapReached(self.limit, self.cap, self.times[-self.cap] + self.window)

    def take(self, now: datetime) -> None:
        """One more message goes out at ``now``."""
        self.times.append(now)


class Pacer:
    """Decides which waiting message may be handed over now, or how long to wait."""

    def __init__(
        self,
        smtp: SmtpSettings,
        clock: Clock,
        started: datetime,
        earlier: Sequence[datetime] = (),
        pace: bool = True,
    ) -> None:
        self.clock = clock
        self.started = started  # wall time at ``self.zero`` on the monotonic clock
        self.zero = clock.monotonic()
        rate = smtp.rate
        self.bucket = Bucket(rate.per_second, self.zero) if pace and rate.per_second else None
        self.caps = [
            Cap(limit, cap, window, (t for t in earlier if t > started - window))
            for limit, cap, window in (
                ("per_hour", rate.per_hour, timedelta(hours=1)),
                ("per_day", rate.per_day, timedelta(days=1)),
            )
            if cap
        ]
        self.domains = dict(smtp.domains) if pace else {}
        self.buckets: dict[str, Bucket] = {}  # per domain with a per_minute
        self.flying: Counter[str] = Counter()  # domain -> messages handed over, not finished
        self.lookahead = LOOKAHEAD if self.domains else 1
        self.capped: CapReached | None = None

    @property
    def limits_nothing(self) -> bool:
        """No rate, no cap, no per-domain limit: every message may go at once."""
        return self.bucket is None and not self.caps and not self.domains

    def now(self) -> datetime:
        """The wall time, as the clock passed in has moved on since the start."""
        return self.started + timedelta(seconds=self.clock.monotonic() - self.zero)

    def check_caps(self) -> bool:
        """True (and ``capped`` set) once a cap is reached: hand over nothing more."""
        if not self.caps:
            return False  # (asked before every hand-over: no clock reading when uncapped)
        now = self.now()
        for cap in self.caps:
            self.capped = self.capped or cap.reached(now)
        return self.capped is not None

    def next_ready(self, waiting: Sequence[Addressed]) -> tuple[int | None, float]:
        """The index of the first message that may go now, or None and the seconds until
        one may (``inf``: until a message on its way finishes)."""
        now = self.clock.monotonic()
        if self.bucket is not None and (wait := self.bucket.wait(now)) > 0:
            return None, wait
        soonest = math.inf
        for index, item in enumerate(waiting):
            domain = recipient_domain(item.envelope)
            limit = self._limit(domain)
            if limit is None:
                return index, 0.0
            if limit.connections is not None and self.flying[domain] >= limit.connections:
                continue
            wait = self._domain_bucket(domain, limit, now)
            if wait <= 0:
                return index, 0.0
            soonest = min(soonest, wait)
        return None, soonest

    def handed(self, item: Addressed) -> None:
        """The message goes out now."""
        now = self.clock.monotonic()
        if self.bucket is not None:
            self.bucket.take(now)
        if self.caps:
            wall = self.now()
            for cap in self.caps:
                cap.take(wall)
        domain = recipient_domain(item.envelope)
        self.flying[domain] += 1
        if domain in self.buckets:
            self.buckets[domain].take(now)

    def finished(self, item: Addressed) -> None:
        """The message was accepted, or failed: its domain has one fewer on the way."""
        self.flying[recipient_domain(item.envelope)] -= 1

    def sleep(self, seconds: float) -> None:
        """Wait on the clock passed in."""
        self.clock.sleep(seconds)

    def _limit(self, domain: str) -> DomainLimit | None:
        return self.domains.get(domain) or self.domains.get(DEFAULT_DOMAIN)

    def _domain_bucket(self, domain: str, limit: DomainLimit, now: float) -> float:
        """Seconds until ``domain``'s pace lets a message go (0: now, or no pace)."""
        if limit.per_minute is None:
            return 0.0
        bucket = self.buckets.get(domain)
        if bucket is None:
            bucket = self.buckets[domain] = Bucket(limit.per_minute / 60, now)
        return bucket.wait(now)


def recipient_domain(envelope: Envelope) -> str:
    """The domain of the envelope's recipient, casefolded."""
    return envelope.recipient.rpartition("@")[2].casefold()


def unlimited(clock: Clock, started: datetime) -> Pacer:
    """A pacer that lets every message go at once."""
    return Pacer(SmtpSettings(), clock, started)
