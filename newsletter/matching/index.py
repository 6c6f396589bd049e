"""Every distinct keyword of every profile, found in a text in one pass over its words.

This is where the matching rules of ``newsletter.matching.keywords`` are applied to papers: a word's
matching forms (plural rules) are worked out once per keyword, a trailing ``*`` becomes a
prefix lookup, and a keyword of several words is checked word by word from where its first
word occurs. Each distinct text word is looked up once and cached.
"""

from __future__ import annotations

from collections.abc import Sequence

from newsletter.matching.keywords import Keyword, Pattern, merge_ranges, word_forms, word_offsets


class KeywordIndex:
    """Every distinct keyword, findable in a paper's words in one pass over them.

    The index works on patterns (a keyword has one, or one per ``|`` alternative); each
    pattern knows the keywords it belongs to. While every keyword is a single pattern of its
    own (the usual case), pattern ids are keyword ids and hits need no translation."""

    def __init__(self) -> None:
        self.keywords: list[Keyword] = []
        self._ids: dict[tuple, int] = {}
        self._by_text: dict[str, int] = {}  # fast path: most profiles share keyword texts
        self._patterns: list[Pattern] = []
        self._pattern_ids: dict[Pattern, int] = {}
        self._owners: list[tuple[int, ...]] = []  # pattern id -> keyword ids
        self._identity = True  # pattern i is keyword i's only pattern, for every i
        self._first_word: dict[str, list[int]] = {}  # word form -> patterns starting with it
        self._prefixes: dict[str, list[int]] = {}  # one-word prefix patterns
        self._longest_prefix = 0  # no word needs slicing beyond this many characters
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
        for pattern in keyword.key:
            pid = self._add_pattern(pattern)
            self._owners[pid] += (kid,)
            self._identity = self._identity and self._owners[pid] == (pid,)
        return kid

    def _add_pattern(self, pattern: Pattern) -> int:
        known = self._pattern_ids.get(pattern)
        if known is not None:
            return known
        pid = self._pattern_ids[pattern] = len(self._patterns)
        self._patterns.append(pattern)
        self._owners.append(())
        first, last = pattern.words[0], len(pattern.words) - 1
        if pattern.prefix and last == 0:
            self._prefixes.setdefault(first, []).append(pid)
            self._longest_prefix = max(self._longest_prefix, len(first))
        else:
            for form in word_forms(first):
                self._first_word.setdefault(form, []).append(pid)
        self._rest.append(
            tuple(
                word if pattern.prefix and i == last else word_forms(word)
                for i, word in enumerate(pattern.words)
            )
        )
        self._cache.clear()
        return pid

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
            for pid in several:
                if pid not in found and _rest_matches(rest[pid], text_words, position):
                    found.add(pid)
        if self._identity:
            return found
        return {kid for pid in found for kid in self._owners[pid]}

    def ranges(self, text: str) -> dict[int, tuple[tuple[int, int], ...]]:
        """For each keyword that occurs in ``text``, the character ranges of ``text`` (the
        original, before normalization) it covers, merged."""
        text_words, offsets = word_offsets(text)
        spans: dict[int, list[tuple[int, int]]] = {}
        for pid, starts in self._positions(text_words).items():
            size = len(self._patterns[pid].words)
            found = [(offsets[start][0], offsets[start + size - 1][1]) for start in starts]
            for kid in self._owners[pid]:
                spans.setdefault(kid, []).extend(found)
        return {kid: merge_ranges(found) for kid, found in spans.items()}

    def _positions(self, text_words: Sequence[str]) -> dict[int, list[int]]:
        """For each pattern that occurs in ``text_words``, the word positions it starts at."""
        found: dict[int, list[int]] = {}
        for position, word in enumerate(text_words):
            entry = self._cache.get(word)
            if entry is None:
                entry = self._cache[word] = self._starting_with(word)
            single, several = entry
            for pid in single:
                found.setdefault(pid, []).append(position)
            for pid in several:
                if _rest_matches(self._rest[pid], text_words, position):
                    found.setdefault(pid, []).append(position)
        return found

    def _starting_with(self, word: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """One-word patterns this word matches, and longer ones whose first word it matches."""
        starts = self._first_word.get(word, [])
        single = [pid for pid in starts if len(self._rest[pid]) == 1]
        # Only prefixes as long as the longest prefix keyword can match: a 1 MB "word" costs
        # as much as a short one, not a million slices.
        longest = min(len(word), self._longest_prefix)
        single += [
            pid for size in range(1, longest + 1) for pid in self._prefixes.get(word[:size], ())
        ]
        return tuple(single), tuple(pid for pid in starts if len(self._rest[pid]) > 1)


def _rest_matches(parts: tuple, text_words: Sequence[str], start: int) -> bool:
    if start + len(parts) > len(text_words):
        return False
    for offset in range(1, len(parts)):
        part, word = parts[offset], text_words[start + offset]
        if not (word.startswith(part) if isinstance(part, str) else word in part):
            return False
    return True
