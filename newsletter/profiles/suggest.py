"""Suggestions from a reader's feedback: when three or more papers they marked "not
relevant" came only through the same keyword, what change to the profile would have kept
them out, and what it would have done to the rest of what they were sent.

Explainable and keyword-based (no model): the words those papers share that the papers the
reader liked lack become an ``exclude``; the phrase the keyword forms in the liked papers
replaces the lone word; a word every liked paper has becomes a ``require``. Each is counted
against the reader's past papers: how many it removes, of the marked and of the liked."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from newsletter.matching.index import KeywordIndex
from newsletter.matching.keywords import parse_keyword, words
from newsletter.models import Match
from newsletter.profiles.edit import PreferenceChange

MARKED_LEAST = 3  # "not relevant" papers through one keyword before it is worth a change
SUGGESTED_MOST = 3  # per keyword

# Words too common in abstracts to tell one topic from another.
_COMMON = frozenset(
    """about above across after again against also among based been being between both
    could does doing during each either even every first from further given have having
    here however into itself just large less like made make many more most much must
    new novel often only other over paper present propose proposed results same several
    show shows since some such than that their them then there these they this those
    three through towards under using very well were what when where which while whose
    will with within without would your approach method methods model models task tasks
    data work study learning performance existing state art""".split()
)


@dataclass(frozen=True)
class Suggestion:
    """One change to a profile, with what it would have done to the reader's past papers."""

    keyword: str  # the keyword, as written, that brought the unwanted papers
    change: str  # "exclude" | "phrase" | "require"
    value: str  # the word to exclude or require, or the phrase to use instead
    marked: int  # papers marked not relevant that came only through ``keyword``
    removes_marked: int  # of those, how many the change keeps out
    removes_liked: int  # papers marked "more like this" it would keep out (0 when offered)
    removes_past: int  # past papers it would keep out, the marked ones included
    past: int  # the past papers it was counted on

    def to_json(self) -> dict[str, object]:
        """As ``newsletter history --json`` lists it."""
        return {
            "keyword": self.keyword,
            "change": self.change,
            "value": self.value,
            "marked": self.marked,
            "removes_marked": self.removes_marked,
            "removes_past": self.removes_past,
            "past": self.past,
            "text": self.text,
        }

    def change_to_make(self) -> PreferenceChange:
        """The suggestion as an edit of the profile file (``profiles.edit``)."""
        if self.change == "exclude":
            return PreferenceChange(add_exclude=(self.value,))
        if self.change == "require":
            return PreferenceChange(add_require=(self.value,))
        return PreferenceChange(add_keywords=(self.value,), remove_keywords=(self.keyword,))

    @property
    def text(self) -> str:
        """The suggestion as the reader reads it."""
        action = {
            "exclude": f"add “{self.value}” to your exclusions",
            "phrase": f"replace “{self.keyword}” with the phrase “{self.value}”",
            "require": f"require “{self.value}”",
        }[self.change]
        return (
            f"{self.marked} papers you marked not relevant came only through “{self.keyword}”: "
            f"{action}. Of your last {self.past} papers it would have kept out "
            f"{self.removes_past}, {self.removes_marked} of the {self.marked} you marked, "
            "and none you liked."
        )


def suggest(
    past: Sequence[Match], less: Iterable[str], more: Iterable[str]
) -> tuple[Suggestion, ...]:
    """The changes the feedback calls for: ``past`` the papers sent (as their digests
    explained them), ``less`` and ``more`` the ids marked "not relevant" and "more like
    this"."""
    less, more = set(less) - set(more), set(more)
    liked = [m for m in past if m.paper.id in more]
    by_keyword: dict[str, list[Match]] = {}
    for match in past:
        through = set(match.title_keywords) | set(match.abstract_keywords)
        if match.paper.id in less and len(through) == 1 and not match.authors:
            by_keyword.setdefault(through.pop(), []).append(match)
    found: list[Suggestion] = []
    for keyword, marked in by_keyword.items():
        if len(marked) >= MARKED_LEAST:
            found += _for_keyword(keyword, marked, liked, past)[:SUGGESTED_MOST]
    return tuple(found)


