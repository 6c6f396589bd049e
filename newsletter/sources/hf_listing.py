"""Reader for plain-text captures of the Hugging Face "Daily Papers" listing page.

A capture is a header, the listing date (month and day, no year), then one card per paper::

    [upvotes: "-", "19" or "[-] 19"]
    title
    abstract (one paragraph)
    "• 6 authors" or an organization line      (optional: cards may be cut short)
    "·"                                          (optional)
    "Aug 20" / "Dec 2, 2024 2" (date, comments)  (optional)

Every element stands on a line of its own. The reader classifies each non-blank line once
(``split_lines``), then walks the cards with two lines of look-ahead, so it never needs to
backtrack and never takes a line it cannot place as a paper: odd lines become warnings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date
from enum import Enum

from newsletter.errors import DigestError
from newsletter.models import Card, Digest, SourceWarning
from newsletter.sources.decode import (
    bad_bytes_warnings,
    decode_bad_line,
    decode_cut,
    decode_line,
    utf8_bytes,
)
from newsletter.sources.fields import (
    ABSTRACT_MAX,
    TITLE_MAX,
    capped_warnings,
    cut_abstract,
)
from newsletter.sources.kinds import Reader

FORMAT = "hf-listing"

# TITLE_MAX (fields.py) is used here only to tell a title that follows a cut-short card from
# an abstract, never to reject text; lines past ABSTRACT_MAX are cut as they are read.
_LINE_BYTES_MAX = 4 * ABSTRACT_MAX  # enough bytes for ABSTRACT_MAX characters of any script
# The shortest text taken as an abstract: a line of a word or two is a stray line, not one.
ABSTRACT_MIN = 20
_HEADER_SCAN = 20

HEADER_LINES = frozenset(
    {
        "new",
        "get trending papers in your email inbox!",
        "subscribe",
        "daily papers",
        "byak and the research community",
        "daily",
        "weekly",
        "monthly",
    }
)

MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ],
        start=1,
    )
    for name in names
}

_DATE = re.compile(
    r"(?P<month>[A-Za-z]{3,9})\.?\s+(?P<day>\d{1,2})(?:\s*,\s*(?P<year>\d{4}))?(?:\s+(?P<count>\d{1,7}))?"
)
_AUTHORS = re.compile(r"(?:[•*\-]\s*)?(\d{1,5})\s+authors?", re.IGNORECASE)
_UPVOTES = re.compile(r"(?:\[[-+]?\]\s*)?(-|\d{1,7})|\[[-+]?\]")
_INVISIBLE = str.maketrans("", "", "\u200b\u200c\u200d\u2060\ufeff")


class Kind(Enum):
    """What a non-blank line looks like on its own."""

    TEXT = "text"
    SEPARATOR = "separator"
    AUTHORS = "authors"
    DATE = "date"
    UPVOTES = "upvotes"
    END = "end"  # the sentinels after the last line


TEXT, SEPARATOR, AUTHORS, DATE, UPVOTES, END = Kind
_SHORT = 20  # longer lines are always text: no need to classify them
_SHORT_BYTES = 48  # lines up to this many bytes may be short once decoded and cleaned


@dataclass
class Lines:
    """The non-blank lines of a capture as parallel lists (the reader's hot data: lists are
    cheaper to fill and to index than one object per line)."""

    numbers: list[int] = field(default_factory=list)  # 1-based line numbers in the file
    texts: list[str] = field(default_factory=list)  # cleaned text
    kinds: list[Kind] = field(default_factory=list)
    titleish: list[bool] = field(default_factory=list)  # text short enough to be a title
    values: list[object] = field(default_factory=list)  # see ``read_line``

    def __len__(self) -> int:
        return len(self.numbers)


def clean_line(raw: str) -> str:
    """Strip; in lines short enough to be titles also drop invisible characters and fold
    runs of (non-breaking) spaces. Abstracts keep their inner spacing: matching splits words
    on anything that is not a letter or digit, and checking 2 KB lines costs real time."""
    text = raw.strip()
    if len(text) > TITLE_MAX or (text.isascii() and "  " not in text and "\t" not in text):
        return text
    return " ".join(text.translate(_INVISIBLE).split())


def classify(text: str) -> Kind:
    """The kind of a cleaned, non-empty line."""
    return read_line(text)[0]


def read_line(text: str) -> tuple[Kind, object]:
    """The kind of a cleaned, non-empty line and its value: the count for AUTHORS and
    UPVOTES, ``(month, day, year or None, comments)`` for DATE, else None."""
    if len(text) > _SHORT:
        return TEXT, None
    first = text[0]
    if first == "·":
        return (SEPARATOR if text == "·" else TEXT), None
    if first == "•" or first.isdigit():
        if match := _AUTHORS.fullmatch(text):
            return AUTHORS, int(match.group(1))
        return _read_upvotes(text) if first != "•" else (TEXT, None)
    if first in "-[":
        return _read_upvotes(text)
    if first.isalpha() and (match := _DATE.fullmatch(text)):
        month = MONTHS.get(match.group("month").lower())
        if month is not None:
            year = match.group("year")
            day, count = int(match.group("day")), int(match.group("count") or 0)
            return DATE, (month, day, int(year) if year else None, count)
    return TEXT, None


def _read_upvotes(text: str) -> tuple[Kind, object]:
    if not _UPVOTES.fullmatch(text):
        return TEXT, None
    digits = "".join(ch for ch in text if ch.isdigit())
    # The page shows "-" for a paper nobody has upvoted yet.
    return UPVOTES, int(digits) if digits else 0


def looks_like_date(text: str) -> bool:
    """A line shaped like a date, even with a month name nobody knows ("Dex 99")."""
    return len(text) <= _SHORT and _DATE.fullmatch(text) is not None


def split_lines(data: bytes) -> tuple[Lines, list[SourceWarning]]:
    """The non-blank lines of a capture (UTF-8 bytes with LF line ends, as ``utf8_bytes``
    makes them), cleaned and classified, and warnings about bytes that are not UTF-8.

    This is the reader's hot loop (see bench/ingest.py). Long lines, titles and abstracts,
    are text without further ado; short ones repeat a lot ("·", "Aug 20"), so each distinct
    one is decoded, cleaned and classified once per file.
    """
    lines = Lines()
    add_number, add_text = lines.numbers.append, lines.texts.append
    add_kind, add_titleish, add_value = (
        lines.kinds.append,
        lines.titleish.append,
        lines.values.append,
    )
    seen: dict[bytes, tuple[str, Kind, object]] = {}
    bad_lines: list[int] = []
    cut_lines: list[SourceWarning] = []
    for number, raw in enumerate(data.split(b"\n"), 1):
        if not raw:
            continue
        if len(raw) > _SHORT_BYTES:
            text = _decode_long(raw)
            if text is None:
                bad_lines.append(number)
                text = decode_bad_line(raw[:_LINE_BYTES_MAX])
            text = text.strip()
            if len(text) > ABSTRACT_MAX or len(raw) > _LINE_BYTES_MAX:
                text = cut_abstract(text)
                cut_lines.append(SourceWarning(number, _cut_message(len(raw))))
            if len(text) <= TITLE_MAX:
                text = clean_line(text)
            if len(text) > _SHORT:  # a title or an abstract: unique, not worth caching
                add_number(number)
                add_text(text)
                add_kind(TEXT)
                add_titleish(len(text) <= TITLE_MAX)
                add_value(None)
                continue
            entry = _short_line(text)
        else:
            entry = seen.get(raw)
            if entry is None:
                text = decode_line(raw)
                if text is None:
                    bad_lines.append(number)
                    text = decode_bad_line(raw)
                    entry = _short_line(text)  # not cached: each bad line gets its warning
                else:
                    entry = seen[raw] = _short_line(text)
        if entry[1] is not END:
            add_number(number)
            add_text(entry[0])
            add_kind(entry[1])
            add_titleish(entry[1] is TEXT)
            add_value(entry[2])
    return lines, [*bad_bytes_warnings(bad_lines, len(lines)), *cut_lines]


def _decode_long(raw: bytes) -> str | None:
    if len(raw) <= _LINE_BYTES_MAX:
        return decode_line(raw)
    return decode_cut(raw[:_LINE_BYTES_MAX])


def _cut_message(size: int) -> str:
    return (
        f"a line of {size:,} bytes, far longer than any abstract; kept its first "
        f"{ABSTRACT_MAX:,} characters"
    )


def _short_line(text: str) -> tuple[str, Kind, object]:
    cleaned = clean_line(text)
    return (cleaned, *read_line(cleaned)) if cleaned else ("", END, None)


def parse(text: str, *, today: date, listing_date: date | None = None) -> Digest:
    """Read a capture given as text (see ``parse_bytes``)."""
    return parse_bytes(utf8_bytes(text.encode("utf-8")), today=today, listing_date=listing_date)


def parse_bytes(data: bytes, *, today: date, listing_date: date | None = None) -> Digest:
    """Read a capture from ``utf8_bytes``; ``listing_date`` overrides the file's year-less
    listing date. DigestError when the text is not a capture at all."""
    lines, warnings = split_lines(data)
    if not _recognizable(lines):
        raise DigestError(
            "this does not look like a Hugging Face Daily Papers capture (no header, no "
            "listing date, no '·' or 'N authors' lines); check that it is the right file"
        )
    digest = _Parser(lines, today, listing_date).run()
    return replace(digest, warnings=capped_warnings([*warnings, *digest.warnings]))


def _recognizable(lines: Lines) -> bool:
    """Does anything mark this text as a capture, so that plain prose is never read as papers?"""
    head = range(min(len(lines), _HEADER_SCAN))
    if any(lines.texts[i].casefold() in HEADER_LINES or lines.kinds[i] is DATE for i in head):
        return True
    return SEPARATOR in lines.kinds or AUTHORS in lines.kinds


def resolve_listing_date(month: int, day: int, today: date) -> date | None:
    """The latest date with this month and day on or before ``today`` (None if none exists)."""
    for year in range(today.year, today.year - 9, -1):
        try:
            candidate = date(year, month, day)
        except ValueError:
            continue
        if candidate <= today:
            return candidate
    return None


class _Parser:
    """Walks classified lines once, with look-ahead of two; collects cards and warnings."""

    def __init__(self, lines: Lines, today: date, override: date | None) -> None:
        self.end = len(lines)
        after = lines.numbers[-1] + 1 if self.end else 1
        # Two sentinels at the end: look-ahead never needs a bounds check.
        self.numbers = [*lines.numbers, after, after]
        self.texts = [*lines.texts, "", ""]
        self.kinds = [*lines.kinds, END, END]
        self.titleish = [*lines.titleish, False, False]
        self.values = [*lines.values, None, None]
        self.today = today
        self.override = override
        self.pos = 0
        self.cards: list[Card] = []
        self.warnings: list[SourceWarning] = []

    def warn(self, index: int | None, message: str) -> None:
        """A warning about the line at ``index`` (None: about the whole file)."""
        self.warnings.append(SourceWarning(None if index is None else self.numbers[index], message))

    def run(self) -> Digest:
        listing = self.read_header()
        while self.pos < self.end:
            self.read_card(listing)
        return Digest(FORMAT, listing, tuple(self.cards), tuple(self.warnings))

    # -- the header ----------------------------------------------------------------------
    def read_header(self) -> date:
        """Skip the header; return the listing date (file, override, or today with a warning)."""
        found = self.find_listing_line()
        if found is None:
            while self.pos < self.end and self.texts[self.pos].casefold() in HEADER_LINES:
                self.pos += 1
            if self.override:
                return self.override
            self.warn(
                None,
                f"no listing date line (like 'Dec 17') after the header; using the ingest date "
                f"{self.today.isoformat()} (pass --listing-date YYYY-MM-DD to set it)",
            )
            return self.today
        index, month, day = found
        text = self.texts[index]
        if self.override:
            if (self.override.month, self.override.day) != (month, day):
                self.warn(
                    index,
                    f"the listing date line says '{text}' but --listing-date is "
                    f"{self.override.isoformat()}; using --listing-date",
                )
            return self.override
        resolved = resolve_listing_date(month, day, self.today)
        if resolved is None:
            self.warn(index, f"'{text}' is not a real date; using the ingest date")
            return self.today
        return resolved

    def find_listing_line(self) -> tuple[int, int, int] | None:
        """The first bare 'Mon D' line before any card structure, if any; moves past it."""
        for index in range(min(_HEADER_SCAN, self.end)):
            kind = self.kinds[index]
            if kind is SEPARATOR or kind is AUTHORS or len(self.texts[index]) > TITLE_MAX:
                return None
            if kind is DATE:
                month, day, year, count = self.values[index]  # type: ignore[misc]
                if year or count:
                    return None
                self.pos = index + 1
                return index, month, day
        return None

    # -- one card ------------------------------------------------------------------------
    def read_card(self, listing: date) -> None:
        """Read one card starting at the current line, or skip one line it cannot place."""
        upvotes = self.read_upvotes()
        head = self.pos
        if self.kinds[head] is END:
            return
        if not self.titleish[head]:
            self.skip_stray()
            return
        self.pos += 1
        abstract = self.read_abstract(head)
        authors_count, organization = self.read_byline()
        published, comments = self.read_date_line(listing)
        title = self.texts[head]
        if not abstract:
            # A title-like line with no abstract may be anything (an organization line out of
            # place, a search query): never make a paper of it.
            self.warn(head, f"skipped '{_short(title)}': no abstract follows it")
            return
        self.cards.append(
            Card(
                title=title,
                abstract=abstract,
                line=self.numbers[head],
                authors_count=authors_count,
                organization=organization,
                published=published,
                comments=comments,
                upvotes=upvotes,
            )
        )

    def read_upvotes(self) -> int | None:
        index = self.pos
        if self.kinds[index] is not UPVOTES:
            return None
        self.pos += 1
        if self.kinds[self.pos] is END:
            self.warn(index, f"upvote count '{self.texts[index]}' with no paper after it; ignored")
        return self.values[index]  # type: ignore[return-value]

    def skip_stray(self) -> None:
        what = {
            TEXT: "text outside a card (an abstract whose title is missing?)",
            SEPARATOR: "a '·' outside a card",
            AUTHORS: "an authors line outside a card",
            DATE: "a date outside a card",
            UPVOTES: "an upvote count outside a card",
        }[self.kinds[self.pos]]
        self.warn(self.pos, f"skipped {what}")
        self.pos += 1

    def read_abstract(self, title: int) -> str:
        """The line after the title, unless it starts the next card or byline, or repeats it."""
        index = self.pos
        text = self.texts[index]
        if self.kinds[index] is not TEXT or text == self.texts[title] or len(text) < ABSTRACT_MIN:
            return ""
        if self.titleish[index]:
            # A short line followed by '·'/a date is a byline; followed by a long one, a title.
            after = self.kinds[index + 1]
            if after is SEPARATOR or after is DATE:
                return ""
            if after is TEXT and not self.titleish[index + 1]:
                return ""
        self.pos += 1
        return text

    def read_byline(self) -> tuple[int | None, str | None]:
        """'• N authors', or an organization line (the one followed by '·' or a date)."""
        index = self.pos
        if self.kinds[index] is AUTHORS:
            self.pos += 1
            return self.values[index], None  # type: ignore[return-value]
        after = self.kinds[index + 1]
        if self.titleish[index] and (after is SEPARATOR or after is DATE):
            self.pos += 1
            return None, self.texts[index]
        return None, None

    def read_date_line(self, listing: date) -> tuple[date | None, int]:
        """The optional '·' then the publication date and comment count."""
        separator = self.kinds[self.pos] is SEPARATOR
        if separator:
            self.pos += 1
        index = self.pos
        kind = self.kinds[index]
        if kind is DATE or (separator and kind is TEXT and looks_like_date(self.texts[index])):
            self.pos += 1
            return self.parse_date(index, listing)
        if separator:
            self.warn(index - 1, "no publication date after '·'")
        return None, 0

    def parse_date(self, index: int, listing: date) -> tuple[date | None, int]:
        """A date line's date (None, with a warning, if it is not a real one) and comments."""
        if self.kinds[index] is DATE:
            month, day, year, comments = self.values[index]  # type: ignore[misc]
        else:  # shaped like a date, but with a month nobody knows
            month, day, year, comments = None, 0, None, 0
        try:
            if month is None:
                raise ValueError("unknown month")
            published = date(year or listing.year, month, day)
        except ValueError:
            self.warn(index, f"cannot read the date '{self.texts[index]}'; left empty")
            return None, comments
        if year is None and published > listing:
            # A year-less date later than the listing can only be from the year before.
            return _previous_year(published), comments
        return published, comments


def _previous_year(day: date) -> date | None:
    try:
        return day.replace(year=day.year - 1)
    except ValueError:  # Feb 29
        return None


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _read(data: bytes, today: date, listing_date: date | None, keep: Iterable[str]) -> Digest:
    return parse_bytes(data, today=today, listing_date=listing_date)


# Read when no other reader recognises a file (a capture is plain text: it has no mark of
# its own, and ``parse_bytes`` refuses text that is not one).
READER = Reader(FORMAT, lambda data: True, _read)
