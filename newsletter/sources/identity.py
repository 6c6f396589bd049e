"""Stable paper identities: from the arXiv id when known, otherwise from the normalized title."""

from __future__ import annotations

import hashlib
import re
import unicodedata

# Anything that is not a letter or digit separates words; "_" counts as punctuation too.
_NON_WORD = re.compile(r"[\W_]+")
_ARXIV_ID = re.compile(
    r"^(?:arxiv:)?(\d{4}\.\d{4,5}|[a-z\-]+(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?$", re.I
)


# The same as _NON_WORD for ASCII text, and ten times faster (ingest normalizes every title).
_ASCII_SEPARATORS = str.maketrans({chr(c): " " for c in range(128) if not chr(c).isalnum()})


def normalize_title(title: str) -> str:
    """NFKC, casefold, and punctuation and whitespace collapsed to single spaces."""
    folded = unicodedata.normalize("NFKC", title).casefold()
    if folded.isascii():
        return " ".join(folded.translate(_ASCII_SEPARATORS).split())
    return _NON_WORD.sub(" ", folded).strip()


def canonical_arxiv_id(raw: str) -> str | None:
    """The arXiv id without prefix or version (``2412.01199``), or None if it is not one."""
    match = _ARXIV_ID.match(raw.strip())
    return match.group(1) if match else None


def paper_id(title_key: str, arxiv_id: str | None = None) -> str:
    """The id a new paper gets: its arXiv id, else ``t-`` and a hash of its title key
    (``normalize_title`` of its title)."""
    if arxiv_id:
        return arxiv_id
    return "t-" + hashlib.sha256(title_key.encode("utf-8")).hexdigest()[:16]