def _for_keyword(
    keyword: str, marked: list[Match], liked: list[Match], past: Sequence[Match]
) -> list[Suggestion]:
    """The changes for one keyword, the best first: most marked papers kept out, then
    fewest other past papers."""
    own = set(words(keyword.replace("*", " ")))
    texts = {m.paper.id: _words(m) for m in past}
    candidates = [("exclude", w) for w in _shared_words(marked, liked, texts, own)]
    candidates += [("phrase", p) for p in _phrases(keyword, liked, marked)]
    candidates += [("require", w) for w in _liked_words(liked, marked, texts, own)]
    found = []
    for change, value in candidates:
        removed = {m.paper.id for m in past if _removes(change, value, keyword, m)}
        liked_out = sum(m.paper.id in removed for m in liked)
        marked_out = sum(m.paper.id in removed for m in marked)
        suggestion = Suggestion(keyword, change, value, len(marked), marked_out, liked_out,
                                len(removed), len(past))  # fmt: skip
        if suggestion.removes_liked == 0 and marked_out >= 2:
            found.append(suggestion)
    found.sort(key=lambda s: (-s.removes_marked, s.removes_past, s.change, s.value))
    return found


def _words(match: Match) -> set[str]:
    return set(words(f"{match.paper.title} {match.paper.abstract}"))


def _telling(word: str, own: set[str]) -> bool:
    """Could ``word`` tell topics apart (not the keyword's own, not a common word)?"""
    return len(word) >= 4 and word not in own and word not in _COMMON and not word.isdigit()


def _shared_words(
    marked: list[Match], liked: list[Match], texts: dict[str, set[str]], own: set[str]
) -> list[str]:
    """Words at least two marked papers share that no liked paper has, the most shared
    first."""
    in_liked = set().union(*(texts[m.paper.id] for m in liked)) if liked else set()
    counts = Counter(w for m in marked for w in texts[m.paper.id] if _telling(w, own))
    shared = [w for w, n in counts.items() if n >= 2 and w not in in_liked]
    return sorted(shared, key=lambda w: (-counts[w], w))[:8]


def _liked_words(
    liked: list[Match], marked: list[Match], texts: dict[str, set[str]], own: set[str]
) -> list[str]:
    """Words every liked paper has (two liked at least) and no marked one."""
    if len(liked) < 2:
        return []
    common = set.intersection(*(texts[m.paper.id] for m in liked))
    in_marked = set().union(*(texts[m.paper.id] for m in marked))
    return sorted(w for w in common - in_marked if _telling(w, own))[:4]


def _phrases(keyword: str, liked: list[Match], marked: list[Match]) -> list[str]:
    """Two-word phrases of a one-word keyword with its neighbour in a liked paper, which no
    marked paper has ("medical segmentation" for "segmentation")."""
    if "|" in keyword or len(words(keyword)) != 1:
        return []
    found = Counter()
    for match in liked:
        found.update(_neighbours(keyword, match))
    return sorted(
        (p for p in found if not any(_has(p, m) for m in marked)), key=lambda p: (-found[p], p)
    )[:3]


def _neighbours(keyword: str, match: Match) -> set[str]:
    """The phrases "<word> <keyword>" and "<keyword> <word>" as they occur in the paper."""
    text = words(f"{match.paper.title}. {match.paper.abstract}")
    out = set()
    for at, word in enumerate(text):
        if _occurs(keyword, [word]):
            if at > 0 and _telling(text[at - 1], set()):
                out.add(f"{text[at - 1]} {word}")
            if at + 1 < len(text) and _telling(text[at + 1], set()):
                out.add(f"{word} {text[at + 1]}")
    return out


@functools.lru_cache(maxsize=256)
def _index_of(keyword: str) -> tuple[KeywordIndex, int]:
    """A keyword index of ``keyword`` alone, and its id there (the matching rules exactly)."""
    index = KeywordIndex()
    return index, index.add(parse_keyword(keyword))


def _occurs(keyword: str, text_words: Sequence[str]) -> bool:
    index, kid = _index_of(keyword)
    return kid in index.hits(list(text_words))


def _has(keyword: str, match: Match) -> bool:
    """Does ``keyword`` occur in the paper's title or abstract?"""
    return _occurs(keyword, words(f"{match.paper.title}. {match.paper.abstract}"))


def _removes(change: str, value: str, keyword: str, match: Match) -> bool:
    """Would the change have kept ``match`` out of its digest?"""
    if match.authors:
        return False  # (a followed author's paper comes whatever the keywords)
    if change == "exclude":
        return _has(value, match)
    if change == "require":
        return not _has(value, match)
    through = set(match.title_keywords) | set(match.abstract_keywords)
    return through == {keyword} and not _has(value, match)  # the phrase instead of the word
