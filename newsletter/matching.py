"""Which papers each subscriber receives, and why.

All profiles compile into one ``Matcher``. Each paper's text is scanned once for every
distinct keyword of every profile (``KeywordIndex``); the hits then add weights to the
subscribers who use those keywords through per-keyword postings, in numpy, one block of
papers at a time. So the Python work grows with the text and the hits, while the
subscribers x papers arithmetic runs in C, and memory stays bounded by the block size.
Rules: see ``newsletter.text`` and the README.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from newsletter.config import MatchSettings
from newsletter.models import Paper, Subscriber
from newsletter.text import Keyword, highlight_spans, word_forms, words

_BLOCK = 256  # papers per block: bounds memory at subscribers x _BLOCK cells


@dataclass(frozen=True)
class Match:
    """One paper for one subscriber, with the explanation."""

    paper: Paper
    score: int
    title_keywords: tuple[str, ...]  # as the subscriber wrote them
    abstract_keywords: tuple[str, ...]
    title_spans: tuple[tuple[int, int], ...]  # character ranges of paper.title to highlight
    abstract_spans: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Selection:
    """What one subscriber receives now: the best matches, in send order."""

    subscriber: Subscriber
    matches: tuple[Match, ...]
    candidates: int  # new papers not yet sent to them
    matched: int  # candidates that passed score, require and exclude

    @property
    def left_out(self) -> int:
        """Matches beyond ``max_papers``."""
        return self.matched - len(self.matches)


@dataclass(frozen=True)
class History:
    """What a subscriber already received: when, and which papers."""

    last_digest_at: datetime | None = None
    sent: frozenset[str] = frozenset()


class KeywordIndex:
    """Every distinct keyword, findable in a paper's words in one pass over them."""

    def __init__(self) -> None:
        self.keywords: list[Keyword] = []
        self._ids: dict[tuple, int] = {}
        self._first_word: dict[str, list[int]] = {}  # word form -> keywords starting with it
        self._prefixes: dict[str, list[int]] = {}  # one-word prefix keywords
        self._rest: list[tuple[frozenset[str] | str, ...]] = []  # later words: forms or prefix
        self._cache: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def add(self, keyword: Keyword) -> int:
        """The id of ``keyword`` (keywords that match the same text share one)."""
        known = self._ids.get(keyword.key)
        if known is not None:
            return known
        kid = self._ids[keyword.key] = len(self.keywords)
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


class _Postings:
    """For each keyword id, the subscribers (row numbers) who use it in one role."""

    def __init__(self, rows_by_keyword: dict[int, list[int]]) -> None:
        self.rows = {kid: np.array(rows, dtype=np.int64) for kid, rows in rows_by_keyword.items()}

    def __bool__(self) -> bool:
        return bool(self.rows)


