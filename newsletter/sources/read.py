"""The ingest path's reading: find the digest files of a folder, and read each into a
``Digest`` by the format its content shows."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from pathlib import Path

from newsletter.errors import ConfigError, DigestError
from newsletter.models import Digest
from newsletter.sources import arxiv_feed
from newsletter.sources.decode import utf8_bytes
from newsletter.sources.registry import LAST_READER, readers

_NOT_YET = {b"<": "XML, but not an RSS or Atom feed"}


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
    """Decode and parse one digest, in the format its content shows (not its name): the
    first reader of ``sources.registry`` that recognises it, else a Daily Papers capture;
    raise DigestError when it cannot be read at all. ``keep``: the arXiv announce types read."""
    data = utf8_bytes(data)
    for reader in readers():
        if reader.recognises(data):
            return reader.read(data, today, listing_date, keep)
    _reject_other_formats(_first_byte(data), data)
    return LAST_READER.read(data, today, listing_date, keep)


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
