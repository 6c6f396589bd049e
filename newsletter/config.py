"""``config.yaml``: where things live, matching weights, schedule defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path

from newsletter.checks import Problems
from newsletter.errors import ConfigError
from newsletter.yamlfile import load_yaml

ENV_VAR = "NEWSLETTER_CONFIG"
DEFAULT_PATH = Path("config.yaml")

# key -> default; every value is a path relative to the config file's folder.
_PATH_KEYS = {
    "digests": "digests",
    "state_dir": "state",
    "subscribers": "subscribers.yaml",
    "templates": "templates",
    "outbox_dir": "outbox",
}
# key -> (default, lowest, highest)
_NUMBER_KEYS = {
    "title_weight": (3, 0, 1000),
    "abstract_weight": (1, 0, 1000),
    "lookback_days": (7, 1, 3650),
    "abstract_chars": (600, 80, 20000),
}
# key -> default (None: unset); text values.
_TEXT_KEYS = {
    "sender": "Research digest <digest@example.org>",
    "list_id": None,
    "unsubscribe_mailto": None,
    "unsubscribe_url": None,
    "unsubscribe_secret_env": "NEWSLETTER_UNSUBSCRIBE_SECRET",
    "profile_help": "To change your keywords or how often you hear from us, reply to this email.",
}
_SCHEDULE_KEYS = ("send_at", "timezone", "cron", "misfire_grace_time")
_KEYS = [*_PATH_KEYS, *_NUMBER_KEYS, *_TEXT_KEYS, "send_empty", "schedule", "delivery", "smtp"]
DELIVERIES = ("outbox", "smtp")
SECURITY = ("none", "starttls", "ssl")
# smtp key -> (default, lowest, highest) for numbers
_SMTP_NUMBERS = {
    "port": (0, 1, 65535),
    "timeout": (30, 1, 3600),
    "connections": (2, 1, 32),
    "max_attempts": (3, 1, 20),
}
_SMTP_KEYS = (
    "host", "security", "username", "password_env", "ca_file", "retry_delay", *_SMTP_NUMBERS,
    "password",  # known only to explain why it must not be here
)  # fmt: skip


@dataclass(frozen=True)
class MatchSettings:
    """How papers are scored and which count as new."""

    title_weight: int = 3
    abstract_weight: int = 1
    lookback_days: int = 7


@dataclass(frozen=True)
class ScheduleDefaults:
    """What a subscriber without ``send_at`` / ``timezone`` gets."""

    send_at: time = time(7, 0)
    timezone: str = "UTC"
    cron: str | None = None  # one global crontab instead of per-subscriber slots
    misfire_grace_time: int = 3600  # seconds a missed run may be late and still run (once)


@dataclass(frozen=True)
class RenderSettings:
    """How digests look and which headers they carry."""

    sender: str = _TEXT_KEYS["sender"]  # type: ignore[assignment]
    abstract_chars: int = 600  # abstracts are shortened to this in HTML
    send_empty: bool = False  # send a short "nothing matched" note instead of nothing
    list_id: str | None = None  # default: derived from the sender's domain
    unsubscribe_mailto: str | None = None  # default: unsubscribe@<sender's domain>
    unsubscribe_url: str | None = None  # https form for one-click unsubscribe, if any
    unsubscribe_secret_env: str = "NEWSLETTER_UNSUBSCRIBE_SECRET"
    profile_help: str = _TEXT_KEYS["profile_help"]  # type: ignore[assignment]


@dataclass(frozen=True)
class SmtpSettings:
    """How to reach the SMTP server (the password itself only ever comes from the env)."""

    host: str = "localhost"
    port: int = 0  # 0: 465 for ssl, 587 for starttls, 25 for none
    security: str = "starttls"  # none | starttls | ssl
    username: str | None = None
    password_env: str | None = None  # name of the environment variable holding the password
    timeout: int = 30
    connections: int = 2
    max_attempts: int = 3
    retry_delay: float = 1.0  # seconds before the first retry; doubles with each attempt
    ca_file: Path | None = None

    @property
    def effective_port(self) -> int:
        """The port to connect to."""
        return self.port or {"ssl": 465, "starttls": 587, "none": 25}[self.security]


@dataclass(frozen=True)
class Config:
    """Settings with every path made absolute."""

    path: Path
    digests: Path
    state_dir: Path
    subscribers: Path
    templates: Path
    matching: MatchSettings = field(default_factory=MatchSettings)
    schedule: ScheduleDefaults = field(default_factory=ScheduleDefaults)
    render: RenderSettings = field(default_factory=RenderSettings)
    delivery: str = "outbox"  # outbox | smtp
    outbox_dir: Path = Path("outbox")
    smtp: SmtpSettings = field(default_factory=SmtpSettings)


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
    problems = Problems(document)
    problems.unknown_keys((), data, _KEYS)
    problems.repeated_keys()
    base = path.resolve().parent
    paths = {key: base / _path(problems, data, key, default) for key, default in _PATH_KEYS.items()}
    numbers = {key: _number(problems, data, key, *limits) for key, limits in _NUMBER_KEYS.items()}
    texts = {key: _text(problems, data, key, default) for key, default in _TEXT_KEYS.items()}
    send_empty = (
        problems.flag(("send_empty",), data["send_empty"]) if "send_empty" in data else False
    )
    _check_urls(problems, texts)
    schedule = _schedule(problems, data.get("schedule", {}))
    delivery = data.get("delivery", "outbox")
    if "delivery" in data:
        delivery = problems.choice(("delivery",), delivery, DELIVERIES) or "outbox"
    smtp = _smtp(problems, data.get("smtp", {}), base)
    if delivery == "smtp" and "smtp" not in data:
        problems.add(("delivery",), "delivery is smtp but there is no 'smtp:' section (host, ...)")
    if problems.found:
        raise ConfigError("\n".join(problems.messages()))
    abstract_chars = numbers.pop("abstract_chars")
    render = RenderSettings(abstract_chars=abstract_chars, send_empty=bool(send_empty), **texts)
    return Config(
        path=path.resolve(),
        matching=MatchSettings(**numbers),
        schedule=schedule,
        render=render,
        delivery=delivery,
        smtp=smtp,
        **paths,
    )


def _path(problems: Problems, data: dict, key: str, default: str) -> str:
    value = data.get(key, default)
    if not isinstance(value, str) or not value.strip():
        problems.add((key,), f"'{key}' must be a path (a string), not {value!r}")
        return default
    return value


def _number(problems: Problems, data: dict, key: str, default: int, low: int, high: int) -> int:
    if key not in data:
        return default
    checked = problems.integer((key,), data[key], low, high)
    return default if checked is None else checked


def _text(problems: Problems, data: dict, key: str, default: str | None) -> str | None:
    if key not in data or data[key] is None:
        return default
    return problems.text((key,), data[key])


def _check_urls(problems: Problems, texts: dict[str, str | None]) -> None:
    url = texts["unsubscribe_url"]
    if url and not url.startswith("https://"):
        problems.add(
            ("unsubscribe_url",), f"'unsubscribe_url' must start with https://, not {url!r}"
        )
    if "@" not in (texts["sender"] or ""):
        problems.add(
            ("sender",), "'sender' must hold an address, e.g. 'Digest <digest@example.org>'"
        )


def _smtp(problems: Problems, data: object, base: Path) -> SmtpSettings:
    if not isinstance(data, dict):
        problems.add(("smtp",), "'smtp' must be a mapping (host:, port:, security:, ...)")
        return SmtpSettings()
    problems.unknown_keys(("smtp",), data, _SMTP_KEYS)
    values: dict[str, object] = {}
    for key, (_, low, high) in _SMTP_NUMBERS.items():
        if key in data:
            values[key] = problems.integer(("smtp", key), data[key], low, high)
    for key in ("host", "username", "password_env"):
        if key in data:
            values[key] = problems.text(("smtp", key), data[key])
    if "security" in data:
        values["security"] = problems.choice(("smtp", "security"), data["security"], SECURITY)
    if "retry_delay" in data:
        delay = data["retry_delay"]
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay <= 600:
            problems.add(("smtp", "retry_delay"), "'retry_delay' must be seconds from 0 to 600")
        else:
            values["retry_delay"] = float(delay)
    if "ca_file" in data:
        ca_file = problems.text(("smtp", "ca_file"), data["ca_file"])
        values["ca_file"] = base / ca_file if ca_file else None
    if "password" in data:
        problems.add(
            ("smtp", "password"),
            "never put the password in the config: set 'password_env' to the name of an "
            "environment variable that holds it",
        )
    return SmtpSettings(**{k: v for k, v in values.items() if v is not None})


def _schedule(problems: Problems, data: object) -> ScheduleDefaults:
    if not isinstance(data, dict):
        problems.add(("schedule",), "'schedule' must be a mapping (send_at:, timezone:)")
        return ScheduleDefaults()
    problems.unknown_keys(("schedule",), data, _SCHEDULE_KEYS)
    defaults = ScheduleDefaults()
    cron = problems.text(("schedule", "cron"), data["cron"]) if "cron" in data else None
    if cron and len(cron.split()) not in (5, 6):
        problems.add(
            ("schedule", "cron"),
            f"'cron' {cron!r} needs 5 fields (minute hour day month day_of_week) or 6 "
            "(seconds last)",
        )
    grace = defaults.misfire_grace_time
    if "misfire_grace_time" in data:
        key = ("schedule", "misfire_grace_time")
        grace = problems.integer(key, data["misfire_grace_time"], 1, 7 * 86400) or grace
    send_at = (
        problems.clock(("schedule", "send_at"), data["send_at"]) if "send_at" in data else None
    )
    zone = (
        problems.timezone(("schedule", "timezone"), data["timezone"])
        if "timezone" in data
        else None
    )
    return ScheduleDefaults(send_at or defaults.send_at, zone or defaults.timezone, cron, grace)