class Matcher:
    """All profiles compiled once; ``select`` matches any set of papers against them."""

    def __init__(self, subscribers: Sequence[Subscriber], settings: MatchSettings) -> None:
        self.subscribers = tuple(subscribers)
        self.settings = settings
        self.index = KeywordIndex()
        roles: dict[str, dict[int, list[int]]] = {"keywords": {}, "require": {}, "exclude": {}}
        self._ids: list[dict[str, list[int]]] = []
        for row, subscriber in enumerate(self.subscribers):
            ids = {}
            for role, postings in roles.items():
                ids[role] = [self.index.add(k) for k in getattr(subscriber, role)]
                for kid in set(ids[role]):
                    postings.setdefault(kid, []).append(row)
            self._ids.append(ids)
        self._keywords = _Postings(roles["keywords"])
        self._require = _Postings(roles["require"])
        self._exclude = _Postings(roles["exclude"])
        self._min_score = np.array([s.min_score for s in self.subscribers], dtype=np.int64)
        self._required = np.array([len(set(i["require"])) for i in self._ids], dtype=np.int64)
        self._limit = max((s.max_papers for s in self.subscribers), default=1)

    def select(
        self,
        papers: Sequence[Paper],
        now: datetime,
        history: Mapping[str, History] | None = None,
    ) -> list[Selection]:
        """Each subscriber's selection from ``papers``, in subscriber order."""
        history = history or {}
        scan = _Scan(self.index, papers)
        state = _Ranking(len(self.subscribers), self._limit, scan.order)
        cutoffs = self._cutoffs(now, history)
        sent = self._sent_pairs(papers, history)
        for start in range(0, len(papers), _BLOCK):
            block = range(start, min(start + _BLOCK, len(papers)))
            self._score_block(scan, block, cutoffs, sent, state)
        return [self._selection(row, scan, state) for row in range(len(self.subscribers))]

    def _cutoffs(self, now: datetime, history: Mapping[str, History]) -> np.ndarray:
        """Per subscriber, the time after which a paper counts as new for them."""
        lookback = (now - timedelta(days=self.settings.lookback_days)).timestamp() - 1e-6
        return np.array(
            [
                last.timestamp() if (last := _last_digest(history, s)) else lookback
                for s in self.subscribers
            ]
        )

    def _sent_pairs(self, papers: Sequence[Paper], history: Mapping[str, History]):
        """(subscriber row, paper index) of every paper already sent to that subscriber."""
        where = {paper.id: index for index, paper in enumerate(papers)}
        pairs = [
            (row, where[pid])
            for row, subscriber in enumerate(self.subscribers)
            for pid in _sent(history, subscriber)
            if pid in where
        ]
        return np.array(pairs, dtype=np.int64).reshape(-1, 2)

    def _score_block(self, scan, block: range, cutoffs, sent, state) -> None:
        rows, width = len(self.subscribers), len(block)
        weights = self.settings
        score = np.zeros((rows, width), dtype=np.int64)
        required = np.zeros((rows, width), dtype=np.int64) if self._require else None
        excluded = np.zeros((rows, width), dtype=bool) if self._exclude else None
        for column, paper in enumerate(block):
            title, abstract = scan.title_hits[paper], scan.abstract_hits[paper]
            _add(score, column, self._keywords, title, weights.title_weight)
            _add(score, column, self._keywords, abstract, weights.abstract_weight)
            either = title | abstract
            if required is not None:
                _add(required, column, self._require, either, 1)
            if excluded is not None:
                _add(excluded, column, self._exclude, either, True)
        # Candidates: first seen after the cutoff, and never sent to this subscriber.
        candidates = scan.first_seen[block.start : block.stop][None, :] > cutoffs[:, None]
        inside = sent[(sent[:, 1] >= block.start) & (sent[:, 1] < block.stop)]
        candidates[inside[:, 0], inside[:, 1] - block.start] = False
        eligible = candidates & (score >= self._min_score[:, None])
        if required is not None:
            eligible &= required == self._required[:, None]
        if excluded is not None:
            eligible &= ~excluded
        state.add(block, score, eligible, candidates)

    def _selection(self, row: int, scan: _Scan, state: _Ranking) -> Selection:
        subscriber = self.subscribers[row]
        ids = self._ids[row]
        chosen = state.best(row, subscriber.max_papers)
        matches = tuple(
            self._explain(subscriber, ids["keywords"], scan, paper, score)
            for paper, score in chosen
        )
        return Selection(subscriber, matches, int(state.candidates[row]), int(state.matched[row]))

    def _explain(
        self, subscriber: Subscriber, kids: list[int], scan: _Scan, paper: int, score: int
    ) -> Match:
        title_hits, abstract_hits = scan.title_hits[paper], scan.abstract_hits[paper]
        in_title = [
            k for k, kid in zip(subscriber.keywords, kids, strict=True) if kid in title_hits
        ]
        in_abstract = [
            k for k, kid in zip(subscriber.keywords, kids, strict=True) if kid in abstract_hits
        ]
        item = scan.papers[paper]
        return Match(
            paper=item,
            score=score,
            title_keywords=tuple(k.text for k in in_title),
            abstract_keywords=tuple(k.text for k in in_abstract),
            title_spans=highlight_spans(in_title, item.title),
            abstract_spans=highlight_spans(in_abstract, item.abstract),
        )


