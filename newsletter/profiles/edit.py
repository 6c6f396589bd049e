"""Changes a subscriber makes on the preferences page, written into subscribers.yaml itself.

The file stays the operator's: ruamel.yaml edits it round-trip, so comments, key order,
quoting and layout survive; only the keys that changed are touched. The new text is checked
by the same loader as every send before it replaces the file (a temporary file, then a
rename: a reader sees the old file or the new one, never half of one). Edits take the
profile file's lock, which a send also takes to read the file. An operator saving by hand
takes no lock: the file's content is compared again right before the rename, and when it
changed, the edit is made again on the new text (a save by hand is never overwritten); a
file read while an editor was writing it in place is read again.
"""

from __future__ import annotations

import io
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from time import sleep as pause

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from newsletter.config.settings import Config
from newsletter.errors import ConfigError, ProfileError, ProfilesUnreadable
from newsletter.ledger.lock import profiles_lock
from newsletter.models import NewProfile, Subscriber
from newsletter.profiles.load import Profiles, load_profiles

_ATTEMPTS = 50  # (a file saved by hand again and again: each save makes the edit again)
_SETTLE_TRIES = 20
_SETTLE_SECONDS = 0.005
_KEPT_CHECKS = 4
Sleep = Callable[[float], None]
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
    add_exclude: tuple[str, ...] = ()  # (a suggestion from feedback, profiles.suggest)
    add_require: tuple[str, ...] = ()


def edit_profile(
    config: Config, email: str, change: PreferenceChange, sleep: Sleep = pause
) -> Subscriber:
    """Apply ``change`` to ``email``'s entry of the profile file; the subscriber as the file
    now says. ProfileError (nothing written) when the result would not be a valid file, or
    the address is not in it."""
    path = config.subscribers
    with profiles_lock(config.state_dir, exclusive=True):
        for _ in range(_ATTEMPTS):
            text = _settled_text(path, sleep)
            try:
                target, current = _current(config, text, email)
                if current is None:
                    raise ProfileError(f"{email} is not in {path.name}")
                new_text = target.edited(current, change)
                if new_text == text:
                    return current
                subscriber = target.checked(new_text, email)
            except ProfileError:
                if _being_saved(path, text, sleep):
                    continue  # read while an editor was writing it: read it again
                raise
            if _replaced(path, text, new_text) and _kept(path, new_text, sleep):
                return subscriber
            # Saved by hand since it was read, or just after (by an editor holding the older
            # text): the change is made again on the new text (a no-op if it is there).
    raise ProfileError(f"{path.name} kept changing while it was being edited; try again")


def check_profile(config: Config, profile: NewProfile) -> Subscriber:
    """``profile`` as the entry ``add_profile`` would write, checked on its own (whether or
    not the address is in the file); a ProfileError naming "the new entry" for what
    ``validate`` would refuse. Nothing is written."""
    new_text = _appended("", config.subscribers, profile)
    return _new_subscriber(config, "", new_text, profile.email)


def add_profile(config: Config, profile: NewProfile, sleep: Sleep = pause) -> Subscriber:
    """Append ``profile`` to the profile file (its comments and layout kept, atomically,
    under the lock); the subscriber as the file now says. ProfileError (nothing written)
    when the address is there already or the entry would not be valid."""
    path = config.subscribers
    written = False  # (once written, finding the entry means it stayed)
    with profiles_lock(config.state_dir, exclusive=True):
        for _ in range(_ATTEMPTS):
            text = _settled_text(path, sleep)
            try:
                present = _profiles(config).find(profile.email)
            except ConfigError:
                if _being_saved(path, text, sleep):
                    continue
                raise
            if present is not None and written:
                return present
            if present is not None:
                raise ProfileError(
                    f"{path.name}:{present.line}: {present.email} is subscribed already; "
                    "change the entry there (or on the preferences page)"
                )
            new_text = _appended(text, path, profile)
            subscriber = _new_subscriber(config, text, new_text, profile.email)
            if _replaced(path, text, new_text):
                written = True
                if _kept(path, new_text, sleep):
                    return subscriber
    raise ProfileError(f"{path.name} kept changing while it was being edited; try again")


def _new_subscriber(config: Config, text: str, new_text: str, email: str) -> Subscriber:
    """The added entry read back from ``new_text``; a ProfileError naming the entry, not a
    line of a file that was never written, for a mistake in it."""
    lines = text.count("\n") + 1
    name = config.subscribers.name
    try:
        subscriber = _load_text(config, new_text, email, lambda line: line)
    except ProfileError as exc:
        problems = [
            re.sub(
                rf"{re.escape(name)}:(\d+):",
                lambda m: (
                    f"{name}:{m.group(1)}:"
                    if int(m.group(1)) <= lines
                    else f"the new entry for {email}:"
                ),
                problem,
            )
            for problem in exc.problems
        ]
        raise ProfileError(problems) from exc
    assert subscriber is not None
    return subscriber


