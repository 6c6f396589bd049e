"""``config.yaml``: where things live, matching weights, rendering, schedule and delivery.

Every setting is declared once, as a field of its section's dataclass with its default and
its kind (and range, or choices) in ``setting(...)``; the loader reads each section by that
table and reports every problem at once with its line. Top-level keys fill ``Config`` and
the flat sections (``MatchSettings``, ``RenderSettings``); ``schedule:`` and ``smtp:`` are
mappings of their own. Each component is given the section it uses, not the whole config.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time, timedelta
from pathlib import Path
from typing import Any

from newsletter.models import DEFAULT_ANNOUNCE_TYPES, WEEKDAYS
from newsletter.schedule.slots import Timetable, cron_trigger


@dataclass(frozen=True)
class Kind:
    """What a setting may hold: ``int``, ``number``, ``text``, ``path``, ``flag``, ``choice``,
    ``clock`` or ``timezone``; numbers within ``low``..``high``."""

    name: str
    low: float = 0
    high: float = 0
    choices: tuple[str, ...] = ()


def setting(default: Any, kind: str, low: float = 0, high: float = 0, choices=()) -> Any:
    """A dataclass field that is also a key of the config file."""
    return field(default=default, metadata={"kind": Kind(kind, low, high, tuple(choices))})


def word_list(default: tuple[str, ...], example: str) -> Any:
    """A dataclass field holding a list of words (``example``: what the error shows)."""
    return field(default=default, metadata={"list": example})


def section(cls: type, key: str | None) -> Any:
    """A dataclass field holding a section: a mapping under ``key``, or flat keys (None)."""
    return field(default_factory=cls, metadata={"section": key, "class": cls})


@dataclass(frozen=True)
class MatchSettings:
    """How papers are scored and which count as new."""

    title_weight: int = setting(3, "int", 0, 1000)
    abstract_weight: int = setting(1, "int", 0, 1000)
    lookback_days: int = setting(7, "int", 1, 3650)


@dataclass(frozen=True)
class ScheduleDefaults:
    """What a subscriber without ``send_at`` / ``timezone`` gets; or one global crontab."""

    send_at: time = setting(time(7, 0), "clock")
    timezone: str = setting("UTC", "timezone")
    cron: str | None = setting(None, "text")  # instead of per-subscriber slots
    # seconds a missed run may be late and still run (once)
    misfire_grace_time: int = setting(3600, "int", 1, 7 * 86400)

    def trigger(self):  # -> CronTrigger | None
        """The cron trigger (checked when the config was loaded), or None."""
        return cron_trigger(self.cron, self.timezone) if self.cron else None

    def timetable(self) -> Timetable:
        """Who is due when: the rule ``send`` and the daemon share."""
        grace = timedelta(seconds=self.misfire_grace_time)
        return Timetable(self.cron, self.timezone, grace)


@dataclass(frozen=True)
class RenderSettings:
    """How digests look and which headers they carry."""

    sender: str = setting("Research digest <digest@example.org>", "text")
    abstract_chars: int = setting(600, "int", 80, 20000)  # abstracts are shortened to this
    send_empty: bool = setting(False, "flag")  # a short "nothing matched" note, not nothing
    list_id: str | None = setting(None, "text")  # default: from the sender's address
    unsubscribe_mailto: str | None = setting(None, "text")  # default: unsubscribe@<domain>
    # Where `newsletter serve` is reached (behind the proxy): the links of every digest
    # (unsubscribe, preferences, web copy, feed, feedback) start with it.
    public_url: str | None = setting(None, "text")
    unsubscribe_url: str | None = setting(None, "text")  # default: <public_url>/unsubscribe
    unsubscribe_secret_env: str = setting("NEWSLETTER_UNSUBSCRIBE_SECRET", "text")
    # After rotating the secret: the variable holding the old one, honoured for links
    # issued up to secret_grace_days before.
    previous_secret_env: str | None = setting(None, "text")
    secret_grace_days: int = setting(60, "int", 0, 3650)
    # Every link expires this long after its digest was sent (a year-old one still works);
    # an expired link's page offers to mail a fresh one.
    link_max_age_days: int = setting(400, "int", 1, 3650)
    # The return path of every digest becomes <local>+<token>@<domain> (VERP): a bounce
    # then names its subscriber even when the report does not.
    bounce_address: str | None = setting(None, "text")
    # Gmail's feedback loop groups complaints by this header ("campaign:customer:type:sender").
    feedback_id: str | None = setting(None, "text")
    # The footer's help line (default: where a reader changes their profile, in their words:
    # the preferences page when public_url is set, else a reply).
    profile_help: str | None = setting(None, "text")


@dataclass(frozen=True)
class RateSettings:
    """How fast the SMTP server is fed: a pace, and the caps the provider counts (over a
    rolling hour and day, with what earlier runs sent)."""

    per_second: float | None = setting(None, "number", 0.001, 100000)
    per_hour: int | None = setting(None, "int", 1, 10**9)
    per_day: int | None = setting(None, "int", 1, 10**9)


@dataclass(frozen=True)
class DomainLimit:
    """For one recipient domain (or ``default``: each domain not named): messages on their
    way to it at once, and a pace."""

    connections: int | None = setting(None, "int", 1, 32)
    per_minute: float | None = setting(None, "number", 0.01, 10**6)


DEFAULT_DOMAIN = "default"


@dataclass(frozen=True)
class SmtpSettings:
    """How to reach the SMTP server (the password itself only ever comes from the env)."""

    host: str = setting("localhost", "text")
    port: int = setting(0, "int", 1, 65535)  # 0: 465 for ssl, 587 for starttls, 25 for none
    security: str = setting("starttls", "choice", choices=("none", "starttls", "ssl"))
    username: str | None = setting(None, "text")
    password_env: str | None = setting(None, "text")  # the variable holding the password
    timeout: int = setting(30, "int", 1, 3600)
    # One message may take this long in all (a server that answers a byte at a time never
    # trips ``timeout``); past it the connection is cut and the message tried again later.
    message_timeout: int = setting(120, "int", 1, 86400)
    connections: int = setting(2, "int", 1, 32)
    max_attempts: int = setting(3, "int", 1, 20)
    retry_delay: float = setting(1.0, "number", 0, 600)  # before the first retry; doubles
    ca_file: Path | None = setting(None, "path")
    # The name EHLO gives (default: this host's FQDN when it has a dot, else the sender's
    # domain; never an address literal, which many servers score as spam).
    helo_name: str | None = setting(None, "text")
    rate: RateSettings = section(RateSettings, "rate")
    # recipient domain (casefolded) or "default" -> its limits
    domains: Mapping[str, DomainLimit] = field(default_factory=dict, metadata={"domains": True})

    @property
    def effective_port(self) -> int:
        """The port to connect to."""
        return self.port or {"ssl": 465, "starttls": 587, "none": 25}[self.security]


@dataclass(frozen=True)
class DkimSettings:
    """DKIM signing: the domain and selector of the DNS record holding the public key, and
    the private key (a PEM file, or an environment variable holding the PEM text)."""

    domain: str | None = setting(None, "text")
    selector: str | None = setting(None, "text")
    private_key_file: Path | None = setting(None, "path")
    private_key_env: str | None = setting(None, "text")

    @property
    def enabled(self) -> bool:
        """Is anything of DKIM configured (then all of it must be)?"""
        return any((self.domain, self.selector, self.private_key_file, self.private_key_env))


@dataclass(frozen=True)
class WorkerSettings:
    """Sends shared by workers (a PostgreSQL store): how many subscribers a chunk holds, how
    long a claim on one lasts unless renewed, and how often an idle worker looks for work."""

    chunk_size: int = setting(200, "int", 1, 100_000)
    lease: int = setting(60, "int", 2, 3600)  # seconds; renewed every quarter of it
    poll: float = setting(1.0, "number", 0.05, 60)  # seconds
    # seconds between a follower's tries to lead the schedule (and the leader's checks)
    leader_poll: float = setting(5.0, "number", 0.1, 30)


@dataclass(frozen=True)
class ServeSettings:
    """``newsletter serve``: where it listens (behind a reverse proxy doing TLS)."""

    host: str = setting("127.0.0.1", "text")
    port: int = setting(8080, "int", 1, 65535)
    threads: int = setting(4, "int", 1, 64)
    max_body: int = setting(65536, "int", 1024, 10_000_000)  # bytes a request may send


@dataclass(frozen=True)
class SignupDefaults:
    """What an entry added by a confirmed sign-up gets besides its email and keywords (the
    reader picks frequency, day and time zone on the form; these are its defaults)."""

    frequency: str = setting("daily", "choice", choices=("daily", "weekly"))
    day: str = setting("monday", "choice", choices=WEEKDAYS)  # of a weekly digest
    send_at: time = setting(time(7, 0), "clock")
    timezone: str = setting("UTC", "timezone")


@dataclass(frozen=True)
class SignupLimits:
    """How many confirmation mails the form may cause: to one address, and in all."""

    per_address_hours: int = setting(24, "int", 1, 24 * 365)  # one mail an address per window
    per_hour: int = setting(200, "int", 1, 1_000_000)  # all of them together


@dataclass(frozen=True)
class SubscribeSettings:
    """The sign-up page of ``newsletter serve`` (double opt-in): off unless enabled."""

    enabled: bool = setting(False, "flag")  # /subscribe answers 404 while false
    confirm_hours: int = setting(48, "int", 1, 24 * 30)  # a confirmation link works this long
    domains: tuple[str, ...] = word_list((), "uni-example.edu")  # empty: any domain
    defaults: SignupDefaults = section(SignupDefaults, "defaults")
    limits: SignupLimits = section(SignupLimits, "limits")

    def admits(self, address: str) -> bool:
        """May ``address`` sign up (its domain, or a subdomain of one, is allowed)?"""
        if not self.domains:
            return True
        domain = address.rpartition("@")[2].casefold()
        return any(
            domain == d.casefold() or domain.endswith("." + d.casefold()) for d in self.domains
        )


@dataclass(frozen=True)
class ImapSettings:
    """A mailbox of bounce and unsubscribe mail on an IMAP server (``host`` unset: none).
    Its unseen messages are read and marked seen once acted on; the password only ever
    comes from the environment."""

    host: str | None = setting(None, "text")
    port: int = setting(0, "int", 1, 65535)  # 0: 993 for ssl, 143 for starttls or none
    security: str = setting("ssl", "choice", choices=("none", "starttls", "ssl"))
    username: str | None = setting(None, "text")
    password_env: str | None = setting(None, "text")  # the variable holding the password
    folder: str = setting("INBOX", "text")
    timeout: int = setting(30, "int", 1, 3600)
    ca_file: Path | None = setting(None, "path")

    @property
    def effective_port(self) -> int:
        """The port to connect to."""
        return self.port or (993 if self.security == "ssl" else 143)


@dataclass(frozen=True)
class BounceSettings:
    """How bounces are counted, and where ``newsletter run`` collects them."""

    soft_limit: int = setting(3, "int", 1, 100)  # temporary failures that suppress ...
    soft_days: int = setting(30, "int", 1, 3650)  # ... within this many days
    maildir: Path | None = setting(None, "path")  # read by `run` every `every` minutes
    every: int = setting(60, "int", 1, 7 * 24 * 60)
    imap: ImapSettings = section(ImapSettings, "imap")  # read beside (or instead of) maildir


@dataclass(frozen=True)
class SourceSettings:
    """One place papers are fetched from (an entry of ``sources:``)."""

    name: str = setting("", "text")  # used in file names, logs and --source
    type: str = setting("hf_daily", "source_type")  # a kind in sources.registry
    url: str | None = setting(None, "text")  # default: the service's own, by type
    # arxiv_rss: the feed is <url>/<cat+cat>; arxiv_query: cat:A OR cat:B (read by
    # ``_Reader._words``, as announce_types is)
    categories: tuple[str, ...] = word_list((), "cs.LG, cs.CL")
    # arxiv_rss: which announcements to read (a replacement is a paper already announced)
    announce_types: tuple[str, ...] = word_list(DEFAULT_ANNOUNCE_TYPES, "new, cross")
    # arxiv_query: the API's search_query (ANDed with the categories when both are given)
    query: str | None = setting(None, "text")
    max_results: int = setting(500, "int", 1, 30000)  # arxiv_query: the most papers a day
    page_size: int = setting(100, "int", 1, 2000)  # arxiv_query: papers asked per request

    def fetched(self, file_name: str) -> bool:
        """Is ``file_name`` one this source's fetches write?"""
        pattern = rf"{re.escape(self.name)}-\d{{4}}-\d{{2}}-\d{{2}}(?:\.p\d+)?\.[a-z0-9]+"
        return re.fullmatch(pattern, file_name) is not None


