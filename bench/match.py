"""Matching benchmark: the compiled matcher against a naive regex matcher, side by side.

Run:  python bench/match.py [--subscribers 10000] [--papers 1000] [--slice 100x50]

Builds N subscribers with 20 keywords each, drawn from a vocabulary of 2,000 words and
phrases (some with '*'), and M papers with realistic title and abstract lengths. Prints:
  compiled     all N x M through Matcher.select (scores, filters, top-k, explanations)
  naive        one regular expression per keyword, per subscriber, per paper, run on a
               slice of subscribers x papers and scaled up to N x M
  doubling     compiled time at 2N x 2M over the time at N x M (2 = linear in each)
and checks that both give the same selections on the slice. Targets: compiled under 2 s,
at least 20x faster than naive, doubling near 2 (not 4).
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from measure import timed

from newsletter.config.settings import MatchSettings
from newsletter.matching.keywords import Keyword, normalize, parse_keyword, word_forms
from newsletter.matching.matcher import Matcher
from newsletter.models import Paper, Subscriber

NOW = datetime(2026, 3, 12, 12, 0, tzinfo=UTC)
SETTINGS = MatchSettings()
COMMON = """the of and to in a is we that for with on as our by this are be an it from
which can show these results method model approach propose based using new two than more
both while such not its has have also into over between each across their when where""".split()


def pseudo_words(rng: random.Random, count: int) -> list[str]:
    """Distinct made-up words that look like technical vocabulary."""
    syllables = "ka ro mi te lu na vo si de pa gri tran form ent ion ic al net sor ver".split()
    found: set[str] = set()
    while len(found) < count:
        found.add("".join(rng.choices(syllables, k=rng.randint(2, 4))))
    return sorted(found)


def build(subscribers: int, papers: int, seed: int = 1) -> tuple[list[Subscriber], list[Paper]]:
    """Profiles and papers; keyword terms appear in the text at realistic rates."""
    rng = random.Random(seed)
    terms = pseudo_words(rng, 6000)
    phrases = [f"{rng.choice(terms)} {rng.choice(terms)}" for _ in range(500)]
    vocabulary = terms[:1500] + phrases
    vocabulary = [w + "*" if rng.random() < 0.1 else w for w in vocabulary]
    subs = [
        Subscriber(
            email=f"s{i}@example.org",
            keywords=tuple(parse_keyword(k) for k in rng.sample(vocabulary, 20)),
            exclude=(parse_keyword(rng.choice(terms)),) if i % 10 == 0 else (),
            max_papers=10,
        )
        for i in range(subscribers)
    ]
    weights = [1 / (rank + 10) for rank in range(len(terms))]  # Zipf-like use of terms

    def sentence(length: int) -> str:
        picked = rng.choices(terms, weights, k=length // 2) + rng.choices(COMMON, k=length // 2)
        rng.shuffle(picked)
        return " ".join(picked)

    items = [
        Paper(
            id=f"p{j}",
            title=sentence(12).title(),
            abstract=". ".join(sentence(25) for _ in range(8)) + ".",
            authors_count=5,
            organization=None,
            published=date(2026, 3, 1) - timedelta(days=j % 30),
            comments=j % 4,
            upvotes=j % 17,
            listing_date=date(2026, 3, 12),
            source="bench.txt",
            first_seen=NOW - timedelta(hours=1 + j % 48),
        )
        for j in range(papers)
    ]
    return subs, items


# -- the naive reference -------------------------------------------------------------------


def naive_pattern(keyword: Keyword) -> re.Pattern[str]:
    """One regex for one keyword: the same rules as the compiled matcher."""
    alternatives = []
    for pattern in keyword.patterns:
        parts = []
        for index, word in enumerate(pattern.words):
            if pattern.prefix and index == len(pattern.words) - 1:
                parts.append(re.escape(word) + r"[^\W_]*")
            else:
                parts.append("(?:" + "|".join(map(re.escape, sorted(word_forms(word)))) + ")")
        alternatives.append(r"[\W_]+".join(parts))
    body = "|".join(f"(?:{a})" for a in alternatives)
    return re.compile(r"(?<![^\W_])(?:" + body + r")(?![^\W_])")


def naive_select(subs: list[Subscriber], papers: list[Paper]) -> list[list[str]]:
    texts = [(normalize(p.title), normalize(p.abstract)) for p in papers]
    lookback = NOW - timedelta(days=SETTINGS.lookback_days)
    out = []
    for sub in subs:
        chosen = []
        for paper, (title, abstract) in zip(papers, texts, strict=True):
            if paper.first_seen < lookback:
                continue
            # One regular expression per keyword, per subscriber, per paper.
            if any(
                naive_pattern(k).search(title) or naive_pattern(k).search(abstract)
                for k in sub.exclude
            ):
                continue
            score = 0
            for keyword in sub.keywords:
                pattern = naive_pattern(keyword)
                score += SETTINGS.title_weight * bool(pattern.search(title))
                score += SETTINGS.abstract_weight * bool(pattern.search(abstract))
            if score >= sub.min_score:
                tie = (-(paper.upvotes or -1), -paper.comments, -paper.published.toordinal())
                chosen.append((-score, *tie, paper.title.casefold(), paper.id))
        out.append([c[-1] for c in sorted(chosen)[: sub.max_papers]])
    return out


def measure(subscribers: int = 10_000, papers: int = 1_000, slice_: str = "100x50") -> dict:
    """The compiled matcher, the naive one (on a slice, scaled up) and the doubling test."""
    n, m = subscribers, papers
    slice_subs, slice_papers = map(int, slice_.split("x"))
    subs, items = build(n, m)
    compiled, selections = timed(lambda: Matcher(subs, SETTINGS).select(items, NOW))
    part_subs, part_papers = subs[:slice_subs], items[:slice_papers]
    naive_time, naive = timed(lambda: naive_select(part_subs, part_papers))
    fast = [
        [mt.paper.id for mt in s.matches]
        for s in Matcher(part_subs, SETTINGS).select(part_papers, NOW)
    ]
    naive_full = naive_time * (n / slice_subs) * (m / slice_papers)
    big_subs, big_papers = build(2 * n, 2 * m, seed=2)
    doubled, _ = timed(lambda: Matcher(big_subs, SETTINGS).select(big_papers, NOW))
    same = fast == naive
    return {
        "subscribers": n,
        "papers": m,
        "matches": sum(len(s.matches) for s in selections),
        "seconds": {"compiled": compiled, "naive (scaled)": naive_full, "compiled 2Nx2M": doubled},
        "naive_slice": {"subscribers": slice_subs, "papers": slice_papers, "seconds": naive_time},
        "same_selections": same,
        "ratios": {
            "compiled time / target (2 s)": compiled / 2,
            "naive time / compiled time": naive_full / compiled,
            "time at 2N x 2M / time at N x M (2 = linear, 4 = N x M)": doubled / compiled,
        },
        "met": compiled < 2 and naive_full / compiled >= 20 and doubled / compiled < 3 and same,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--papers", type=int, default=1_000)
    parser.add_argument("--slice", default="100x50", help="naive slice: SUBSCRIBERSxPAPERS")
    args = parser.parse_args()
    result = measure(args.subscribers, args.papers, args.slice)
    n, m, seconds, part = args.subscribers, args.papers, result["seconds"], result["naive_slice"]
    matches = result["matches"]
    print(f"compiled   {n:>6,} x {m:>5,}: {seconds['compiled']:7.2f} s  ({matches:,} matches)")
    print(
        f"naive      {part['subscribers']:>6,} x {part['papers']:>5,}: {part['seconds']:7.2f} s"
        f"  -> scaled to {n:,} x {m:,}: {seconds['naive (scaled)']:,.0f} s"
    )
    print(f"same selections on the slice: {'yes' if result['same_selections'] else 'NO'}")
    print(f"compiled   {2 * n:>6,} x {2 * m:>5,}: {seconds['compiled 2Nx2M']:7.2f} s")
    print("ratios:")
    for name, value in result["ratios"].items():
        print(f"  {name:<46} {value:7.2f}")
    print("targets met" if result["met"] else "TARGETS MISSED")
    sys.exit(0 if result["met"] else 1)


if __name__ == "__main__":
    main()