def _appended(text: str, path: Path, profile: NewProfile) -> str:
    """``text`` with ``profile``'s entry added at the end of its ``subscribers:`` list."""
    yaml = _round_trip(text)
    try:
        document = yaml.load(text) if text.strip() else None
    except YAMLError as exc:
        raise ProfileError(f"{path.name}: cannot be edited: {exc}") from exc
    if document is None:
        document = CommentedMap()
    if not isinstance(document, dict):
        raise ProfileError(f"{path.name}: cannot be edited: it is not a 'subscribers:' list")
    if document.get("subscribers") is None:
        document["subscribers"] = CommentedSeq()
    entries = document["subscribers"]
    if not isinstance(entries, list):
        raise ProfileError(f"{path.name}: cannot be edited: 'subscribers' is not a list")
    entries.append(_new_entry(profile))
    out = io.StringIO()
    yaml.dump(document, out)
    return _spaced_like(text, out.getvalue())


def _spaced_like(text: str, new_text: str) -> str:
    """``new_text`` with a blank line before its last entry when the file's entries are
    separated by blank lines (as the shipped file's are)."""
    if not re.search(r"\n[ \t]*\n *- email:", text):
        return new_text
    last = new_text.rfind("- email:")
    line_start = new_text.rfind("\n", 0, last) + 1
    if new_text[:line_start].endswith("\n\n"):
        return new_text
    return new_text[:line_start] + "\n" + new_text[line_start:]


def _new_entry(profile: NewProfile) -> CommentedMap:
    entry = CommentedMap()
    entry["email"] = profile.email.strip()
    if profile.name:
        entry["name"] = profile.name.strip()
    keywords = CommentedSeq()
    keywords.fa.set_flow_style()
    entry["keywords"] = keywords
    _edit_list(entry, "keywords", profile.keywords, (), last_ok=True)
    if profile.frequency:
        entry["frequency"] = profile.frequency
    if profile.day:
        entry["day"] = profile.day
    if profile.send_at is not None:
        entry["send_at"] = DoubleQuotedScalarString(f"{profile.send_at:%H:%M}")
    if profile.timezone:
        entry["timezone"] = profile.timezone
    return entry


def read_profile(config: Config, email: str, sleep: Sleep = pause) -> Subscriber | None:
    """``email``'s profile as the file says now (None if not there): only their entry is
    read when the file's layout allows, so a page stays quick in a file of 100,000. A file
    caught while an editor writes it in place is read again; a ConfigError when it stays
    invalid."""
    path = config.subscribers
    for _ in range(_SETTLE_TRIES):
        text = _read(path)
        try:
            return _current(config, text, email)[1]
        except ProfilesUnreadable:
            if not _being_saved(path, text, sleep):
                raise
    return _current(config, _read(path), email)[1]


def _current(
    config: Config, text: str, email: str
) -> tuple[_WholeFile | _OneEntry, Subscriber | None]:
    """How to work on ``email``'s entry of ``text``, and the entry as it stands; a
    ProfilesUnreadable when the file is invalid before any change."""
    try:
        target = _target(config, text, email)
        return target, target.subscriber(email)
    except ConfigError as exc:
        raise ProfilesUnreadable(exc.problems) from exc


class _WholeFile:
    """The whole profile file, round-tripped and checked as one (the general case)."""

    def __init__(self, config: Config, text: str) -> None:
        self.config, self.text = config, text

    def subscriber(self, email: str) -> Subscriber | None:
        return _profiles(self.config).find(email)  # the file itself: no copy of it to write

    def edited(self, current: Subscriber, change: PreferenceChange) -> str:
        return _edited(self.text, self.config.subscribers, current, change)

    def checked(self, new_text: str, email: str) -> Subscriber:
        subscriber = _load_text(self.config, new_text, email, lambda line: line)
        assert subscriber is not None
        return subscriber


