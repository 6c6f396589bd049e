"""Readers: turn digest files of any supported format into ``Digest`` values."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

from newsletter.errors import DigestError
from newsletter.models import Digest
from newsletter.sources import hf_listing
from newsletter.sources.decode import decode_text

_NOT_YET = {
    "{": "JSON",
    "[": "JSON",
    "<": "XML (RSS/Atom)",
}


def read_digest_bytes(data: bytes, *, today: date, listing_date: date | None = None) -> Digest:
    """Decode and parse one digest; raise DigestError when it cannot be read at all."""
    text, decode_warnings = decode_text(data)
    _reject_other_formats(text)
    digest = hf_listing.parse(text, today=today, listing_date=listing_date)
    return replace(digest, warnings=tuple(decode_warnings) + digest.warnings)


def read_digest_file(path: Path, *, today: date, listing_date: date | None = None) -> Digest:
    """Read the file at ``path`` as a digest (see ``read_digest_bytes``)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DigestError(f"cannot read the file: {exc.strerror or exc}") from exc
    return read_digest_bytes(data, today=today, listing_date=listing_date)


def _reject_other_formats(text: str) -> None:
    first = text.lstrip()[:1]
    if first in _NOT_YET:
        raise DigestError(
            f"this looks like {_NOT_YET[first]}, which is not a supported digest format yet; "
            "only plain-text captures of the Daily Papers page are read"
        )