def _add(target: np.ndarray, column: int, postings: _Postings, hits: set[int], value) -> None:
    """Add ``value`` in ``column`` for every subscriber using a hit keyword (on bool: or)."""
    for kid in hits:
        rows = postings.rows.get(kid)
        if rows is not None:
            target[rows, column] += value


def _last_digest(history: Mapping[str, History], subscriber: Subscriber) -> datetime | None:
    record = history.get(subscriber.email)
    return record.last_digest_at if record else None


def _sent(history: Mapping[str, History], subscriber: Subscriber) -> Iterable[str]:
    record = history.get(subscriber.email)
    return record.sent if record else ()


class _Scan:
    """Each paper's keyword hits in title and abstract, its first-seen time and rank."""

    def __init__(self, index: KeywordIndex, papers: Sequence[Paper]) -> None:
        self.papers = papers
        self.title_hits = [index.hits(words(p.title)) for p in papers]
        self.abstract_hits = [index.hits(words(p.abstract)) for p in papers]
        self.first_seen = np.array([p.first_seen.timestamp() for p in papers])
        # order[i]: how paper i ranks among equal scores (0 = first): upvotes, comments,
        # publication date (newest first, unknown last), title.
        ranked = sorted(range(len(papers)), key=lambda i: _tie_break(papers[i]))
        self.order = np.empty(len(papers), dtype=np.int64)
        self.order[ranked] = np.arange(len(papers))


def _tie_break(paper: Paper) -> tuple:
    upvotes = paper.upvotes if paper.upvotes is not None else -1
    published = -paper.published.toordinal() if paper.published else 1
    return (-upvotes, -paper.comments, published, paper.title.casefold(), paper.id)


class _Ranking:
    """Per subscriber, the best ``limit`` matches seen so far, and counts.

    A match's key is ``score * span + (span - 1 - order)``: higher scores first, and among
    equal scores the paper that ranks first by upvotes, comments, date and title."""

    def __init__(self, rows: int, limit: int, order: np.ndarray) -> None:
        self.limit = limit
        self.order = order
        self.span = len(order) + 1
        self.keys = np.full((rows, limit), -1, dtype=np.int64)
        self.papers = np.full((rows, limit), -1, dtype=np.int64)
        self.matched = np.zeros(rows, dtype=np.int64)
        self.candidates = np.zeros(rows, dtype=np.int64)

    def add(self, block: range, score, eligible, candidates) -> None:
        """Merge one block of papers into the running best."""
        self.matched += eligible.sum(axis=1)
        self.candidates += candidates.sum(axis=1)
        tie = self.span - 1 - self.order[block.start : block.stop]
        keys = np.where(eligible, score * self.span + tie, -1)
        papers = np.broadcast_to(np.arange(block.start, block.stop), keys.shape)
        all_keys = np.concatenate([self.keys, keys], axis=1)
        all_papers = np.concatenate([self.papers, papers], axis=1)
        keep = np.argpartition(-all_keys, self.limit - 1, axis=1)[:, : self.limit]
        self.keys = np.take_along_axis(all_keys, keep, axis=1)
        self.papers = np.take_along_axis(all_papers, keep, axis=1)

    def best(self, row: int, count: int) -> list[tuple[int, int]]:
        """(paper index, score) of the row's best ``count`` matches, best first."""
        keys, papers = self.keys[row], self.papers[row]
        order = np.argsort(-keys, kind="stable")[:count]
        return [(int(papers[i]), int(keys[i] // self.span)) for i in order if keys[i] >= 0]


__all__ = ["History", "KeywordIndex", "Match", "Matcher", "Selection"]
