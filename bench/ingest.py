"""Ingest benchmark: parse rate and parse+store rate on synthetic 10,000-card digests, in
each format the readers take.

Run:  python bench/ingest.py [--cards 10000] [--repeat 5]

Prints, measured side by side in one run, cards/s for:
  floor-split     reading the text and splitting it into stripped lines (no parsing at all)
  parse           the Hugging Face listing reader (bytes -> Digest)
  floor-insert    a bare executemany of the same rows into a fresh SQLite table
  parse+store     the whole `ingest` of one file (hash, decode, parse, one transaction)
  floor-json      json.loads of an HF daily papers response of as many papers
  parse-json      the HF daily papers JSON reader (bytes -> Digest)
  floor-feed      feedparser.parse of an arXiv RSS 2.0 listing of as many papers
  parse-rss       the arXiv feed reader (feedparser, then cards)
  store-json, store-rss   the whole `ingest` of those files
and the ratios against the targets (parse >= 100,000 cards/s, parse+store >= 20,000 cards/s)
and against the floors; the JSON and RSS readers beside the text capture reader.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import feedparser

from newsletter.sources.read import read_digest_bytes
from newsletter.store.ingest import ingest_file
from newsletter.store.sqlite import open_store

TODAY = date(2026, 11, 21)
NOW = datetime(2026, 11, 21, 6, 0, tzinfo=UTC)
PARSE_TARGET = 100_000
STORE_TARGET = 20_000
WORDS = [
    "model",
    "training",
    "data",
    "learning",
    "neural",
    "network",
    "transformer",
    "attention",
    "diffusion",
    "sparse",
    "pruning",
    "distillation",
    "benchmark",
    "language",
    "vision",
    "robust",
    "efficient",
    "scaling",
    "inference",
    "token",
    "representation",
    "graph",
    "reinforcement",
    "policy",
    "reward",
    "optimization",
    "gradient",
    "convolutional",
]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def synthetic_digest(cards: int, seed: int = 7) -> bytes:
    """A capture with ``cards`` cards of realistic length and every layout variant."""
    rng = random.Random(seed)
    lines = ["new", "Get trending papers in your email inbox!", "Subscribe", "Daily Papers"]
    lines += ["byAK and the research community", "Dec 17"]
    for index in range(cards):
        if rng.random() < 0.3:
            lines.append(rng.choice(["-", str(rng.randint(1, 300)), f"[-] {rng.randint(1, 99)}"]))
        title_words = rng.choices(WORDS, k=rng.randint(5, 14))
        lines.append(f"{' '.join(title_words).title()}: Study {index}")
        lines.append(" ".join(rng.choices(WORDS, k=rng.randint(150, 260))) + ".")
        if rng.random() < 0.05:
            continue  # cut short after the abstract
        if rng.random() < 0.1:
            lines.append("ExampleOrg Example Organization")
        else:
            lines.append(f"  • {rng.randint(1, 20)} authors")
        month, day = rng.choice(MONTHS[:11]), rng.randint(1, 28)
        year = f", {rng.randint(2015, 2025)}" if rng.random() < 0.6 else ""
        comments = f" {rng.randint(1, 9)}" if rng.random() < 0.2 else ""
        lines += ["·", f"{month} {day}{year}{comments}"]
    return ("\n\n".join(lines) + "\n").encode("utf-8")


def synthetic_hf_json(cards: int, seed: int = 7) -> bytes:
    """An HF daily papers response (2025+ shape) of ``cards`` items."""
    rng = random.Random(seed)
    items = []
    for index in range(cards):
        paper = {
            "id": f"2611.{index:05d}",
            "authors": [
                {"_id": "x", "name": f"Author {rng.randint(1, 5000)} Name", "hidden": False}
                for _ in range(rng.randint(1, 15))
            ],
            "publishedAt": "2026-11-20T00:00:00.000Z",
            "submittedOnDailyAt": "2026-11-21T06:00:00.000Z",
            "title": " ".join(rng.choices(WORDS, k=rng.randint(5, 14))).title(),
            "summary": " ".join(rng.choices(WORDS, k=rng.randint(150, 260))) + ".",
            "upvotes": rng.randint(0, 300),
            "ai_summary": " ".join(rng.choices(WORDS, k=30)),
            "ai_keywords": rng.choices(WORDS, k=rng.randint(0, 12)),
        }
        if rng.random() < 0.4:
            paper["githubRepo"] = f"https://github.com/example/repo-{index}"
        items.append({"paper": paper, "title": paper["title"], "numComments": rng.randint(0, 9)})
    return json.dumps(items).encode("utf-8")


def synthetic_rss(cards: int, seed: int = 7) -> bytes:
    """An arXiv listing RSS 2.0 feed of ``cards`` new submissions."""
    rng = random.Random(seed)
    items = []
    for index in range(cards):
        pid = f"2611.{index:05d}"
        title = " ".join(rng.choices(WORDS, k=rng.randint(5, 14))).title()
        abstract = " ".join(rng.choices(WORDS, k=rng.randint(150, 260))) + "."
        authors = ", ".join(f"A. Author{rng.randint(1, 5000)}" for _ in range(rng.randint(1, 15)))
        items.append(
            f"<item><title>{title}</title><link>https://arxiv.org/abs/{pid}</link>"
            f"<description>arXiv:{pid}v1 Announce Type: new Abstract: {abstract}</description>"
            f'<guid isPermaLink="false">oai:arXiv.org:{pid}v1</guid>'
            "<category>cs.LG</category><category>cs.AI</category>"
            "<pubDate>Fri, 21 Nov 2026 00:00:00 -0500</pubDate>"
            f"<arxiv:announce_type>new</arxiv:announce_type><dc:creator>{authors}</dc:creator>"
            "</item>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss xmlns:arxiv="http://arxiv.org/schemas/atom"'
        ' xmlns:dc="http://purl.org/dc/elements/1.1/" version="2.0"><channel>'
        "<title>cs.LG updates on arXiv.org</title>"
        "<pubDate>Fri, 21 Nov 2026 00:00:00 -0500</pubDate>" + "".join(items) + "</channel></rss>"
    ).encode("utf-8")


def best_of(repeat: int, run: Callable[[], object]) -> float:
    """The fastest of ``repeat`` runs, in seconds (the least disturbed by the machine)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def floor_split(data: bytes) -> None:
    text = data.decode("utf-8")
    [line.strip() for line in text.split("\n") if line.strip()]