class _OneEntry:
    """One entry of a block list, found in the text: only it is parsed, edited and checked
    (with the file's head, where the top-level settings are), the rest kept byte for byte.
    A round trip of the whole file costs minutes at 100,000 entries; this, a second."""

    _DOCUMENT = "subscribers:\n"

    def __init__(self, config: Config, text: str, start: int, end: int, head: int) -> None:
        self.config, self.text = config, text
        self.start, self.end, self.head = start, end, head  # entry [start, end); head [0, head)
        head_lines, before_lines = text.count("\n", 0, head), text.count("\n", 0, start)
        self.shift = before_lines - head_lines  # mini file line -> line in the real file
        self.head_lines = head_lines

    def subscriber(self, email: str) -> Subscriber | None:
        return self._load(self.text[self.start : self.end], email)

    def edited(self, current: Subscriber, change: PreferenceChange) -> str:
        entry = self.text[self.start : self.end]
        path = self.config.subscribers
        document = _edited(self._DOCUMENT + entry, path, current, change, last_ok=True)
        new_entry = document.removeprefix(self._DOCUMENT)
        return self.text[: self.start] + new_entry + self.text[self.end :]

    def checked(self, new_text: str, email: str) -> Subscriber:
        entry = new_text[self.start : len(new_text) - (len(self.text) - self.end)]
        subscriber = self._load(entry, email)
        assert subscriber is not None
        return subscriber

    def _load(self, entry: str, email: str) -> Subscriber | None:
        def real_line(line: int) -> int:
            return line + self.shift if line > self.head_lines else line

        return _load_text(self.config, self.text[: self.head] + entry, email, real_line)


def _target(config: Config, text: str, email: str) -> _WholeFile | _OneEntry:
    """The cheapest sound way to work on ``email``'s entry of ``text``."""
    span = _entry_span(text, email)
    if span is not None:
        entry = _OneEntry(config, text, *span)
        try:
            if entry.subscriber(email) is not None:
                return entry
        except ConfigError:
            pass  # cut wrongly (an unusual layout): the whole file decides
    return _WholeFile(config, text)


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_LIST_KEY = re.compile(r"^subscribers[ \t]*:[ \t]*(?:#[^\n]*)?\n", re.M)
_FIRST_ITEM = re.compile(r"(?:[ \t]*(?:#[^\n]*)?\n)*?( *)-[ \t\n]")


def _entry_span(text: str, email: str) -> tuple[int, int, int] | None:
    """(start, end, head) of ``email``'s entry in a block list ``subscribers:`` written one
    entry after another (None for anything else: flow style, anchors, the address twice).
    The entry ends at its last line of content: comments below it stay where they are."""
    keys = list(_LIST_KEY.finditer(text))
    if len(keys) != 1:
        return None
    first = _FIRST_ITEM.match(text, keys[0].end())
    if first is None:
        return None
    head, indent = first.start(1), first.group(1)
    head = text.rfind("\n", 0, head) + 1
    address = re.compile(
        rf"^{indent}(?:- +| +)email[ \t]*:[ \t]*(['\"]?){re.escape(email)}\1[ \t]*(?:#.*)?$",
        re.M | re.I,
    )
    matches = [m.start() for m in address.finditer(text, head)]
    if len(matches) != 1:
        return None
    item = re.compile(rf"{indent}-[ \t\n]")
    start = matches[0]
    while not item.match(text, start):
        if start <= head:
            return None
        start = text.rfind("\n", 0, start - 1) + 1
    end = _entry_end(text, matches[0], len(indent))
    if _has_anchors(text[start:end]):
        return None  # anchors and aliases reach other entries: round-trip the whole file
    return start, end, head


def _has_anchors(entry: str) -> bool:
    """Whether ``entry`` defines or uses an anchor (``&name``, ``*name``; not inside quotes).
    Unreadable YAML counts too: the whole file's round trip will say what is wrong."""
    try:
        return any(
            isinstance(token, yaml.AnchorToken | yaml.AliasToken)
            for token in yaml.scan("subscribers:\n" + entry, Loader=_Loader)
        )
    except yaml.YAMLError:
        return True


def _entry_end(text: str, position: int, indent: int) -> int:
    """Where the entry holding ``position`` ends: after its last line of content before a
    line of content indented no deeper than the list's dashes (or the end of the file)."""
    end = text.find("\n", position)
    end = len(text) if end < 0 else end + 1
    line = end
    while line < len(text):
        stop = text.find("\n", line)
        stop = len(text) if stop < 0 else stop + 1
        content = text[line:stop].strip()
        if content and not content.startswith("#"):
            if len(text[line:stop]) - len(text[line:stop].lstrip(" ")) <= indent:
                break
            end = stop
        line = stop
    return end


