"""Words, keywords and where they occur: the matching rules, in one place.

- Text and keywords are NFKC-normalized and casefolded, then split into **words**: maximal
  runs of letters and digits (everything else, hyphens and underscores included, separates).
- Two words match when equal, when one is the other plus "s" or "es", or when one ends in
  "y" and the other replaces that "y" with "ies".
- A keyword of several words matches them consecutively; a trailing "*" makes its last word
  a prefix.
- A keyword may list alternatives separated by "|": it occurs when any of them does.

``newsletter.matching.index`` applies these rules to papers; tests/matching_helpers.py states
them again as plainly as possible, and the tests hold the index to that reference.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass, field
from typing import NamedTuple

from newsletter.errors import KeywordError

_WORD = re.compile(r"[^\W_]+")
# Line breaks and other C0/C1 controls, and the bidi embeddings, overrides and isolates: none
# belongs in a keyword, a name or a header (a NUL ends a header early for some readers; an
# override makes "gpj.exe" read "exe.jpg").
UNSAFE_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def one_line(text: str) -> str:
    """Line breaks, control and bidi-override characters become spaces, runs of space one
    (no header or layout injection)."""
    # Most fields already are one line (printable: no controls and no whitespace but " ").
    if text.isprintable() and "  " not in text and text[:1] != " " and text[-1:] != " ":
        return text
    return " ".join(UNSAFE_CHARACTER.sub(" ", text).split())


def normalize(text: str) -> str:
    """NFKC, then casefold."""
    return unicodedata.normalize("NFKC", text).casefold()


def words(text: str) -> list[str]:
    """The words of ``text`` under the matching rules."""
    return _WORD.findall(normalize(text))


def word_forms(word: str) -> frozenset[str]:
    """Every word that matches ``word``: itself, its plural and singular forms."""
    forms = {word, word + "s", word + "es"}
    if word.endswith("s"):
        forms.add(word[:-1])
    if word.endswith("es"):
        forms.add(word[:-2])
    if word.endswith("y"):
        forms.add(word[:-1] + "ies")
    if word.endswith("ies"):
        forms.add(word[:-3] + "y")
    forms.discard("")
    return frozenset(forms)


class Pattern(NamedTuple):
    """One way a keyword can occur: its words, the last one maybe a prefix. (A named tuple:
    keywords are compared by their patterns ~60 times a subscriber while a profile file is
    checked, and a dataclass's hash, in Python, was a tenth of loading it.)"""

    words: tuple[str, ...]
    prefix: bool  # the last word is a prefix ("compress*")


@dataclass(frozen=True, slots=True)
class Keyword:
    """A keyword as the subscriber wrote it, and the patterns it stands for: one, or one per
    alternative (``large language model | LLM``)."""

    text: str
    patterns: tuple[Pattern, ...]
    # Keywords with equal keys match exactly the same text. (Computed once: a profile file's
    # checks ask for it ~60 times a subscriber, and it was a fifth of loading the file.)
    key: tuple[Pattern, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        unique = sorted(set(self.patterns), key=lambda p: (p.words, p.prefix))
        object.__setattr__(self, "key", tuple(unique))

    def __reduce__(self) -> tuple:
        # Pickled as its text, unpickled through parse_keyword's cache: one object per
        # text, made once a process (checked entries come back from the workers in chunks,
        # each with its own copies: making those again cost more than checking them).
        return parse_keyword, (self.text,)


ENTRY_MAX_CHARS = 200  # a keyword, an exclusion, an author: a phrase, never a page
LIST_MAX_ENTRIES = 200  # keywords (and exclude, require, authors) in one profile


def entry_problem(text: str) -> str | None:
    """Why ``text`` cannot be one entry of a profile's list (too long, or holding an
    invisible format character, such as a zero-width space, that makes look-alike entries),
    or None."""
    if len(text) > ENTRY_MAX_CHARS:
        return (
            f"'{text[:40]}...' is {len(text)} characters long; an entry is at most "
            f"{ENTRY_MAX_CHARS} (a word or a phrase)"
        )
    for character in text:
        if unicodedata.category(character) == "Cf":
            name = unicodedata.name(character, "a format character")
            return (
                f"{text!r} holds the invisible character U+{ord(character):04X} ({name}); "
                "remove it (retype the entry if you cannot see it)"
            )
    return None


@functools.lru_cache(maxsize=65536)
def parse_keyword(text: str) -> Keyword:
    """Parse a keyword; KeywordError for an empty one, an empty alternative or a misplaced
    ``*``. Cached: profiles share most keywords, and one Keyword per text keeps 100,000
    profiles small."""
    stripped = text.strip()
    unsafe = UNSAFE_CHARACTER.search(stripped)
    if unsafe:
        raise KeywordError(
            f"{stripped!r} holds the control character U+{ord(unsafe.group()):04X}; remove it"
        )
    too_much = entry_problem(stripped)
    if too_much:
        raise KeywordError(too_much)
    parts = stripped.split("|")
    if len(parts) > 1 and not all(part.strip() for part in parts):
        raise KeywordError(
            f"'{text}' has an empty alternative; separate alternatives with one '|', as in "
            "'large language model | LLM'"
        )
    return Keyword(stripped, tuple(_pattern(text, part) for part in parts))


def _pattern(text: str, part: str) -> Pattern:
    stripped = part.strip()
    prefix = stripped.endswith("*")
    body = stripped[:-1] if prefix else stripped
    if "*" in body:
        raise KeywordError(
            f"'{text}': '*' may only end a keyword (write 'compress*', not '*compress' or "
            "'com*press')"
        )
    found = tuple(words(body))
    if not found:
        raise KeywordError(f"'{text}' has no letters or digits to match")
    if prefix and not _WORD.fullmatch(normalize(body[-1])):
        raise KeywordError(f"'{text}': put '*' right after a word, as in 'compress*'")
    return Pattern(found, prefix)


def word_offsets(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """The words of ``text`` and, for each, its character range in ``text`` itself.

    When normalization changes nothing but case, one character to one, offsets carry over.
    Otherwise each character (with any combining marks after it) is normalized on its own.
    """
    normalized = normalize(text)
    if len(normalized) == len(text) and unicodedata.is_normalized("NFKC", text):
        return _WORD.findall(normalized), [m.span() for m in _WORD.finditer(normalized)]
    return _offsets_by_segment(text)


def _offsets_by_segment(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    pieces: list[str] = []
    origin: list[int] = []  # for each normalized character, where its segment starts
    ends: list[int] = []
    index = 0
    while index < len(text):
        end = index + 1
        while end < len(text) and unicodedata.combining(text[end]):
            end += 1
        piece = normalize(text[index:end])
        pieces.append(piece)
        origin.extend([index] * len(piece))
        ends.extend([end] * len(piece))
        index = end
    joined = "".join(pieces)
    found_words, spans = [], []
    for match in _WORD.finditer(joined):
        found_words.append(match.group())
        spans.append((origin[match.start()], ends[match.end() - 1]))
    return found_words, spans


def merge_ranges(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Sort ranges and merge the ones that overlap or touch."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return tuple(merged)


_NAME_SEPARATORS = re.compile(r"[\s.\-‐,]+")


def author_keys(name: str) -> tuple[str, ...]:
    """The keys a name is known by: all its names (accents and case aside, dots and hyphens
    as spaces), and its initials with the last name ("Yann LeCun": "yann lecun", "y lecun")."""
    stripped = "".join(
        ch for ch in unicodedata.normalize("NFKD", name) if not unicodedata.combining(ch)
    )
    parts = [part for part in _NAME_SEPARATORS.split(stripped.casefold()) if part]
    if not parts:
        return ()
    full = " ".join(parts)
    initials = " ".join([*(part[0] for part in parts[:-1]), parts[-1]])
    return (full,) if full == initials else (full, initials)


def followed_author_key(name: str) -> str:
    """The key a followed name matches by: initials and last name when only initials are
    given ("Y. LeCun"), else all its names."""
    keys = author_keys(name)
    if not keys:
        return ""
    return keys[-1] if all(len(part) == 1 for part in keys[0].split()[:-1]) else keys[0]
