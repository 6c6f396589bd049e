"""Trending papers: for a profile with ``trending: N``, the N most upvoted of the papers new to
its reader that its keywords did not bring and no ``exclude`` rules out. They come after the
keyword matches (never in their place) and are recorded like them, so never sent twice."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from newsletter.models import Match, Paper

TRENDING_MAX = 10  # a short section, not a second digest


@dataclass(frozen=True)
class TrendingPool:
    """The papers that may trend, most upvoted first (then most discussed, then by title):
    those first seen within the lookback window with at least one upvote."""

    order: tuple[int, ...]  # indices into the papers

    @classmethod
    def of(cls, papers: Sequence[Paper], recent: Callable[[int], bool]) -> TrendingPool:
        """The pool of ``papers`` (``recent``: is the paper at this index in the window?)."""
        voted = [i for i, p in enumerate(papers) if p.upvotes and recent(i)]
        voted.sort(key=lambda i: (-(papers[i].upvotes or 0), -papers[i].comments,
                                  papers[i].title, papers[i].id))  # fmt: skip
        return cls(tuple(voted))

    def pick(
        self,
        papers: Sequence[Paper],
        count: int,
        sent: Collection[str],
        taken: Callable[[int], bool],
    ) -> tuple[Match, ...]:
        """The first ``count`` papers of the pool not in ``sent`` (paper ids) and not
        ``taken`` (matched by the reader's keywords, or excluded)."""
        chosen: list[Match] = []
        for index in self.order:
            if len(chosen) >= count:
                break
            paper = papers[index]
            if paper.id not in sent and not taken(index):
                chosen.append(Match(paper, 0, (), (), (), (), trending=True))
        return tuple(chosen)
