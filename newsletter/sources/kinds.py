"""What the ingest path and ``fetch`` ask of a source, declared: a ``Reader`` (a digest
format, recognised by its content, never by a file's name) and a ``SourceKind`` (a service
fetched over HTTP, config.yaml's ``type``). A new kind is a module declaring one of each (or
reusing a reader) plus a line in ``sources.registry``, as Pelican's readers are."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

from newsletter.models import Digest

if TYPE_CHECKING:
    from newsletter.config.settings import SourceSettings

# (data, today, listing date given or None, the arXiv announce types to keep) -> the digest
ReadBytes = Callable[[bytes, date, "date | None", Iterable[str]], Digest]


@dataclass(frozen=True)
class Reader:
    """One digest format: its name (``Digest.format``), how its content is recognised (the
    file's UTF-8 bytes), and how it is read (DigestError when it cannot be)."""

    name: str
    recognises: Callable[[bytes], bool]
    read: ReadBytes


class SourceKind:
    """A service papers are fetched from. Its declarations have the defaults of a service
    asked once a day for that day's listing, one request a day."""

    name: str  # config.yaml's ``type``
    default_url: str  # where requests start when the source sets no ``url``
    reader: Reader  # what its responses must be
    extension: str = "json"  # of the files its responses are written to
    # Days a fetch asks when none are given, today included (a listing that may still grow
    # is asked again, conditionally; a day fetched complete is not).
    recent_days: int = 1
    dated: bool = True  # a listing per day (False: a feed, which has only its latest)
    paged: bool = False  # a day's listing comes a page at a time (``page_url``)
    interval: float = 0.0  # seconds its requests are kept apart at least

    def base_url(self, source: SourceSettings) -> str:
        """The URL requests start from."""
        return (source.url or self.default_url).rstrip("/")

    def request_url(self, source: SourceSettings, day: date) -> str:
        """The (first) URL asked for ``source`` and ``day``."""
        return f"{self.base_url(source)}?date={day.isoformat()}"

    def page_url(self, source: SourceSettings, day: date, start: int, size: int) -> str:
        """The URL of ``size`` papers of ``day`` from ``start`` (a paged kind's)."""
        return self.request_url(source, day)

    def days(self, today: date) -> list[date]:
        """The days a fetch asks when none are given, oldest first."""
        return [today - timedelta(days=back) for back in reversed(range(self.recent_days))]

    def file_name(self, source: SourceSettings, day: date, page: int = 1) -> str:
        """The name a response is written under: ``<name>-<day>.<extension>`` (and
        ``.p2.<extension>`` for a second page)."""
        paged = f".p{page}" if page > 1 else ""
        return f"{source.name}-{day.isoformat()}{paged}.{self.extension}"

    def problem(self, source: SourceSettings) -> str | None:
        """What is wrong with the settings that depend on the kind, if anything."""
        return None
