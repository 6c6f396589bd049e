"""``config.yaml``: where things live, matching weights, rendering, schedule and delivery.

Every setting is declared once, as a field of its section's dataclass with its default and
its kind (and range, or choices) in ``setting(...)``; the loader reads each section by that
table and reports every problem at once with its line. Top-level keys fill ``Config`` and
the flat sections (``MatchSettings``, ``RenderSettings``); ``schedule:`` and ``smtp:`` are
mappings of their own. Each component is given the section it uses, not the whole config.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import date, time, timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email

from newsletter.errors import ConfigError
from newsletter.files.problems import Problems
from newsletter.files.yamlfile import KeyPath, load_yaml
from newsletter.models import ANNOUNCE_TYPES, DEFAULT_ANNOUNCE_TYPES
from newsletter.schedule.slots import Timetable, cron_trigger

ENV_VAR = "NEWSLETTER_CONFIG"
DEFAULT_PATH = Path("config.yaml")


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
    # The return path of every digest becomes <local>+<token>@<domain> (VERP): a bounce
    # then names its subscriber even when the report does not.
    bounce_address: str | None = setting(None, "text")
    # Gmail's feedback loop groups complaints by this header ("campaign:customer:type:sender").
    feedback_id: str | None = setting(None, "text")
    profile_help: str = setting(
        "To change your keywords or how often you hear from us, reply to this email.", "text"
    )


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
class BounceSettings:
    """How bounces are counted, and where ``newsletter run`` collects them."""

    soft_limit: int = setting(3, "int", 1, 100)  # temporary failures that suppress ...
    soft_days: int = setting(30, "int", 1, 3650)  # ... within this many days
    maildir: Path | None = setting(None, "path")  # read by `run` every `every` minutes
    every: int = setting(60, "int", 1, 7 * 24 * 60)


SOURCE_TYPES = ("hf_daily", "arxiv_rss", "arxiv_query")
DEFAULT_URLS = {
    "hf_daily": "https://huggingface.co/api/daily_papers",
    "arxiv_rss": "https://rss.arxiv.org/rss",
    "arxiv_query": "https://export.arxiv.org/api/query",
}
# Days a fetch asks by default, today included: a Hugging Face listing still grows the day
# after; the arXiv API shows a day's submissions only once announced, up to three days later
# over a weekend. Days fetched complete are not asked again, so this costs few requests.
RECENT_DAYS = {"hf_daily": 2, "arxiv_query": 4, "arxiv_rss": 1}


@dataclass(frozen=True)
class SourceSettings:
    """One place papers are fetched from (an entry of ``sources:``)."""

    name: str = setting("", "text")  # used in file names, logs and --source
    type: str = setting("hf_daily", "choice", choices=SOURCE_TYPES)
    url: str | None = setting(None, "text")  # default: the service's own, by type
    # arxiv_rss: the feed is <url>/<cat+cat>; arxiv_query: cat:A OR cat:B (read by
    # ``_Reader._words``, as announce_types is)
    categories: tuple[str, ...] = field(default=(), metadata={"list": True})
    # arxiv_rss: which announcements to read (a replacement is a paper already announced)
    announce_types: tuple[str, ...] = field(default=DEFAULT_ANNOUNCE_TYPES, metadata={"list": True})
    # arxiv_query: the API's search_query (ANDed with the categories when both are given)
    query: str | None = setting(None, "text")
    max_results: int = setting(500, "int", 1, 30000)  # arxiv_query: the most papers a day
    page_size: int = setting(100, "int", 1, 2000)  # arxiv_query: papers asked per request

    @property
    def base_url(self) -> str:
        """The URL requests start from."""
        return (self.url or DEFAULT_URLS[self.type]).rstrip("/")

    def recent_days(self, today: date) -> list[date]:
        """The days a fetch asks when none are given, oldest first (see RECENT_DAYS)."""
        return [today - timedelta(days=back) for back in reversed(range(RECENT_DAYS[self.type]))]

    def file_name(self, day: date, page: int = 1) -> str:
        """The name ``fetch`` gives a response: ``<name>-<day>.json`` (or ``.xml``, and
        ``.p2.xml`` for a query's second page)."""
        extension = "json" if self.type == "hf_daily" else "xml"
        return f"{self.name}-{day.isoformat()}{f'.p{page}' if page > 1 else ''}.{extension}"

    def fetched(self, file_name: str) -> bool:
        """Is ``file_name`` one this source's fetches write?"""
        pattern = rf"{re.escape(self.name)}-\d{{4}}-\d{{2}}-\d{{2}}(?:\.p\d+)?\.(?:json|xml)"
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
    delivery: str = setting("outbox", "choice", choices=("outbox", "smtp"))
    # "sqlite": a file in state_dir; or postgresql://user@host[:port]/database, shared by
    # workers on several hosts ($NEWSLETTER_STORE overrides it). The password only ever
    # comes from the environment: the variable store_password_env names, else libpq's own
    # (PGPASSWORD, ~/.pgpass).
    store: str = setting("sqlite", "text")
    store_password_env: str = setting("NEWSLETTER_STORE_PASSWORD", "text")
    matching: MatchSettings = section(MatchSettings, None)
    render: RenderSettings = section(RenderSettings, None)
    schedule: ScheduleDefaults = section(ScheduleDefaults, "schedule")
    smtp: SmtpSettings = section(SmtpSettings, "smtp")
    dkim: DkimSettings = section(DkimSettings, "dkim")
    fetch: FetchSettings = section(FetchSettings, "fetch")
    serve: ServeSettings = section(ServeSettings, "serve")
    workers: WorkerSettings = section(WorkerSettings, "workers")
    bounce: BounceSettings = section(BounceSettings, "bounce")
    sources: tuple[SourceSettings, ...] = field(default=(), metadata={"sources": True})

    def announce_types(self, file_name: str) -> tuple[str, ...]:
        """The arXiv announce types to read from a digest file: its source's choice when a
        source fetched it, else new and cross-lists."""
        found = (s.announce_types for s in self.sources if s.fetched(file_name))
        return next(found, DEFAULT_ANNOUNCE_TYPES)


def config_path(option: str | None, environ: Mapping[str, str] = os.environ) -> Path:
    """The config file to use: ``--config``, else $NEWSLETTER_CONFIG, else ./config.yaml."""
    if option:
        return Path(option)
    if environ.get(ENV_VAR):
        return Path(environ[ENV_VAR])
    return DEFAULT_PATH


def load_config(path: Path) -> Config:
    """Load and check ``path``; raise ConfigError listing every problem with its line."""
    if not path.exists():
        raise ConfigError(
            f"{path}: no such file; run from the project folder, or pass --config PATH "
            f"(or set {ENV_VAR})"
        )
    document = load_yaml(path)
    data = document.data if document.data is not None else {}
    if not isinstance(data, dict):
        raise ConfigError(f"{document.where(())}: the config must be a mapping of key: value")
    reader = _Reader(Problems(document), path.resolve().parent)
    config = reader.read(Config, data, (), path=path.resolve())
    _cross_checks(reader.problems, data, config)
    reader.problems.repeated_keys()
    if reader.problems.found:
        raise ConfigError(reader.problems.messages())
    return config


class _Reader:
    """Reads sections by their field tables, collecting problems."""

    def __init__(self, problems: Problems, base: Path) -> None:
        self.problems = problems
        self.base = base

    def read(self, cls: type, data: dict, at: KeyPath, flat: bool = False, **given: object) -> Any:
        """An instance of ``cls`` from ``data``; keys it does not know are reported, unless
        ``flat`` (its keys sit in ``data`` beside other sections' keys)."""
        if not flat:
            self.problems.unknown_keys(at, data, _known_keys(cls))
        values: dict[str, object] = dict(given)
        for item in fields(cls):
            meta = item.metadata
            if "section" in meta:
                values[item.name] = self._section(meta["class"], meta["section"], data, at)
            elif "sources" in meta:
                values[item.name] = self._sources(data.get("sources"), (*at, "sources"))
            elif "domains" in meta:
                values[item.name] = self._domains(data.get("domains"), (*at, "domains"))
            elif "kind" in meta and data.get(item.name) is not None:
                value = self.value((*at, item.name), data[item.name], meta["kind"])
                if value is not None:
                    values[item.name] = value
            if "kind" in meta and meta["kind"].name == "path" and item.default is not None:
                values.setdefault(item.name, self.base / item.default)  # relative to the file
        return cls(**values)

    def _section(self, cls: type, key: str | None, data: dict, at: KeyPath) -> Any:
        if key is None:
            return self.read(cls, data, at, flat=True)
        inner = data.get(key, {})
        if not isinstance(inner, dict):
            names = ", ".join(f"{name}:" for name in _setting_names(cls)[:3])
            self.problems.add((*at, key), f"'{key}' must be a mapping ({names} ...)")
            return cls()
        return self.read(cls, inner, (*at, key))

    def _sources(self, entries: object, at: KeyPath) -> tuple[SourceSettings, ...]:
        """The ``sources:`` list: each a mapping with a unique name."""
        if entries is None:
            return ()
        if not isinstance(entries, list):
            self.problems.add(at, "'sources' must be a list; start each entry with '- name: '")
            return ()
        found: list[SourceSettings] = []
        for index, entry in enumerate(entries):
            here = (*at, index)
            if not isinstance(entry, dict):
                self.problems.add(here, "each source must be a mapping: name, type, ...")
                continue
            lists = {key: self._words(entry, key, here) for key in _LISTS}
            source = self.read(SourceSettings, entry, here, **lists)
            problem = _source_problem(source, [s.name for s in found])
            if problem:
                self.problems.add(here, problem)
                continue
            found.append(source)
        return tuple(found)

    def _domains(self, entries: object, at: KeyPath) -> dict[str, DomainLimit]:
        """The ``domains:`` mapping: a recipient domain (or ``default``) to its limits."""
        if entries is None:
            return {}
        example = "gmail.com: {connections: 2, per_minute: 600}"
        if not isinstance(entries, dict):
            self.problems.add(at, f"'domains' must map domains to limits, e.g. {example}")
            return {}
        found: dict[str, DomainLimit] = {}
        for name, entry in entries.items():
            here = (*at, name)
            if not isinstance(name, str) or not (name == DEFAULT_DOMAIN or _DOMAIN.fullmatch(name)):
                self.problems.add(
                    here, f"{name!r} is not a domain name (like gmail.com) or 'default'"
                )
            elif not isinstance(entry, dict) or not entry:
                self.problems.add(
                    here,
                    f"the limits of {name} must be a mapping, e.g. {{connections: 2, "
                    "per_minute: 600}",
                )
            else:
                found[_wire_domain(name)] = self.read(DomainLimit, entry, here)
        return found

    def _words(self, entry: dict, key: str, at: KeyPath) -> tuple[str, ...]:
        """A list of words in a source entry (its default when absent)."""
        value = entry.get(key)
        if value is None:
            return _LISTS[key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problems.add((*at, key), f"'{key}' must be a list, e.g. [{_LIST_EXAMPLES[key]}]")
            return ()
        return tuple(v.strip() for v in value)

    def value(self, at: KeyPath, value: object, kind: Kind) -> object:
        """``value`` checked as ``kind`` (None, with a problem recorded, when it is not)."""
        problems = self.problems
        if kind.name == "int":
            return problems.integer(at, value, int(kind.low), int(kind.high))
        if kind.name == "number":
            return problems.number(at, value, kind.low, kind.high)
        if kind.name == "flag":
            return problems.flag(at, value)
        if kind.name == "choice":
            return problems.choice(at, value, kind.choices)
        if kind.name == "clock":
            return problems.clock(at, value)
        if kind.name == "timezone":
            return problems.timezone(at, value)
        if kind.name == "path":
            if not isinstance(value, str) or not value.strip():
                problems.add(at, f"'{at[-1]}' must be a path (a string), not {value!r}")
                return None
            return self.base / value.strip()
        return problems.text(at, value)


_LISTS = {"categories": (), "announce_types": DEFAULT_ANNOUNCE_TYPES}
_LIST_EXAMPLES = {"categories": "cs.LG, cs.CL", "announce_types": "new, cross"}
_DOMAIN = re.compile(r"(?:[^\s.@]+\.)+[^\s.@]+")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
ARXIV_CATEGORY = re.compile(r"[a-z\-]+(\.[A-Za-z\-]+)?")


def _wire_domain(name: str) -> str:
    """A domain as recipients carry it on the wire: IDNA, lower case."""
    try:
        return name.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return name.casefold()  # (never matches; a name IDNA refuses is no real domain)


def _source_problem(source: SourceSettings, earlier: list[str]) -> str | None:
    """What is wrong with a source entry, if anything."""
    if not _NAME.fullmatch(source.name):
        return "each source needs a 'name' of letters, digits, '.', '_' or '-' (it names files)"
    if source.name in earlier:
        return f"the source name '{source.name}' is used twice; give each its own"
    if source.url and not source.url.startswith(("https://", "http://")):
        return f"'url' must start with https:// (or http://), not {source.url!r}"
    return _type_problem(source)


def _type_problem(source: SourceSettings) -> str | None:
    """What is wrong with the settings that depend on the source's type."""
    bad = [c for c in source.categories if not ARXIV_CATEGORY.fullmatch(c)]
    if bad:
        return f"'{bad[0]}' is not an arXiv category (like cs.LG or math.PR)"
    unknown = [t for t in source.announce_types if t not in ANNOUNCE_TYPES]
    if unknown or not source.announce_types:
        return f"'announce_types' takes some of {', '.join(ANNOUNCE_TYPES)}" + (
            f", not '{unknown[0]}'" if unknown else ""
        )
    if source.type == "arxiv_rss" and not source.categories:
        return "an arxiv_rss source needs 'categories', e.g. [cs.LG, cs.CL]"
    if source.type == "arxiv_query" and not (source.categories or source.query):
        return (
            "an arxiv_query source needs a 'query' (the API's search_query, e.g. "
            "'abs:diffusion') or 'categories', or both"
        )
    if source.type == "hf_daily" and source.categories:
        return "'categories' is for arXiv sources; hf_daily lists every category"
    if source.type != "arxiv_query" and source.query:
        return f"'query' is for arxiv_query sources, not {source.type}"
    return None


def _cross_checks(problems: Problems, data: dict, config: Config) -> None:
    """What no single setting can say about itself."""
    _check_digests_folder(problems, config.digests)
    _check_smtp(problems, data.get("smtp"), config.smtp)
    _check_dkim(problems, config.dkim, config.render.sender)
    problem = store_url_problem(config.store)
    if problem:
        problems.add(("store",), problem)
    render, smtp = config.render, data.get("smtp")
    for key in ("public_url", "unsubscribe_url"):
        problem = public_url_problem(key, getattr(render, key))
        if problem:
            problems.add((key,), problem)
    if render.bounce_address:
        problem = bounce_address_problem(render.bounce_address)
        if problem:
            problems.add(("bounce_address",), problem)
    sender_problem = check_sender(render.sender)
    if sender_problem:
        problems.add(("sender",), sender_problem)
    if config.delivery == "smtp" and "smtp" not in data:
        problems.add(("delivery",), "delivery is smtp but there is no 'smtp:' section (host, ...)")
    if isinstance(smtp, dict) and "password" in smtp:
        problems.add(
            ("smtp", "password"),
            "never put the password in the config: set 'password_env' to the name of an "
            "environment variable that holds it",
        )
    schedule = config.schedule
    if schedule.cron:
        try:
            schedule.trigger()
        except ValueError as exc:
            problems.add(("schedule", "cron"), f"'cron' {schedule.cron!r}: {exc}")


def store_url_problem(store: str) -> str | None:
    """Why ``store`` names no store: 'sqlite', or a PostgreSQL URL without a password."""
    if store == "sqlite":
        return None
    parts = urlsplit(store)
    if parts.scheme not in ("postgresql", "postgres"):
        return (
            f"'store' {store!r} must be 'sqlite' (a file in state_dir) or a PostgreSQL URL "
            "like postgresql://newsletter@db.example.org/newsletter"
        )
    if parts.password is not None:
        return (
            "never put the password in the store URL: set 'store_password_env' to the name "
            "of an environment variable that holds it"
        )
    if not parts.path.strip("/") and "dbname=" not in parts.query:
        return f"'store' {store!r} names no database: add it, as in postgresql://user@host/db"
    return None


_LOOPBACK = ("127.0.0.1", "localhost", "[::1]", "::1")


def public_url_problem(key: str, url: str | None) -> str | None:
    """Why ``url`` cannot start the links of digests: https is required (links carry
    tokens), except on a loopback host (tests, a proxy on the same machine)."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname in _LOOPBACK:
        return None
    return f"'{key}' must start with https:// (links carry tokens), not {url!r}"


# The token VERP adds to the local part: "+" and 20 characters; local parts hold 64 at most.
VERP_LOCAL_MAX = 64 - 21


def bounce_address_problem(address: str) -> str | None:
    """What is wrong with ``bounce_address``, or None."""
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        return f"'bounce_address' {address!r} is not a valid address: {exc}"
    local = address.rpartition("@")[0]
    if "+" in local or len(local) > VERP_LOCAL_MAX:
        return (
            f"'bounce_address' needs a local part without '+' of at most {VERP_LOCAL_MAX} "
            f"characters (a token is added to it), e.g. bounces@example.org, not {address!r}"
        )
    return None


def digests_folder_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot serve as the digests folder, or None."""
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        return f"the digests folder {folder} {what}; create it, or fix 'digests'"
    if not os.access(folder, os.R_OK | os.X_OK):
        return f"the digests folder {folder} cannot be read; fix its permissions"
    return None


def _check_digests_folder(problems: Problems, folder: Path) -> None:
    problem = digests_folder_problem(folder)
    if problem:
        problems.add(("digests",), problem)


def check_sender(sender: str) -> str | None:
    """What is wrong with the ``sender`` setting, or None."""
    _, address = parseaddr(sender)
    example = "e.g. 'Digest <digest@example.org>'"
    if "@" not in address:
        return f"'sender' must hold an address, {example}, not {sender!r}"
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        return f"'sender' {address!r} is not a valid address: {exc} ({example})"
    return None


# The port each security setting is normally served on (RFC 8314 and RFC 6409).
_PORTS = {465: ("ssl",), 587: ("starttls", "none"), 25: ("starttls", "none")}


def _check_smtp(problems: Problems, data: object, smtp: SmtpSettings) -> None:
    """Settings that can only fail when the connection is made."""
    if not isinstance(data, dict):
        return
    expected = _PORTS.get(smtp.port)  # none for port 0: the port then follows the security
    if expected and smtp.security not in expected:
        problems.add(
            ("smtp", "security"),
            f"port {smtp.port} expects security: {' or '.join(expected)}, not "
            f"{smtp.security} (or use the port your provider gives for {smtp.security})",
        )
    if smtp.username and not smtp.password_env:
        problems.add(
            ("smtp", "username"),
            "'username' is set but 'password_env' is not: name the environment variable "
            "that holds the password (password_env: NEWSLETTER_SMTP_PASSWORD)",
        )


_SELECTOR = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")


def _check_dkim(problems: Problems, dkim: DkimSettings, sender: str) -> None:
    """All of dkim or none of it; a domain that aligns with the sender's (DMARC)."""
    if not dkim.enabled:
        return
    for key in ("domain", "selector"):
        if not getattr(dkim, key):
            problems.add(("dkim",), f"'dkim' needs a '{key}' (see the README, DKIM)")
    if bool(dkim.private_key_file) == bool(dkim.private_key_env):
        problems.add(
            ("dkim",),
            "'dkim' needs the private key in one place: 'private_key_file' (a PEM file) or "
            "'private_key_env' (a variable holding the PEM text)",
        )
    if dkim.selector and not _SELECTOR.fullmatch(dkim.selector):
        problems.add(
            ("dkim", "selector"),
            f"'selector' is the label before ._domainkey in DNS (like mail2026), not "
            f"{dkim.selector!r}",
        )
    if dkim.domain:
        problem = dkim_alignment_problem(dkim.domain, sender)
        if problem:
            problems.add(("dkim", "domain"), problem)


def dkim_alignment_problem(domain: str, sender: str) -> str | None:
    """Why a DKIM signature for ``domain`` would not align with ``sender`` (DMARC's relaxed
    alignment: the same domain, or one a subdomain of the other), or None."""
    if not _DOMAIN.fullmatch(domain):
        return f"'domain' must be a domain name (like example.org), not {domain!r}"
    ours = parseaddr(sender)[1].rpartition("@")[2].lower()
    theirs = domain.lower().rstrip(".")
    if ours == theirs or ours.endswith("." + theirs) or theirs.endswith("." + ours):
        return None
    return (
        f"dkim.domain {domain} does not align with the sender's domain {ours}: receivers "
        f"checking DMARC would not count the signature; sign as {ours} (or a parent domain "
        "of it)"
    )


def _setting_names(cls: type) -> list[str]:
    return [item.name for item in fields(cls) if "kind" in item.metadata]


def _known_keys(cls: type) -> list[str]:
    """Keys a mapping read as ``cls`` may hold: its settings, its flat sections' settings,
    and its nested sections' names (and, for smtp, 'password', known to say it is wrong)."""
    known = []
    for item in fields(cls):
        if "kind" in item.metadata:
            known.append(item.name)
        elif "section" in item.metadata:
            key = item.metadata["section"]
            known.extend([key] if key else _setting_names(item.metadata["class"]))
        elif item.metadata:  # a list read on its own (sources, categories)
            known.append(item.name)
    return [*known, "password"] if cls is SmtpSettings else known
