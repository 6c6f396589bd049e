"""Changes a subscriber makes on the preferences page, written into subscribers.yaml itself.

The file stays the operator's: ruamel.yaml edits it round-trip, so comments, key order,
quoting and layout survive; only the keys that changed are touched. The new text is checked
by the same loader as every send before it replaces the file (a temporary file, then a
rename: a reader sees the old file or the new one, never half of one). Edits take a lock of
their own, and the file is re-read if it changed while the edit was being made (an operator
saving by hand at the same moment is not overwritten).
"""

from __future__ import annotations

import fcntl
import io
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import time
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from newsletter.config import Config
from newsletter.errors import ConfigError, ProfileError
from newsletter.lock import make_private_folder
from newsletter.models import Subscriber
from newsletter.profiles import Profiles, load_profiles

EDIT_LOCK = "profiles.lock"
_ATTEMPTS = 3
_PLAIN_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*")


@dataclass(frozen=True)
class PreferenceChange:
    """What the preferences form asks for; None (or empty) leaves a setting as it is."""

    frequency: str | None = None  # daily | weekly | paused
    day: str | None = None
    send_at: time | None = None
    timezone: str | None = None
    max_papers: int | None = None
    add_keywords: tuple[str, ...] = ()
    remove_keywords: tuple[str, ...] = ()  # as written in the file


def edit_profile(config: Config, email: str, change: PreferenceChange) -> Subscriber:
    """Apply ``change`` to ``email``'s entry of the profile file; the subscriber as the file
    now says. ProfileError (nothing written) when the result would not be a valid file, or
    the address is not in it."""
    path = config.subscribers
    with _edit_lock(config.state_dir):
        for _ in range(_ATTEMPTS):
            before = _stamp(path)
            text = path.read_text(encoding="utf-8-sig")
            current = _profiles(config).find(email)
            if current is None:
                raise ProfileError(f"{email} is not in {path.name}")
            new_text = _edited(text, path, current, change)
            if new_text == text:
                return current
            if _stamp(path) != before:
                continue  # edited meanwhile (by hand): start again from the new text
            return _replace(config, path, new_text, email)
    raise ProfileError(f"{path.name} kept changing while it was being edited; try again")


def _profiles(config: Config, path: Path | None = None) -> Profiles:
    return load_profiles(path or config.subscribers, config.schedule, config.matching)


def _edited(text: str, path: Path, current: Subscriber, change: PreferenceChange) -> str:
    """``text`` with ``change`` applied to ``current``'s entry."""
    yaml = _round_trip(text)
    try:
        document = yaml.load(text)
    except YAMLError as exc:
        raise ProfileError(f"{path.name}: cannot be edited: {exc}") from exc
    entry = _entry(document, current.email)
    if entry is None:
        raise ProfileError(f"{current.email} is not in {path.name}")
    wanted = {
        "frequency": change.frequency,
        "day": change.day if (change.frequency or current.frequency) == "weekly" else None,
        "send_at": f"{change.send_at:%H:%M}" if change.send_at else None,
        "timezone": change.timezone,
        "max_papers": change.max_papers,
    }
    effective = {
        "frequency": current.frequency,
        "day": current.day,
        "send_at": f"{current.send_at:%H:%M}",
        "timezone": current.timezone,
        "max_papers": current.max_papers,
    }
    for key, value in wanted.items():
        if value is not None and value != effective[key]:
            _set(entry, key, DoubleQuotedScalarString(value) if key == "send_at" else value)
    _edit_keywords(entry, change)
    out = io.StringIO()
    yaml.dump(document, out)
    return out.getvalue()


# Where a key the entry lacks goes: after the first of these it has.
_AFTER = {
    "frequency": ("max_papers", "keywords"),
    "day": ("frequency",),
    "send_at": ("day", "frequency"),
    "timezone": ("send_at", "day", "frequency"),
    "max_papers": ("keywords",),
    "keywords": ("email",),
}


def _set(entry, key: str, value: object) -> None:
    """Set ``key`` of ``entry``; a new key goes after its neighbour, and never last: a
    comment below an entry belongs, for ruamel, to its last key, and must stay below it."""
    if key in entry:
        entry[key] = value
        return
    keys = list(entry)
    anchor = next((k for k in _AFTER.get(key, ()) if k in keys), keys[-1] if keys else None)
    position = keys.index(anchor) + 1 if anchor is not None else 0
    entry.insert(min(position, max(len(keys) - 1, 0)), key, value)


def _edit_keywords(entry: dict, change: PreferenceChange) -> None:
    if not (change.add_keywords or change.remove_keywords):
        return
    keywords = entry.get("keywords")
    if keywords is None:
        keywords = CommentedSeq()
        keywords.fa.set_flow_style()
        _set(entry, "keywords", keywords)
    gone = {k.strip().casefold() for k in change.remove_keywords}
    for item in [k for k in keywords if isinstance(k, str) and k.strip().casefold() in gone]:
        keywords.remove(item)
    present = {str(k).strip().casefold() for k in keywords}
    for keyword in change.add_keywords:
        keyword = keyword.strip()
        if keyword and keyword.casefold() not in present:
            plain = _PLAIN_WORD.fullmatch(keyword) and keyword.lower() not in _YAML_WORDS
            keywords.append(keyword if plain else DoubleQuotedScalarString(keyword))
            present.add(keyword.casefold())


# Plain words YAML 1.1 (PyYAML) reads as booleans or null: written quoted.
_YAML_WORDS = {"yes", "no", "on", "off", "true", "false", "y", "n", "null"}


def _round_trip(text: str) -> YAML:
    """A round-trip YAML with the file's own list indentation (``- `` at 2 or 0)."""
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap a long line
    found = re.search(r"^subscribers:[^\n]*\n(?:\s*#[^\n]*\n)*( *)- ", text, re.M)
    offset = len(found.group(1)) if found else 2
    yaml.indent(mapping=2, sequence=offset + 2, offset=offset)
    return yaml


def _entry(document: object, email: str) -> dict | None:
    if not isinstance(document, dict) or not isinstance(document.get("subscribers"), list):
        return None
    wanted = email.casefold()
    for entry in document["subscribers"]:
        if isinstance(entry, dict) and str(entry.get("email", "")).strip().casefold() == wanted:
            return entry
    return None


def _replace(config: Config, path: Path, text: str, email: str) -> Subscriber:
    """Check ``text`` as the profile file, then put it in place atomically."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.edit")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.chmod(temporary, path.stat().st_mode & 0o7777)
        try:
            subscriber = _profiles(config, temporary).find(email)
        except ConfigError as exc:
            problems = [p.replace(temporary.name, path.name) for p in exc.problems]
            raise ProfileError(problems) from exc
        assert subscriber is not None
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return subscriber


def _stamp(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_mtime_ns, status.st_size


@contextmanager
def _edit_lock(state_dir: Path) -> Iterator[None]:
    """One edit at a time (a short wait: an edit takes milliseconds)."""
    make_private_folder(state_dir)
    with open(state_dir / EDIT_LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
