"""Which papers each subscriber receives, and why.

All profiles compile into one ``Matcher``. Each paper's text is scanned once for every
distinct keyword of every profile (``newsletter.matching.index``); the hits then add weights to the
subscribers who use those keywords through per-keyword postings, in numpy, one block of
papers at a time. So the Python work grows with the text and the hits, while the
subscribers x papers arithmetic runs in C, and memory stays bounded by the block size.
Rules: see ``newsletter.matching.keywords`` and the README.
"""

from __future__ import annotations

import bisect
import dataclasses
import gc
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta

import numpy as np

from newsletter.config.settings import Config, MatchSettings
from newsletter.matching.index import KeywordIndex
from newsletter.matching.keywords import (
    Keyword,
    author_keys,
    followed_author_key,
    merge_ranges,
    words,
)
from newsletter.matching.trending import TrendingPool
from newsletter.models import History, Match, Paper, Selection, Subscriber

_BLOCK = 64
_EXPLAIN_ROWS = 512


class _Postings:
    """For each keyword id, the subscribers (row numbers) who use it in one role; also
    packed (kid k's rows are ``flat[start[k] : start[k + 1]]``) for ``pairs``."""

    def __init__(self, rows_by_keyword: dict[int, list[int]]) -> None:
        self.rows = {kid: np.array(rows, dtype=np.int64) for kid, rows in rows_by_keyword.items()}
        size = max(self.rows, default=-1) + 1  # (a larger kid has no rows: the last)
        counts = np.zeros(size + 1, dtype=np.int64)
        for kid, rows in self.rows.items():
            counts[kid] = len(rows)
        self.start = np.concatenate(([0], np.cumsum(counts)))
        ordered = [self.rows[kid] for kid in sorted(self.rows)]
        self.flat = np.concatenate(ordered) if ordered else np.zeros(0, dtype=np.int64)
        self.size = size

    def __bool__(self) -> bool:
        return bool(self.rows)

    def pairs(self, hits: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """For hits (papers, kids): (paper, row) for every subscriber using each kid, in
        numpy (a Python loop over each paper's hits took most of a chunk's matching once
        the papers' scan was kept for the next chunk, bench/workers.py)."""
        papers, kids = hits
        kids = np.minimum(kids, self.size)
        low = self.start[kids]
        counts = self.start[kids + 1] - low
        ends = np.cumsum(counts)
        offsets = np.arange(ends[-1] if len(ends) else 0) + np.repeat(low - ends + counts, counts)
        return np.repeat(papers, counts), self.flat[offsets]


class Matcher:
    """All profiles compiled once; ``select`` matches any set of papers against them."""

    def __init__(
        self,
        subscribers: Sequence[Subscriber],
        settings: MatchSettings,
        scans: Scans | None = None,
    ) -> None:
        self.subscribers = tuple(subscribers)
        self.settings = settings
        self.scans = scans or Scans()
        self.index = self.scans.index
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
        # Each subscriber's keyword ids as a padded row (pad: the always-false last column of
        # the hit tables), and the keywords as written.
        width = max((len(i["keywords"]) for i in self._ids), default=0)
        self._slots = np.full((len(self._ids), width), len(self.index.keywords), dtype=np.int64)
        for row, ids in enumerate(self._ids):
            self._slots[row, : len(ids["keywords"])] = ids["keywords"]
        self._texts = [tuple(k.text for k in s.keywords) for s in self.subscribers]
        self._max_papers = np.array([s.max_papers for s in self.subscribers], dtype=np.int64)
        self._min_score = np.array([s.min_score for s in self.subscribers], dtype=np.int64)
        self._required = np.array([len(set(i["require"])) for i in self._ids], dtype=np.int64)
        self._limit = max((s.max_papers for s in self.subscribers), default=1)
        most = max((len(s.keywords) for s in self.subscribers), default=0)
        keyword_top = most * (settings.title_weight + settings.abstract_weight)
        self._people = _People(self.subscribers)
        # A followed author's paper ranks above every keyword match (so max_papers never
        # leaves it out for a paper that merely mentions a keyword).
        self._bonus = keyword_top + 1
        self._top_score = keyword_top + (self._bonus if self._people.authors else 0)

    def select(
        self,
        papers: Sequence[Paper],
        now: datetime,
        history: Mapping[str, History] | None = None,
    ) -> list[Selection]:
        """Each subscriber's selection from ``papers``, in subscriber order."""
        return list(self.iter_select(papers, now, history))

    def iter_select(
        self,
        papers: Sequence[Paper],
        now: datetime,
        history: Mapping[str, History] | None = None,
    ) -> Iterator[Selection]:
        """``select``, yielding selections as they are explained (for long subscriber lists)."""
        history = history or {}
        with _collector_paused():
            scan = self.scans.scan(papers)
            state = _Ranking(len(self.subscribers), self._limit, scan.order, self._top_score)
            # New for everyone: first seen within lookback_days (and never sent to them).
            cutoff = (now - timedelta(days=self.settings.lookback_days)).timestamp() - 1e-6
            sent = self._sent_pairs(papers, history)
            for start in range(0, len(papers), _BLOCK):
                block = range(start, min(start + _BLOCK, len(papers)))
                self._score_block(scan, block, cutoff, sent, state)
        pool = None
        if any(subscriber.trending for subscriber in self.subscribers):
            pool = TrendingPool.of(papers, lambda i: scan.first_seen[i] > cutoff)
        for start in range(0, len(self.subscribers), _EXPLAIN_ROWS):
            rows = range(start, min(start + _EXPLAIN_ROWS, len(self.subscribers)))
            with _collector_paused():
                selections = list(self._selections(rows, scan, state))
            if pool is not None:
                selections = [self._with_trending(s, row, scan, pool, history)
                              for row, s in zip(rows, selections, strict=True)]  # fmt: skip
            yield from selections

    def _with_trending(
        self,
        selection: Selection,
        row: int,
        scan: _Scan,
        pool: TrendingPool,
        history: Mapping[str, History],
    ) -> Selection:
        """``selection`` with its reader's trending papers after its matches."""
        wanted = self.subscribers[row].trending
        if not wanted:
            return selection
        sent = set(_sent(history, self.subscribers[row]))
        sent.update(match.paper.id for match in selection.matches)
        found = pool.pick(scan.papers, wanted, sent, lambda paper: self._taken(row, scan, paper))
        return dataclasses.replace(selection, matches=selection.matches + found)

    def _taken(self, row: int, scan: _Scan, paper: int) -> bool:
        """Is the paper ruled out for the subscriber's trending papers: excluded, or one their
        keywords or followed authors bring (sent now, or left out for a later digest)?"""
        ids, subscriber = self._ids[row], self.subscribers[row]
        title, abstract = set(scan.title_hits[paper]), set(scan.abstract_hits[paper])
        hits = title | abstract
        if any(kid in hits for kid in ids["exclude"]):
            return True
        if (
            self._people.written[row]
            and self._explain(Match(scan.papers[paper], self._bonus, (), (), (), ()), row).authors
        ):
            return True
        on_title, on_abstract = self.settings.title_weight, self.settings.abstract_weight
        score = sum(on_title * (kid in title) + on_abstract * (kid in abstract)
                    for kid in ids["keywords"])  # fmt: skip
        required = all(kid in hits for kid in ids["require"])
        return score > 0 and score >= subscriber.min_score and required

    def _sent_pairs(self, papers: Sequence[Paper], history: Mapping[str, History]) -> np.ndarray:
        """(subscriber row, paper index) of every paper already sent to that subscriber."""
        where = {paper.id: index for index, paper in enumerate(papers)}
        pairs = [
            (row, where[pid])
            for row, subscriber in enumerate(self.subscribers)
            for pid in _sent(history, subscriber)
            if pid in where
        ]
        return np.array(pairs, dtype=np.int64).reshape(-1, 2)

    def _score_block(
        self, scan: _Scan, block: range, cutoff: float, sent: np.ndarray, state: _Ranking
    ) -> None:
        """Score one block of papers for every subscriber and merge it into ``state``."""
        rows, width = len(self.subscribers), len(block)
        weights = self.settings
        # Paper-major while adding: each keyword hit updates one contiguous row of memory.
        score = np.zeros((width, rows), dtype=np.int32)
        required = np.zeros((width, rows), dtype=np.int32) if self._require else None
        excluded = np.zeros((width, rows), dtype=bool) if self._exclude else None
        people = self._people
        followed = np.zeros((width, rows), dtype=bool) if people.authors else None
        allowed = np.ones((width, rows), dtype=bool) if people.categories else None
        for column, paper in enumerate(block):
            if followed is not None:
                _add(
                    followed[column], people.authors, people.paper_authors(scan.papers[paper]), True
                )
            if allowed is not None and scan.papers[paper].details.categories:
                allowed[column] = ~people.filtered
                found = people.paper_categories(scan.papers[paper])
                _add(allowed[column], people.categories, found, True)
        title, abstract = scan.block_hits(block, "title"), scan.block_hits(block, "abstract")
        _count(score, self._keywords.pairs(title), weights.title_weight)
        _count(score, self._keywords.pairs(abstract), weights.abstract_weight)
        if required is not None or excluded is not None:
            either = _union(title, abstract, len(self.index.keywords) + 1)
            if required is not None:
                _count(required, self._require.pairs(either), 1)
            if excluded is not None:
                excluded |= _counts(excluded.shape, self._exclude.pairs(either)) > 0
        score = score.T
        required = required.T if required is not None else None
        excluded = excluded.T if excluded is not None else None
        # Candidates: first seen after the cutoff, and never sent to this subscriber.
        recent = scan.first_seen[block.start : block.stop] > cutoff
        candidates = np.broadcast_to(recent, (rows, width)).copy()
        inside = sent[(sent[:, 1] >= block.start) & (sent[:, 1] < block.stop)]
        candidates[inside[:, 0], inside[:, 1] - block.start] = False
        eligible = candidates & (score >= self._min_score[:, None])
        if required is not None:
            eligible &= required == self._required[:, None]
        if excluded is not None:
            eligible &= ~excluded
        if followed is not None:
            # A followed author's paper is selected whatever its keywords.
            eligible |= candidates & followed.T
            score = score + followed.T * np.int32(self._bonus)
        if allowed is not None:
            eligible &= allowed.T
        state.add(block, score, eligible, candidates)

    def _selections(self, rows: range, scan: _Scan, state: _Ranking) -> Iterator[Selection]:
        """Selections for a run of subscribers, explained together.

        Which of a subscriber's keywords hit a chosen paper is looked up for all chosen
        (subscriber, paper) pairs at once in the papers x keywords hit tables."""
        papers, scores, valid = state.best_block(rows, self._max_papers[rows.start : rows.stop])
        pair_rows, pair_columns = np.nonzero(valid)
        pair_papers = papers[pair_rows, pair_columns]
        slots = self._slots[rows.start : rows.stop][pair_rows]
        in_title = _slots_hit(_bits(scan.title_table, pair_papers[:, None], slots))
        in_abstract = _slots_hit(_bits(scan.abstract_table, pair_papers[:, None], slots))
        counts = valid.sum(axis=1).tolist()
        chosen_papers, chosen_scores = pair_papers.tolist(), scores[valid].tolist()
        candidates = state.candidates[rows.start : rows.stop].tolist()
        matched = state.matched[rows.start : rows.stop].tolist()
        start = 0
        for offset, count in enumerate(counts):
            row, stop = rows.start + offset, start + count
            texts, kids = self._texts[row], self._ids[row]["keywords"]
            matches = tuple(
                self._explain(
                    _match(
                        scan,
                        texts,
                        kids,
                        chosen_papers[i],
                        chosen_scores[i],
                        in_title[i],
                        in_abstract[i],
                    ),
                    row,
                )
                for i in range(start, stop)
            )
            start = stop
            yield Selection(self.subscribers[row], matches, candidates[offset], matched[offset])

    def _explain(self, match: Match, row: int) -> Match:
        """``match`` with the followed authors who wrote it (and its keyword score alone)."""
        if not self._people.authors:
            return match
        written = self._people.written[row]
        keys = {key for name in match.paper.details.authors for key in author_keys(name)}
        authors = tuple(name for key, name in written.items() if key in keys)
        if not authors:
            return match
        return dataclasses.replace(match, authors=authors, score=match.score - self._bonus)


class _People:
    """Followed authors and category filters of all subscribers, as postings by id."""

    def __init__(self, subscribers: Sequence[Subscriber]) -> None:
        self.author_ids: dict[str, int] = {}
        self.category_ids: dict[str, int] = {}
        by_author: dict[int, list[int]] = {}
        by_category: dict[int, list[int]] = {}
        self.written: list[dict[str, str]] = []  # per row: author key -> name as written
        for row, subscriber in enumerate(subscribers):
            written = {followed_author_key(name): name for name in subscriber.authors}
            self.written.append(written)
            for key in written:
                aid = self.author_ids.setdefault(key, len(self.author_ids))
                by_author.setdefault(aid, []).append(row)
            for category in subscriber.categories:
                cid = self.category_ids.setdefault(category, len(self.category_ids))
                by_category.setdefault(cid, []).append(row)
        self.authors = _Postings(by_author)
        self.categories = _Postings(by_category)
        self.filtered = np.array([bool(s.categories) for s in subscribers], dtype=bool)

    def paper_authors(self, paper: Paper) -> set[int]:
        """Ids of the followed authors who wrote ``paper``."""
        keys = {key for name in paper.details.authors for key in author_keys(name)}
        return {self.author_ids[key] for key in keys if key in self.author_ids}

    def paper_categories(self, paper: Paper) -> set[int]:
        """Ids of the filter categories ``paper`` is in (its categories and their archives:
        cs.LG is in cs)."""
        names = {part for c in paper.details.categories for part in (c, c.split(".")[0])}
        return {self.category_ids[name] for name in names if name in self.category_ids}


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a bulk phase.

    The matcher makes ~10 small containers per match and no reference cycles, so the
    collector only rescans live objects again and again (a third of the run time in
    bench/match.py); reference counting still frees everything."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _slots_hit(flags: np.ndarray) -> list[list[int]]:
    """For each row of a pairs x slots boolean table, the slots that are true."""
    pairs, slots = np.nonzero(flags)
    bounds = np.searchsorted(pairs, np.arange(len(flags) + 1)).tolist()
    slots = slots.tolist()
    return [slots[bounds[i] : bounds[i + 1]] for i in range(len(flags))]


def _match(
    scan: _Scan,
    texts: tuple[str, ...],
    kids: list[int],
    paper: int,
    score: int,
    in_title: list[int],
    in_abstract: list[int],
) -> Match:
    """A match, explained: the keyword slots that hit the title and the abstract, and
    what occurred of each."""
    title_kids = [kids[slot] for slot in in_title]
    abstract_kids = [kids[slot] for slot in in_abstract]
    return Match(
        paper=scan.papers[paper],
        score=score,
        title_keywords=tuple([texts[slot] for slot in in_title]),
        abstract_keywords=tuple([texts[slot] for slot in in_abstract]),
        title_spans=scan.spans(paper, "title", title_kids),
        abstract_spans=scan.spans(paper, "abstract", abstract_kids),
        title_found=scan.found(paper, "title", title_kids),
        abstract_found=scan.found(paper, "abstract", abstract_kids),
    )


def _add(target: np.ndarray, postings: _Postings, hits: Iterable[int], value: int | bool) -> None:
    """Add ``value`` for every subscriber using a hit keyword (on a bool row: or)."""
    for kid in hits:
        rows = postings.rows.get(kid)
        if rows is not None:
            target[rows] += value


def _counts(shape: tuple[int, int], pairs: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """How often each (paper column, row) of a block occurs in ``pairs``."""
    columns, rows = pairs
    found = np.bincount(columns * shape[1] + rows, minlength=shape[0] * shape[1])
    return found.reshape(shape)


def _count(target: np.ndarray, pairs: tuple[np.ndarray, np.ndarray], value: int) -> None:
    """Add ``value`` to ``target`` at each (paper column, row) of ``pairs``."""
    target += (_counts(target.shape, pairs) * value).astype(target.dtype)


def _union(
    first: tuple[np.ndarray, np.ndarray], second: tuple[np.ndarray, np.ndarray], keywords: int
) -> tuple[np.ndarray, np.ndarray]:
    """The (paper column, kid) hits of either, each once."""
    keys = np.unique(
        np.concatenate((first[0] * keywords + first[1], second[0] * keywords + second[1]))
    )
    return keys // keywords, keys % keywords


def _sent(history: Mapping[str, History], subscriber: Subscriber) -> Iterable[str]:
    record = history.get(subscriber.email.casefold())
    return record.sent if record else ()


def vocabulary(subscribers: Iterable[Subscriber]) -> tuple[Keyword, ...]:
    """Every distinct keyword of the subscribers' profiles (keywords, require, exclude)."""
    found: dict[str, Keyword] = {}
    for subscriber in subscribers:
        for role in (subscriber.keywords, subscriber.require, subscriber.exclude):
            for keyword in role:
                found.setdefault(keyword.text, keyword)
    return tuple(found.values())


class Scans:
    """The papers' keyword hits, kept for the next matcher while the papers stay the same: a
    chunk worker matches a run's papers against one chunk of subscribers after another, and
    scanning them again took more than half of a chunk of 200 (bench/workers.py).

    ``learn`` the keywords of every profile first (``vocabulary``), so that no chunk brings
    a keyword the scan lacks; one that does makes it scan again (the hit tables have a
    column per keyword)."""

    def __init__(self, vocabulary: Iterable[Keyword] = ()) -> None:
        self.index = KeywordIndex()
        self._last: tuple[tuple[Paper, ...], int, _Scan] | None = None
        self.scanned = 0  # how many times papers were scanned (tests)
        self.learn(vocabulary)

    def learn(self, vocabulary: Iterable[Keyword]) -> None:
        """Give each keyword of ``vocabulary`` an id now."""
        for keyword in vocabulary:
            self.index.add(keyword)

    def scan(self, papers: Sequence[Paper]) -> _Scan:
        """The scan of ``papers`` with every keyword known now (the last one, if the same)."""
        papers = tuple(papers)
        known = len(self.index.keywords)
        if self._last is not None and self._last[1] == known and self._last[0] == papers:
            return self._last[2]
        scan = _Scan(self.index, papers)
        self._last = (papers, known, scan)
        self.scanned += 1
        return scan


class _Scan:
    """Each paper's keyword hits in title and abstract, its first-seen time and rank."""

    def __init__(self, index: KeywordIndex, papers: Sequence[Paper]) -> None:
        self.index = index
        self.papers = papers
        self._located: dict[tuple[int, str], _Located] = {}
        # Tuples, not sets: a small set takes several times the memory (10,000 papers).
        self.title_hits = [tuple(index.hits(words(p.title))) for p in papers]
        self.abstract_hits = [tuple(index.hits(words(p.abstract))) for p in papers]
        # The hits packed: paper i's are kids[field][start[field][i] : start[field][i + 1]].
        self._starts, self._kids = {}, {}
        for field, hits in (("title", self.title_hits), ("abstract", self.abstract_hits)):
            counts = np.array([len(h) for h in hits], dtype=np.int64)
            self._starts[field] = np.concatenate(([0], np.cumsum(counts)))
            self._kids[field] = np.fromiter(
                (kid for h in hits for kid in h), dtype=np.int64, count=int(counts.sum())
            )
        self.title_table = _hit_table(self.title_hits, len(index.keywords))
        self.abstract_table = _hit_table(self.abstract_hits, len(index.keywords))
        self.first_seen = np.array([p.first_seen.timestamp() for p in papers])
        # order[i]: how paper i ranks among equal scores (0 = first): upvotes, comments,
        # publication date (newest first, unknown last), title.
        ranked = sorted(range(len(papers)), key=lambda i: _tie_break(papers[i]))
        self.order = np.empty(len(papers), dtype=np.int64)
        self.order[ranked] = np.arange(len(papers))

    def block_hits(self, block: range, field: str) -> tuple[np.ndarray, np.ndarray]:
        """The hits in ``field`` of the papers of ``block``: (paper column, kid) pairs."""
        starts = self._starts[field]
        low, high = starts[block.start], starts[block.stop]
        counts = np.diff(starts[block.start : block.stop + 1])
        columns = np.repeat(np.arange(len(block), dtype=np.int64), counts)
        return columns, self._kids[field][low:high]

    def spans(self, paper: int, field: str, kids: list[int]) -> tuple[tuple[int, int], ...]:
        """Character ranges in the paper's ``field`` where the keywords ``kids`` occur."""
        if not kids:
            return ()
        located = self._located_in(paper, field)
        if len(kids) == 1:
            return located.ranges(kids[0])
        return merge_ranges([span for kid in kids for span in located.ranges(kid)])

    def found(self, paper: int, field: str, kids: list[int]) -> tuple[str, ...]:
        """What occurred of each of the keywords ``kids`` in the paper's ``field``: its first
        occurrence, as written there ("" for one that does not occur)."""
        if not kids:
            return ()
        located = self._located_in(paper, field)
        text = getattr(self.papers[paper], field)
        return tuple([located.first(kid, text) for kid in kids])

    def _located_in(self, paper: int, field: str) -> _Located:
        located = self._located.get((paper, field))
        if located is None:
            located = self._located[(paper, field)] = self._locate(paper, field)
        return located

    def _locate(self, paper: int, field: str) -> _Located:
        """Once per paper and field: each keyword's character ranges there."""
        located = _Located()
        for kid, ranges in sorted(self.index.ranges(getattr(self.papers[paper], field)).items()):
            located.add(kid, ranges)
        return located


class _Located:
    """One paper field's keyword ranges, packed: kept for every paper a chunk explains, so
    dicts of tuples (~6 KB a field) made 10,000 papers cost 60 MB a worker; this is ~1 KB."""

    __slots__ = ("bounds", "flat", "kids")

    def __init__(self) -> None:
        self.kids = array("i")  # ascending keyword ids
        self.bounds = array("i", [0])  # kid i's ranges are flat[bounds[i] : bounds[i + 1]]
        self.flat = array("i")  # start, end, start, end, ...

    def add(self, kid: int, ranges: Iterable[tuple[int, int]]) -> None:
        """Append ``kid`` (above every kid so far) and its ranges."""
        self.kids.append(kid)
        for start, end in ranges:
            self.flat.extend((start, end))
        self.bounds.append(len(self.flat))

    def first(self, kid: int, text: str) -> str:
        """The piece of ``text`` (the field located) where ``kid`` first occurs, or ""."""
        index = bisect.bisect_left(self.kids, kid)
        if index == len(self.kids) or self.kids[index] != kid:
            return ""
        low = self.bounds[index]
        return text[self.flat[low] : self.flat[low + 1]]

    def ranges(self, kid: int) -> tuple[tuple[int, int], ...]:
        """The ranges of ``kid`` (none if it does not occur)."""
        index = bisect.bisect_left(self.kids, kid)
        if index == len(self.kids) or self.kids[index] != kid:
            return ()
        low, high, flat = self.bounds[index], self.bounds[index + 1], self.flat
        if high - low == 2:  # most keywords occur once in a field
            return ((flat[low], flat[low + 1]),)
        part = flat[low:high].tolist()
        return tuple(zip(part[::2], part[1::2], strict=True))


def _hit_table(hits: list[tuple[int, ...]], keywords: int) -> np.ndarray:
    """papers x (keywords + 1) bits, packed 8 to a byte (10,000 papers x 2,000 keywords take
    2.5 MB, not 20); the extra last column stays false (padding)."""
    table = np.zeros((len(hits), (keywords + 8) // 8), dtype=np.uint8)
    row = np.zeros(keywords + 1, dtype=bool)
    for paper, found in enumerate(hits):
        row[:] = False
        row[list(found)] = True
        table[paper] = np.packbits(row, bitorder="little")
    return table


def _bits(table: np.ndarray, papers: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """The bits of a packed hit table at (papers, columns), as booleans."""
    return (table[papers, columns >> 3] >> (columns & 7).astype(np.uint8)) & 1 == 1


def _tie_break(paper: Paper) -> tuple:
    upvotes = paper.upvotes if paper.upvotes is not None else -1
    published = -paper.published.toordinal() if paper.published else 1
    return (-upvotes, -paper.comments, published, paper.title.casefold(), paper.id)


class _Ranking:
    """Per subscriber, the best ``limit`` matches seen so far, and counts.

    A match is kept as one number, ``score * span + (span - 1 - order)``: higher scores
    first, then the paper that ranks first by upvotes, comments, date and title; the paper
    itself is recovered from ``order``, so only keys move through the partitions."""

    def __init__(self, rows: int, limit: int, order: np.ndarray, top_score: int) -> None:
        self.limit = limit
        self.order = order
        # Paper index for each rank, plus one entry for the keys of non-matches (-1).
        self.by_order = np.append(np.argsort(order), 0)
        self.span = len(order) + 1
        fits = (top_score + 1) * self.span < np.iinfo(np.int32).max
        self.dtype = np.int32 if fits else np.int64
        self.keys = np.full((rows, limit), -1, dtype=self.dtype)
        self.matched = np.zeros(rows, dtype=np.int64)
        self.candidates = np.zeros(rows, dtype=np.int64)

    def add(
        self, block: range, score: np.ndarray, eligible: np.ndarray, candidates: np.ndarray
    ) -> None:
        """Merge one block of papers into the running best."""
        self.matched += eligible.sum(axis=1)
        self.candidates += candidates.sum(axis=1)
        tie = (self.span - 1 - self.order[block.start : block.stop]).astype(self.dtype)
        keys = np.where(eligible, score.astype(self.dtype) * self.span + tie, -1)
        merged = np.concatenate([self.keys, keys], axis=1)
        cut = merged.shape[1] - self.limit
        self.keys = np.partition(merged, cut, axis=1)[:, cut:]

    def best_block(
        self, rows: range, limits: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For ``rows``: paper indexes and scores of the best matches, best first, and which
        of those are real (a match, and within the row's ``limits``)."""
        keys = np.sort(self.keys[rows.start : rows.stop], axis=1)[:, ::-1]
        papers = self.by_order[self.span - 1 - keys % self.span]
        valid = (keys >= 0) & (np.arange(self.limit)[None, :] < limits[:, None])
        return papers, keys // self.span, valid


__all__ = ["Matcher"]


def explain_sent(
    subscriber: Subscriber, papers: Sequence[Paper], when: datetime, settings: MatchSettings
) -> Selection:
    """The papers of a digest already chosen (recorded in the ledger), in their order, each
    explained by the profile as it is now: one that no longer matches shows no reason, and
    nothing is left out (a web copy, a resend)."""
    relaxed = dataclasses.replace(
        subscriber, exclude=(), require=(), categories=(), min_score=1, max_papers=100
    )
    wide = dataclasses.replace(settings, lookback_days=3650)
    (selection,) = Matcher([relaxed], wide).select(papers, when + timedelta(seconds=1))
    found = {match.paper.id: match for match in selection.matches}
    matches = tuple(found.get(p.id) or Match(p, 0, (), (), (), ()) for p in papers)
    return Selection(subscriber, matches, len(papers), len(papers))


def lookback_start(config: Config, now: datetime) -> datetime:
    """Papers first seen after this are candidates (``lookback_days``)."""
    return now - timedelta(days=config.matching.lookback_days) - timedelta(microseconds=1)
