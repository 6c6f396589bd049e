"""Ledger benchmark: what recording one digest costs, beside the bare-SQLite limit and the
ledger as it was before issue 16, side by side in one run.

Run:  python bench/ledger.py [--messages 5000] [--size 50000]

Each digest has 10 papers of 1,000, its subscriber and Message-ID as a send makes them (in
no order the indexes like: addresses in file order, ids hashes). Per message:
  ours       Ledger.record_pending in batches of pipeline.PENDING_BATCH, then
             Ledger.record_sent once per message (a commit each): what `newsletter send` does
  per-paper  the same, with the papers in a row each of a table of their own (schema 8, before
             they were packed into the digest's row)
  before     the pre-issue-16 ledger: pending with the message's bytes (--size), a commit each,
             then sent (bytes set to NULL), a commit each; papers a row each
  limit      the same rows as ours (a delivery, a served mark) with one executemany each in
             one transaction, and one UPDATE per message in it: SQLite's own speed, with none
             of the commits that make a kill safe
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from newsletter.ledger.ledger import Handover, Ledger
from newsletter.send.sending import PENDING_BATCH, batched
from newsletter.store.papers import Store
from newsletter.store.schema import pack_papers
from newsletter.store.sqlite import open_store

NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
STAMP = NOW.isoformat()


def with_papers(store: Store, count: int = 1000) -> list[str]:
    """``count`` papers in the store (delivery rows refer to them)."""
    ids = [f"bench-{i}" for i in range(count)]
    with store.transaction() as db:
        db.executemany(
            "INSERT INTO papers (id, title_key, title, abstract, listing_date, source, position,"
            " first_seen, counters_date) VALUES (?, ?, ?, '', '2026-11-23', 'bench', 0, ?, ?)",
            ((pid, pid, pid, STAMP, STAMP) for pid in ids),
        )
    return ids


def digests(count: int, papers: list[str]) -> list[Handover]:
    """``count`` digests of 10 papers each, to addresses in no sorted order."""
    chosen = random.Random(7)
    made = []
    for i in range(count):
        name = hashlib.sha256(str(i).encode()).hexdigest()
        message_id = f"<digest.{hashlib.sha256(name.encode()).hexdigest()[:32]}@example.org>"
        made.append(
            Handover(message_id, f"r.{name[:12]}@example.org", tuple(chosen.sample(papers, 10)))
        )
    return made


# Schema 8's table of a digest's papers, a row each (what per_paper and before write).
PER_PAPER_TABLE = """
    CREATE TABLE delivery_papers (
        subscriber  TEXT NOT NULL,
        paper_id    TEXT NOT NULL REFERENCES papers (id),
        message_id  TEXT NOT NULL REFERENCES deliveries (message_id),
        position    INTEGER,
        PRIMARY KEY (subscriber, paper_id, message_id)
    ) WITHOUT ROWID
