"""Checks for hand-edited YAML files: every problem collected, each with file, line and hint."""

from __future__ import annotations

import functools
import re
import zoneinfo
from collections.abc import Iterable, Mapping
from datetime import time

from newsletter.files.yamlfile import KeyPath, YamlDocument, did_you_mean
from newsletter.matching.keywords import UNSAFE_CHARACTER

_CLOCK = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")


class Problems:
    """Collects ``file:line: message`` lines for one YAML document."""

    def __init__(self, document: YamlDocument) -> None:
        self.document = document
        self.found: list[tuple[int, str]] = []

    def add(self, key_path: KeyPath, message: str) -> None:
        """Record a problem at the line of ``key_path``."""
        line = self.document.line(key_path)
        self.found.append((line, f"{self.document.path.name}:{line}: {message}"))

    def messages(self) -> list[str]:
        """Every problem, in file order."""
        return [message for _, message in sorted(self.found, key=lambda item: item[0])]

    def unknown_keys(self, key_path: KeyPath, mapping: Mapping, known: Iterable[str]) -> None:
        """Flag keys of ``mapping`` that are not ``known``, suggesting the closest one."""
        known = list(known)
        for key in mapping:
            if key not in known:
                hint = did_you_mean(str(key), known) or f" (known keys: {', '.join(known)})"
                self.add((*key_path, key), f"unknown key '{key}'{hint}")

    def repeated_keys(self) -> None:
        """Flag keys set twice in one mapping (YAML would silently keep the last)."""
        for key_path, line in self.document.duplicates:
            self.found.append(
                (
                    line,
                    f"{self.document.path.name}:{line}: '{key_path[-1]}' is set twice in the "
                    "same entry; keep one",
                )
            )

    def integer(self, key_path: KeyPath, value: object, low: int, high: int) -> int | None:
        """``value`` as an int in ``[low, high]``, or None after recording why not."""
        name = key_path[-1]
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(
                key_path, f"'{name}' must be a whole number from {low} to {high}, not {value!r}"
            )
            return None
        if not low <= value <= high:
            self.add(key_path, f"'{name}' must be from {low} to {high}, not {value}")
            return None
        return value

    def number(self, key_path: KeyPath, value: object, low: float, high: float) -> float | None:
        """``value`` as a float in ``[low, high]``, or None after recording why not."""
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            self.add(
                key_path,
                f"'{key_path[-1]}' must be a number from {low:g} to {high:g}, not {value!r}",
            )
            return None
        return float(value)

    def text(self, key_path: KeyPath, value: object) -> str | None:
        """``value`` as a non-empty line of text, or None after recording why not."""
        if not isinstance(value, str) or not value.strip():
            self.add(key_path, f"'{key_path[-1]}' must be text, not {value!r}")
            return None
        unsafe = UNSAFE_CHARACTER.search(value.strip())
        if unsafe:
            # These end up in mail headers: a line break there is a header injection.
            self.add(
                key_path,
                f"'{key_path[-1]}' must be one line of plain text, but it holds the control "
                f"character U+{ord(unsafe.group()):04X}; remove it",
            )
            return None
        return value.strip()

    def flag(self, key_path: KeyPath, value: object) -> bool | None:
        """``value`` as a bool, or None after recording why not."""
        if not isinstance(value, bool):
            self.add(key_path, f"'{key_path[-1]}' must be true or false, not {value!r}")
            return None
        return value

    def choice(self, key_path: KeyPath, value: object, choices: Iterable[str]) -> str | None:
        """``value`` (any case) as one of ``choices``, or None after recording why not."""
        choices = list(choices)
        word = str(value).strip().lower()
        if word in choices:
            return word
        hint = did_you_mean(word, choices) or f" (one of: {', '.join(choices)})"
        self.add(key_path, f"'{key_path[-1]}' cannot be {value!r}{hint}")
        return None

    def clock(self, key_path: KeyPath, value: object) -> time | None:
        """``"HH:MM"`` as a time, or None after recording why not."""
        written = self.document.raw.get(key_path, str(value))
        match = _CLOCK.fullmatch(written.strip())
        if not match:
            self.add(key_path, f"'{key_path[-1]}' must be a time like \"07:00\", not {written!r}")
            return None
        return time(int(match.group(1)), int(match.group(2)))

    def timezone(self, key_path: KeyPath, value: object) -> str | None:
        """An IANA time zone name, or None after recording why not."""
        name = str(value).strip()
        if name in time_zones():
            return name
        hint = did_you_mean(name, time_zones()) or " (an IANA name such as 'Europe/Berlin')"
        self.add(key_path, f"unknown time zone '{name}'{hint}")
        return None


@functools.cache
def time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) | {"UTC"}
