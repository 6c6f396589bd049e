"""Reader for plain-text captures of the Hugging Face "Daily Papers" listing page.

A capture is a header, the listing date (month and day, no year), then one card per paper::

    [upvotes: "-", "19" or "[-] 19"]
    title
    abstract (one paragraph)
    "• 6 authors" or an organization line      (optional: cards may be cut short)
    "·"                                          (optional)
    "Aug 20" / "Dec 2, 2024 2" (date, comments)  (optional)

Every element stands on a line of its own. The reader classifies each non-blank line once,
then walks the cards with one line of look-ahead, so it never needs to backtrack and never
takes a line it cannot place as a paper: odd lines become warnings, not papers.
"""

from __future__ import annotations

import re
from datetime import date
from enum import Enum
from typing import NamedTuple

from newsletter.errors import DigestError
from newsletter.models import Card, Digest, SourceWarning

FORMAT = "hf-listing"

# Real titles stay well under this; abstracts run far over it. Used only to tell a title that
# follows a cut-short card from an abstract, never to reject text.
TITLE_MAX = 300
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
_new_tuple = tuple.__new__


class Line(NamedTuple):
    """A non-blank line: its 1-based number in the file, cleaned text and kind."""

    number: int
    text: str
    kind: Kind
    titleish: bool  # text short enough to be a title or an organization line
    value: object = None  # AUTHORS, UPVOTES: an int; DATE: (month, day, year | None, count)


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
    """The kind of a cleaned, non-empty line and the value it carries (see ``Line.value``)."""
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


def split_lines(text: str) -> list[Line]:
    """The non-blank lines of a capture, cleaned and classified, with their line numbers.

    This is the reader's hot loop (see bench/ingest.py). Long lines (abstracts) are text
    without further ado; short ones repeat a lot ("·", "Aug 20"), so each distinct one is
    cleaned and classified once per file.
    """
    if "\r" in text:
        # CRLF and lone CR (old Mac files) end lines too, as they do in any editor.
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines: list[Line] = []
    append = lines.append
    seen: dict[str, tuple[str, Kind, bool, object]] = {}
    for number, raw in enumerate(text.split("\n"), 1):
        if not raw:
            continue
        stripped = raw.strip()
        if len(stripped) > TITLE_MAX:
            append(_new_tuple(Line, (number, stripped, TEXT, False, None)))
            continue
        entry = seen.get(stripped)
        if entry is None:
            cleaned = clean_line(stripped)
            kind, value = read_line(cleaned) if cleaned else (END, None)
            entry = seen[stripped] = (cleaned, kind, kind is TEXT, value)
        if entry[1] is not END:
            append(_new_tuple(Line, (number, *entry)))
    return lines


def parse(text: str, *, today: date, listing_date: date | None = None) -> Digest:
    """Read a capture; ``listing_date`` overrides the file's year-less listing date."""
    lines = split_lines(text)
    if not _recognizable(lines):
        raise DigestError(
            "this does not look like a Hugging Face Daily Papers capture (no header, no "
            "listing date, no '·' or 'N authors' lines); check that it is the right file"
        )
    return _Parser(lines, today, listing_date).run()