def _load_text(
    config: Config, text: str, email: str, real_line: Callable[[int], int]
) -> Subscriber | None:
    """``email``'s subscriber in ``text`` read as the profile file (beside it, so it reads
    the same way); ProfileError naming the real file and, through ``real_line``, its lines."""
    path = config.subscribers
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.edit")
    try:
        temporary.write_text(text, encoding="utf-8")
        try:
            return _profiles(config, temporary).find(email)
        except ConfigError as exc:
            problems = [_renamed(p, temporary.name, path.name, real_line) for p in exc.problems]
            raise ProfileError(problems) from exc
    finally:
        temporary.unlink(missing_ok=True)


def _renamed(problem: str, old: str, new: str, real_line: Callable[[int], int]) -> str:
    """``problem`` naming ``new`` and its real line instead of the temporary file's."""
    return re.sub(
        rf"{re.escape(old)}(?::(\d+))?",
        lambda m: new + (f":{real_line(int(m.group(1)))}" if m.group(1) else ""),
        problem,
    )


def _profiles(config: Config, path: Path | None = None) -> Profiles:
    return load_profiles(path or config.subscribers, config.schedule, config.matching)


def _edited(
    text: str, path: Path, current: Subscriber, change: PreferenceChange, last_ok: bool = False
) -> str:
    """``text`` with ``change`` applied to ``current``'s entry (``last_ok``: no comment
    follows the entry in ``text``, so a new key may go last)."""
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
            written = DoubleQuotedScalarString(value) if key == "send_at" else value
            _set(entry, key, written, last_ok)
    _edit_list(entry, "keywords", change.add_keywords, change.remove_keywords, last_ok)
    _edit_list(entry, "exclude", change.add_exclude, (), last_ok)
    _edit_list(entry, "require", change.add_require, (), last_ok)
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
    "exclude": ("keywords",),
    "require": ("exclude", "keywords"),
}


def _set(entry, key: str, value: object, last_ok: bool) -> None:
    """Set ``key`` of ``entry``; a new key goes after its neighbour, but not last unless
    ``last_ok``: a comment below an entry belongs, for ruamel, to its last key, and must
    stay below the entry."""
    if key in entry:
        entry[key] = value
        return
    keys = list(entry)
    anchor = next((k for k in _AFTER.get(key, ()) if k in keys), keys[-1] if keys else None)
    position = keys.index(anchor) + 1 if anchor is not None else 0
    if not last_ok:
        position = min(position, max(len(keys) - 1, 0))
    entry.insert(position, key, value)


def _edit_list(
    entry: dict, key: str, add: tuple[str, ...], remove: tuple[str, ...], last_ok: bool
) -> None:
    """Add to and remove from the entry's list ``key`` (keywords, exclude, require), made
    when it is missing; the rest of the list, and its comments, stay as written."""
    if not (add or remove):
        return
    keywords = entry.get(key)
    if keywords is None:
        keywords = CommentedSeq()
        keywords.fa.set_flow_style()
        _set(entry, key, keywords, last_ok)
    gone = {k.strip().casefold() for k in remove}
    for item in [k for k in keywords if isinstance(k, str) and k.strip().casefold() in gone]:
        keywords.remove(item)
    present = {str(k).strip().casefold() for k in keywords}
    for keyword in add:
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


def _replaced(path: Path, read: str, text: str) -> bool:
    """Put ``text`` in place of the file at ``path`` atomically, with its permissions, if
    the file still holds ``read`` (what the edit was made on); False, nothing written, if
    someone saved it meanwhile. Its content is compared at the last moment, right before
    the rename: an editor's save is never overwritten (bar one landing in the microseconds
    between that comparison and the rename)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.new")
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, path.stat().st_mode & 0o7777)
        if _read(path) != read:
            return False
        os.replace(temporary, path)
        return True
    finally:
        temporary.unlink(missing_ok=True)


def _kept(path: Path, written: str, sleep: Sleep) -> bool:
    """Does the file still hold ``written`` a moment later? (An editor that read the file
    just before it was replaced saves its older text over it: the edit is then made again.)"""
    for _ in range(_KEPT_CHECKS):
        sleep(_SETTLE_SECONDS)
        if _read(path) != written:
            return False
    return True


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8-sig")


def _settled_text(path: Path, sleep: Sleep) -> str:
    """The file's text once two readings a moment apart agree (an editor writing the file
    in place leaves it empty or half written for a moment)."""
    text = _read(path)
    for _ in range(_SETTLE_TRIES):
        sleep(_SETTLE_SECONDS)
        again = _read(path)
        if again == text:
            return text
        text = again
    return text


def _being_saved(path: Path, read: str, sleep: Sleep) -> bool:
    """Was the text ``read`` (which did not load) a file being saved? True when the file
    holds something else a moment later."""
    sleep(_SETTLE_SECONDS)
    return _read(path) != read
