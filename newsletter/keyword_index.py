"""Every distinct keyword of every profile, found in a text in one pass over its words.

This is where the matching rules of ``newsletter.text`` are applied to papers: a word's
matching forms (plural rules) are worked out once per keyword, a trailing ``*`` becomes a
prefix lookup, and a keyword of several words is checked word by word from where its first
word occurs. Each distinct text word is looked up once and cached.
"""

from __future__ import annotations

from collections.abc import Sequence

from newsletter.text import Keyword, merge_ranges, word_forms, word_offsets


class KeywordIndex:
    """Every distinct keyword, findable in a paper's words in one pass over them."""

    def __init__(self) -> None:
        self.keywords: list[Keyword] = []
        self._ids: dict[tuple, int] = {}
        self._by_text: dict[str, int] = {}  # fast path: most profiles share keyword texts
        self._first_word: dict[str, list[int]] = {}  # word form -> keywords starting with it
        self._prefixes: dict[str, list[int]] = {}  # one-word prefix keywords
        self._rest: list[tuple[frozenset[str] | str, ...]] = []  # later words: forms or prefix
        self._cache: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def add(self, keyword: Keyword) -> int:
        """The id of ``keyword`` (keywords that match the same text share one)."""
        known = self._by_text.get(keyword.text)
        if known is not None:
            return known
        known = self._ids.get(keyword.key)
        if known is not None:
            self._by_text[keyword.text] = known
            return known
        kid = self._ids[keyword.key] = self._by_text[keyword.text] = len(self.keywords)
        self.keywords.append(keyword)
        first, last = keyword.words[0], len(keyword.words) - 1
        if keyword.prefix and last == 0:
            self._prefixes.setdefault(first, []).append(kid)
        else:
            for form in word_forms(first):
                self._first_word.setdefault(form, []).append(kid)
        self._rest.append(
            tuple(
                word if keyword.prefix and i == last else word_forms(word)
                for i, word in enumerate(keyword.words)
            )
        )
        self._cache.clear()
        return kid

    def hits(self, text_words: Sequence[str]) -> set[int]:
        """Ids of the keywords that occur in ``text_words``."""
        found: set[int] = set()
        rest = self._rest
        for position, word in enumerate(text_words):
            entry = self._cache.get(word)
            if entry is None:
                entry = self._cache[word] = self._starting_with(word)
            single, several = entry
            found.update(single)
            for kid in several:
                if kid not in found and _rest_matches(rest[kid], text_words, position):
                    found.add(kid)
        return found

    def positions(self, text_words: Sequence[str]) -> dict[int, list[int]]:
        """For each keyword that occurs in ``text_words``, the word positions it starts at."""
        found: dict[int, list[int]] = {}
        for position, word in enumerate(text_words):
            entry = self._cache.get(word)
            if entry is None:
                entry = self._cache[word] = self._starting_with(word)
            single, several = entry
            for kid in single:
                found.setdefault(kid, []).append(position)
            for kid in several:
                if _rest_matches(self._rest[kid], text_words, position):
                    found.setdefault(kid, []).append(position)
        return found

    def ranges(self, text: str) -> dict[int, tuple[tuple[int, int], ...]]:
        """For each keyword that occurs in ``text``, the character ranges of ``text`` (the
        original, before normalization) it covers, merged."""
        text_words, offsets = word_offsets(text)
        found = {}
        for kid, starts in self.positions(text_words).items():
            size = len(self.keywords[kid].words)
            spans = [(offsets[start][0], offsets[start + size - 1][1]) for start in starts]
            found[kid] = merge_ranges(spans)
        return found

    def _starting_with(self, word: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """One-word keywords this word matches, and longer ones whose first word it matches."""
        starts = self._first_word.get(word, [])
        single = [kid for kid in starts if len(self._rest[kid]) == 1]
        single += [
            kid for size in range(1, len(word) + 1) for kid in self._prefixes.get(word[:size], ())
        ]
        return tuple(single), tuple(kid for kid in starts if len(self._rest[kid]) > 1)


def _rest_matches(parts: tuple, text_words: Sequence[str], start: int) -> bool:
    if start + len(parts) > len(text_words):
        return False
    for offset in range(1, len(parts)):
        part, word = parts[offset], text_words[start + offset]
        if not (word.startswith(part) if isinstance(part, str) else word in part):
            return False
    return True