@dataclass(frozen=True)
class FetchSettings:
    """How sources are fetched."""

    contact: str | None = setting(None, "text")  # an address for the User-Agent
    timeout: float = setting(30.0, "number", 1, 600)  # seconds per request
    max_attempts: int = setting(4, "int", 1, 20)  # tries of a 429, 5xx or dropped request
    retry_delay: float = setting(2.0, "number", 0, 600)  # before the first retry; doubles
    max_retry_after: float = setting(300.0, "number", 0, 3600)  # the most Retry-After waited
    stale_after: int = setting(3, "int", 1, 365)  # days without new papers: a stale source
    every: int = setting(0, "int", 0, 7 * 24 * 60)  # minutes between fetches of `run` (0: only
    # before each send run)


@dataclass(frozen=True)
class Config:
    """Settings with every path made absolute."""

    path: Path
    digests: Path = setting(Path("digests"), "path")
    state_dir: Path = setting(Path("state"), "path")
    subscribers: Path = setting(Path("subscribers.yaml"), "path")
    templates: Path = setting(Path("templates"), "path")
    outbox_dir: Path = setting(Path("outbox"), "path")
    delivery: str = setting("outbox", "transport")  # a name in delivery.registry
    # "sqlite": a file in state_dir; or postgresql://user@host[:port]/database, shared by
    # workers on several hosts ($NEWSLETTER_STORE overrides it). The password only ever
    # comes from the environment: the variable store_password_env names, else libpq's own
    # (PGPASSWORD, ~/.pgpass).
    store: str = setting("sqlite", "text")
    store_password_env: str = setting("NEWSLETTER_STORE_PASSWORD", "text")
    # seconds a send, a worker or the scheduler waits for a PostgreSQL store that went away
    # (a restart, a failover, a network cut), reconnecting with backoff, before giving up
    store_retry: int = setting(300, "int", 0, 86400)
    matching: MatchSettings = section(MatchSettings, None)
    render: RenderSettings = section(RenderSettings, None)
    schedule: ScheduleDefaults = section(ScheduleDefaults, "schedule")
    smtp: SmtpSettings = section(SmtpSettings, "smtp")
    dkim: DkimSettings = section(DkimSettings, "dkim")
    fetch: FetchSettings = section(FetchSettings, "fetch")
    serve: ServeSettings = section(ServeSettings, "serve")
    workers: WorkerSettings = section(WorkerSettings, "workers")
    bounce: BounceSettings = section(BounceSettings, "bounce")
    subscribe: SubscribeSettings = section(SubscribeSettings, "subscribe")
    sources: tuple[SourceSettings, ...] = field(default=(), metadata={"sources": True})

    def announce_types(self, file_name: str) -> tuple[str, ...]:
        """The arXiv announce types to read from a digest file: its source's choice when a
        source fetched it, else new and cross-lists."""
        found = (s.announce_types for s in self.sources if s.fetched(file_name))
        return next(found, DEFAULT_ANNOUNCE_TYPES)