"""


def ours(store: Store, items: list[Handover]) -> None:
    ledger = Ledger(store)
    for batch in batched(items, PENDING_BATCH):
        ledger.record_pending(batch, NOW)
        for item in batch:
            ledger.record_sent([(item.message_id, 1)], NOW)  # (over SMTP: most come alone)


def per_paper(store: Store, items: list[Handover]) -> None:
    """Ours as it was before migration 9: the papers a row each, in a table of their own."""
    store.db.execute(PER_PAPER_TABLE)
    ledger = Ledger(store)
    stamp = NOW.isoformat()
    for batch in batched(items, PENDING_BATCH):
        with store.transaction() as db:
            db.executemany(
                "INSERT INTO subscribers VALUES (?, ?, ?) ON CONFLICT (subscriber) "
                "DO UPDATE SET last_served = excluded.last_served",
                ((item.subscriber, stamp, stamp) for item in batch),
            )
            db.executemany(
                "INSERT INTO deliveries (message_id, subscriber, status, created_at, updated_at,"
                " run) VALUES (?, ?, 'pending', ?, ?, NULL) ON CONFLICT (message_id) DO UPDATE"
                " SET status = 'pending'",
                ((item.message_id, item.subscriber, stamp, stamp) for item in batch),
            )
            db.executemany(
                "INSERT INTO delivery_papers VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (
                    (item.subscriber, paper, item.message_id, position)
                    for item in batch
                    for position, paper in enumerate(item.paper_ids)
                ),
            )
        for item in batch:
            ledger.record_sent([(item.message_id, 1)], NOW)


def before(store: Store, items: list[Handover], data: bytes) -> None:
    """Issue 15's ledger: each message's bytes stored, two commits a message."""
    store.db.execute(PER_PAPER_TABLE)
    for item in items:
        with store.transaction() as db:
            db.execute(
                "INSERT INTO subscribers VALUES (?, ?, ?) ON CONFLICT (subscriber) "
                "DO UPDATE SET last_served = excluded.last_served",
                (item.subscriber, STAMP, STAMP),
            )
            db.execute(
                "INSERT INTO deliveries (message_id, subscriber, status, created_at,"
                " updated_at, data) VALUES (?, ?, 'pending', ?, ?, ?)",
                (item.message_id, item.subscriber, STAMP, STAMP, data),
            )
            db.executemany(
                "INSERT OR IGNORE INTO delivery_papers VALUES (?, ?, ?, ?)",
                ((item.subscriber, p, item.message_id, n) for n, p in enumerate(item.paper_ids)),
            )
        with store.transaction() as db:
            db.execute(
                "UPDATE deliveries SET status = 'sent', attempts = attempts + 1, sent_at = ?,"
                " updated_at = ?, data = NULL WHERE message_id = ?",
                (STAMP, STAMP, item.message_id),
            )


def limit(store: Store, items: list[Handover]) -> None:
    """The same rows as ours in one transaction: no commit per batch or message."""
    with store.transaction() as db:
        db.executemany(
            "INSERT INTO subscribers VALUES (?, ?, ?)",
            ((item.subscriber, STAMP, STAMP) for item in items),
        )
        db.executemany(
            "INSERT INTO deliveries (message_id, subscriber, status, created_at, updated_at,"
            " papers) VALUES (?, ?, 'pending', ?, ?, ?)",
            (
                (item.message_id, item.subscriber, STAMP, STAMP, pack_papers(item.paper_ids))
                for item in items
            ),
        )
        for item in items:
            db.execute(
                "UPDATE deliveries SET status = 'sent', attempts = attempts + 1, sent_at = ?,"
                " updated_at = ? WHERE message_id = ?",
                (STAMP, STAMP, item.message_id),
            )


def timed(count: int, run) -> float:
    """Microseconds per message of ``run(store, items)`` on a fresh store."""
    with tempfile.TemporaryDirectory() as folder, open_store(Path(folder)) as store:
        items = digests(count, with_papers(store))
        start = time.perf_counter()
        run(store, items)
        return (time.perf_counter() - start) / count * 1e6


def measure(messages: int = 5000, size: int = 50_000) -> dict:
    data = b"x" * size
    result = {
        "messages": messages,
        "us_per_message": {
            "ours": timed(messages, ours),
            "per-paper": timed(messages, per_paper),
            "before": timed(messages, lambda s, i: before(s, i, data)),
            "limit": timed(messages, limit),
        },
    }
    per = result["us_per_message"]
    result["ratios"] = {"ours / limit": per["ours"] / per["limit"]}
    result["ratios"]["per-paper / ours"] = per["per-paper"] / per["ours"]
    result["ratios"]["before / ours"] = per["before"] / per["ours"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--size", type=int, default=50_000)
    args = parser.parse_args()
    result = measure(args.messages, args.size)
    print(f"{args.messages:,} digests of 10 papers (before: {args.size:,}-byte messages)")
    for name, value in result["us_per_message"].items():
        print(f"  {name:<10} {value:8.0f} us/message")
    for name, value in result["ratios"].items():
        print(f"  {name:<16} {value:6.2f}")


if __name__ == "__main__":
    main()
