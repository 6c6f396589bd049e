"""``config.yaml``: where the digests, state and (later) profiles and templates live."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from newsletter.errors import ConfigError
from newsletter.yamlfile import YamlDocument, did_you_mean, load_yaml

ENV_VAR = "NEWSLETTER_CONFIG"
DEFAULT_PATH = Path("config.yaml")

# key -> default; every value is a path relative to the config file's folder.
_PATH_KEYS = {
    "digests": "digests",
    "state_dir": "state",
}


@dataclass(frozen=True)
class Config:
    """Settings with every path made absolute."""

    path: Path
    digests: Path
    state_dir: Path


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
    problems = _check(document, data)
    if problems:
        raise ConfigError("\n".join(problems))
    base = path.resolve().parent
    values = {key: base / str(data.get(key, default)) for key, default in _PATH_KEYS.items()}
    return Config(path=path.resolve(), **values)


def _check(document: YamlDocument, data: dict) -> list[str]:
    problems = []
    for key in data:
        if key not in _PATH_KEYS:
            problems.append(
                f"{document.where((key,))}: unknown key '{key}'{did_you_mean(str(key), _PATH_KEYS)}"
            )
        elif not isinstance(data[key], str) or not data[key].strip():
            problems.append(
                f"{document.where((key,))}: '{key}' must be a folder path (a string), "
                f"not {data[key]!r}"
            )
    for key_path, line in document.duplicates:
        problems.append(f"{document.path.name}:{line}: '{key_path[-1]}' is set twice; keep one")
    return problems
