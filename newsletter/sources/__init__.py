"""Sources: find digest files, and read each supported format into a ``Digest`` value."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date
from pathlib import Path

from newsletter.errors import ConfigError, DigestError
from newsletter.models import Digest
from newsletter.sources import arxiv_feed, hf_daily, hf_listing
from newsletter.sources.decode import utf8_bytes

_NOT_YET = {b"<": "XML, but not an RSS or Atom feed"}
# A JSON response starts with an object, or a list of objects, or is an empty list; a text
# capture may start with "[-] 19" (an upvote count), which is none of these.
_JSON = re.compile(rb"\s*(\{|\[\s*(\{|\]\s*$))")


def discover_digests(folder: Path) -> list[Path]:
    """Digest files in ``folder`` by name, leaving out hidden files and editor backups;
    ConfigError when the folder is missing or unreadable."""
    try:
        entries = list(folder.iterdir())
    except OSError as exc:
        reason = (
            "does not exist"
            if isinstance(exc, FileNotFoundError)
            else (f"cannot be read ({exc.strerror or exc})")
        )
        message = f"the digests folder {folder} {reason}; create it, or fix 'digests'"
        raise ConfigError(message) from exc
    return sorted(
        path
        for path in entries
        if path.is_file() and not path.name.startswith(".") and not path.name.endswith("~")
    )


def read_digest_bytes(
    data: bytes,
    *,
    today: date,
    listing_date: date | None = None,
    keep: Iterable[str] = arxiv_feed.KEEP,
) -> Digest:
    """Decode and parse one digest, in the format its content shows (not its name); raise
    DigestError when it cannot be read at all. ``keep``: the arXiv announce types read."""
    data = utf8_bytes(data)
    first = _first_byte(data)
    if _JSON.match(data[:4096]):
        return hf_daily.parse_bytes(data, today=today, listing_date=listing_date)
    if first == b"<" and arxiv_feed.is_feed(data):
        return arxiv_feed.parse_bytes(data, today=today, listing_date=listing_date, keep=keep)
    _reject_other_formats(first, data)
    return hf_listing.parse_bytes(data, today=today, listing_date=listing_date)


def read_digest_file(path: Path, *, today: date, listing_date: date | None = None) -> Digest:
    """Read the file at ``path`` as a digest (see ``read_digest_bytes``)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DigestError(f"cannot read the file: {exc.strerror or exc}") from exc
    return read_digest_bytes(data, today=today, listing_date=listing_date)


def _first_byte(data: bytes) -> bytes:
    return data[: 64 * 1024].lstrip()[:1]


def _reject_other_formats(first: bytes, data: bytes) -> None:
    head = data[:1024].lstrip()[:15].lower()
    if head.startswith((b"<!doctype html", b"<html")):
        raise DigestError(
            "this is an HTML page, not a digest (an error or login page saved instead of the "
            "listing?); capture or fetch it again"
        )
    if first in _NOT_YET:
        raise DigestError(
            f"this looks like {_NOT_YET[first]}; digests are captures of the Daily Papers "
            "page, Hugging Face daily papers JSON, or arXiv RSS/Atom feeds"
        )