def floor_insert(rows: list[tuple]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        db = sqlite3.connect(Path(folder) / "floor.sqlite3")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("CREATE TABLE papers (id TEXT PRIMARY KEY, title TEXT, abstract TEXT)")
        with db:
            db.executemany("INSERT INTO papers VALUES (?, ?, ?)", rows)
        db.close()


def parse_and_store(path: Path) -> None:
    """The whole ingest of one file into a new store: open, hash, read, parse, store."""
    with tempfile.TemporaryDirectory() as folder, open_store(Path(folder)) as store:
        report = ingest_file(store, path, now=NOW)
        assert report.status == "ingested", report


def measure(cards: int = 10_000, repeat: int = 5) -> dict:
    """Seconds (best of ``repeat``) and cards/s of each path on one synthetic digest."""
    data = synthetic_digest(cards)
    digest = read_digest_bytes(data, today=TODAY)
    rows = [(str(i), c.title, c.abstract) for i, c in enumerate(digest.cards)]
    count = len(digest.cards)
    hf, rss = synthetic_hf_json(count), synthetic_rss(count)
    assert len(read_digest_bytes(hf, today=TODAY).cards) == count
    assert len(read_digest_bytes(rss, today=TODAY).cards) == count
    with tempfile.TemporaryDirectory() as folder:
        path, hf_path, rss_path = (Path(folder) / name for name in ("d.txt", "d.json", "d.xml"))
        path.write_bytes(data)
        hf_path.write_bytes(hf)
        rss_path.write_bytes(rss)
        seconds = {
            "floor-split": best_of(repeat, lambda: floor_split(data)),
            "parse": best_of(repeat, lambda: read_digest_bytes(data, today=TODAY)),
            "floor-insert": best_of(repeat, lambda: floor_insert(rows)),
            "parse+store": best_of(repeat, lambda: parse_and_store(path)),
            "floor-json": best_of(repeat, lambda: json.loads(hf)),
            "parse-json": best_of(repeat, lambda: read_digest_bytes(hf, today=TODAY)),
            "store-json": best_of(repeat, lambda: parse_and_store(hf_path)),
            "floor-feed": best_of(repeat, lambda: feedparser.parse(rss)),
            "parse-rss": best_of(repeat, lambda: read_digest_bytes(rss, today=TODAY)),
            "store-rss": best_of(repeat, lambda: parse_and_store(rss_path)),
        }
    rate = {name: count / value for name, value in seconds.items()}
    return {
        "cards": count,
        "megabytes": len(data) / 1e6,
        "seconds": seconds,
        "cards_per_s": rate,
        "ratios": {
            f"parse rate / target ({PARSE_TARGET:,}/s)": rate["parse"] / PARSE_TARGET,
            f"parse+store rate / target ({STORE_TARGET:,}/s)": rate["parse+store"] / STORE_TARGET,
            "parse time / floor-split time": seconds["parse"] / seconds["floor-split"],
            "parse+store time / (parse + floor-insert)": seconds["parse+store"]
            / (seconds["parse"] + seconds["floor-insert"]),
            "JSON reader rate / text reader rate": rate["parse-json"] / rate["parse"],
            "JSON reader time / json.loads time": seconds["parse-json"] / seconds["floor-json"],
            "RSS reader rate / text reader rate": rate["parse-rss"] / rate["parse"],
            "RSS reader time / feedparser time": seconds["parse-rss"] / seconds["floor-feed"],
        },
        "met": rate["parse"] >= PARSE_TARGET and rate["parse+store"] >= STORE_TARGET,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    result = measure(args.cards, args.repeat)
    print(
        f"synthetic digest: {result['cards']:,} cards, {result['megabytes']:.1f} MB; "
        f"best of {args.repeat}"
    )
    for name, seconds in result["seconds"].items():
        rate = result["cards_per_s"][name]
        print(f"  {name:<13} {seconds * 1000:8.1f} ms   {rate:>12,.0f} cards/s")
    print("ratios:")
    for name, value in result["ratios"].items():
        print(f"  {name:<42} {value:6.2f}x")
    print("targets met" if result["met"] else "TARGETS MISSED")
    sys.exit(0 if result["met"] else 1)


if __name__ == "__main__":
    main()