def _recognizable(lines: list[Line]) -> bool:
    """Does anything mark this text as a capture, so that plain prose is never read as papers?"""
    head = lines[:_HEADER_SCAN]
    if any(line.text.casefold() in HEADER_LINES or line.kind is DATE for line in head):
        return True
    return any(line.kind is SEPARATOR or line.kind is AUTHORS for line in lines)


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

    def __init__(self, lines: list[Line], today: date, override: date | None) -> None:
        after = lines[-1].number + 1 if lines else 1
        sentinel = Line(after, "", END, False)
        # Two sentinels: look-ahead never needs a bounds check.
        self.lines = [*lines, sentinel, sentinel]
        self.end = len(lines)
        self.today = today
        self.override = override
        self.pos = 0
        self.cards: list[Card] = []
        self.warnings: list[SourceWarning] = []

    def warn(self, line: int | None, message: str) -> None:
        self.warnings.append(SourceWarning(line, message))

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
            while self.pos < self.end and self.lines[self.pos].text.casefold() in HEADER_LINES:
                self.pos += 1
            if self.override:
                return self.override
            self.warn(
                None,
                f"no listing date line (like 'Dec 17') after the header; using the ingest date "
                f"{self.today.isoformat()} (pass --listing-date YYYY-MM-DD to set it)",
            )
            return self.today
        line, month, day = found
        if self.override:
            if (self.override.month, self.override.day) != (month, day):
                self.warn(
                    line.number,
                    f"the listing date line says '{line.text}' but --listing-date is "
                    f"{self.override.isoformat()}; using --listing-date",
                )
            return self.override
        resolved = resolve_listing_date(month, day, self.today)
        if resolved is None:
            self.warn(line.number, f"'{line.text}' is not a real date; using the ingest date")
            return self.today
        return resolved

    def find_listing_line(self) -> tuple[Line, int, int] | None:
        """The first bare 'Mon D' line before any card structure, if any; moves past it."""
        for index, line in enumerate(self.lines[: min(_HEADER_SCAN, self.end)]):
            if line.kind is SEPARATOR or line.kind is AUTHORS or len(line.text) > TITLE_MAX:
                return None
            if line.kind is DATE:
                month, day, year, count = line.value  # type: ignore[misc]
                if year or count:
                    return None
                self.pos = index + 1
                return line, month, day
        return None

    # -- one card ------------------------------------------------------------------------
    def read_card(self, listing: date) -> None:
        """Read one card starting at the current line, or skip one line it cannot place."""
        upvotes = self.read_upvotes()
        head = self.lines[self.pos]
        if head.kind is END:
            return
        if not head.titleish:
            self.skip_stray(head)
            return
        self.pos += 1
        abstract = self.read_abstract(head)
        authors_count, organization = self.read_byline()
        published, comments = self.read_date_line(listing)
        if not abstract:
            # A title-like line with no abstract may be anything (an organization line out of
            # place, a search query): never make a paper of it.
            self.warn(head.number, f"skipped '{_short(head.text)}': no abstract follows it")
            return
        self.cards.append(
            Card(
                title=head.text,
                abstract=abstract,
                line=head.number,
                authors_count=authors_count,
                organization=organization,
                published=published,
                comments=comments,
                upvotes=upvotes,
            )
        )

    def read_upvotes(self) -> int | None:
        line = self.lines[self.pos]
        if line.kind is not UPVOTES:
            return None
        self.pos += 1
        if self.lines[self.pos].kind is END:
            self.warn(line.number, f"upvote count '{line.text}' with no paper after it; ignored")
        return line.value  # type: ignore[return-value]

    def skip_stray(self, line: Line) -> None:
        what = {
            TEXT: "text outside a card (an abstract whose title is missing?)",
            SEPARATOR: "a '·' outside a card",
            AUTHORS: "an authors line outside a card",
            DATE: "a date outside a card",
            UPVOTES: "an upvote count outside a card",
        }[line.kind]
        self.warn(line.number, f"skipped {what}")
        self.pos += 1

    def read_abstract(self, title: Line) -> str:
        """The line after the title, unless it starts the next card or byline, or repeats it."""
        line, after = self.lines[self.pos], self.lines[self.pos + 1]
        if line.kind is not TEXT or line.text == title.text:
            return ""
        # A short line followed by '·'/a date is a byline; followed by a long one, a new title.
        if line.titleish and (
            after.kind is SEPARATOR
            or after.kind is DATE
            or (after.kind is TEXT and not after.titleish)
        ):
            return ""
        self.pos += 1
        return line.text

    def read_byline(self) -> tuple[int | None, str | None]:
        """'• N authors', or an organization line (the one followed by '·' or a date)."""
        line, after = self.lines[self.pos], self.lines[self.pos + 1]
        if line.kind is AUTHORS:
            self.pos += 1
            return line.value, None  # type: ignore[return-value]
        if line.titleish and (after.kind is SEPARATOR or after.kind is DATE):
            self.pos += 1
            return None, line.text
        return None, None

    def read_date_line(self, listing: date) -> tuple[date | None, int]:
        """The optional '·' then the publication date and comment count."""
        separator = self.lines[self.pos].kind is SEPARATOR
        if separator:
            self.pos += 1
        line = self.lines[self.pos]
        if line.kind is DATE or (separator and line.kind is TEXT and looks_like_date(line.text)):
            self.pos += 1
            return self.parse_date(line, listing)
        if separator:
            self.warn(self.lines[self.pos - 1].number, "no publication date after '·'")
        return None, 0

    def parse_date(self, line: Line, listing: date) -> tuple[date | None, int]:
        """A date line's date (None, with a warning, if it is not a real one) and comments."""
        if line.kind is DATE:
            month, day, year, comments = line.value  # type: ignore[misc]
        else:  # shaped like a date, but with a month nobody knows
            month, day, year, comments = None, 0, None, 0
        try:
            if month is None:
                raise ValueError("unknown month")
            published = date(year or listing.year, month, day)
        except ValueError:
            self.warn(line.number, f"cannot read the date '{line.text}'; left empty")
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
