"""Reading config.yaml: every value checked by its setting's kind, every problem reported with
file and line."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import Field, fields
from pathlib import Path
from typing import Any

from newsletter.config.checks import DOMAIN_NAME, cross_checks, source_problem
from newsletter.config.settings import (
    DEFAULT_DOMAIN,
    Config,
    DomainLimit,
    Kind,
    SmtpSettings,
    SourceSettings,
)
from newsletter.delivery.registry import TRANSPORTS
from newsletter.errors import ConfigError
from newsletter.files.problems import Problems
from newsletter.files.yamlfile import KeyPath, load_yaml
from newsletter.sources.registry import SOURCE_KINDS

ENV_VAR = "NEWSLETTER_CONFIG"


DEFAULT_PATH = Path("config.yaml")


def config_path(option: str | None, environ: Mapping[str, str]) -> Path:
    """The config file to use: ``--config``, else $NEWSLETTER_CONFIG, else ./config.yaml."""
    if option:
        return Path(option)
    if environ.get(ENV_VAR):
        return Path(environ[ENV_VAR])
    return DEFAULT_PATH


def load_config(path: Path) -> Config:
    """Load and check ``path``; raise ConfigError listing every problem with its line."""
    config, problems = read_config(path)
    if problems:
        raise ConfigError(problems)
    return config


def read_config(path: Path) -> tuple[Config, list[str]]:
    """``path`` read as far as it goes, and every problem with its line: a value in error
    reads as its default, so that ``validate`` can go on to check the rest (the profile
    file, the templates, the store) in the same run. ConfigError when the file cannot be
    read as a mapping at all."""
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
    cross_checks(reader.problems, data, config)
    reader.problems.repeated_keys()
    return config, reader.problems.messages() if reader.problems.found else []


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
            elif "list" in meta:
                values[item.name] = self._words(data, item, at)
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
            source = self.read(SourceSettings, entry, here)
            problem = source_problem(source, [s.name for s in found])
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
            if not isinstance(name, str) or not (
                name == DEFAULT_DOMAIN or DOMAIN_NAME.fullmatch(name)
            ):
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

    def _words(self, data: dict, item: Field, at: KeyPath) -> tuple[str, ...]:
        """The list of words ``item`` names in ``data`` (its default when absent)."""
        key, value = item.name, data.get(item.name)
        if value is None:
            return item.default  # type: ignore[return-value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            example = item.metadata["list"]
            self.problems.add((*at, key), f"'{key}' must be a list, e.g. [{example}]")
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
        if kind.name == "transport":
            return problems.choice(at, value, TRANSPORTS)
        if kind.name == "source_type":
            return problems.choice(at, value, SOURCE_KINDS)
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


def _wire_domain(name: str) -> str:
    """A domain as recipients carry it on the wire: IDNA, lower case."""
    try:
        return name.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return name.casefold()  # (never matches; a name IDNA refuses is no real domain)


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
