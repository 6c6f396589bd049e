"""The store, on SQLite and on PostgreSQL: schema versions, migrations, identity, counters,
atomic digests."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import time
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from pathlib import Path

import pytest

from newsletter.config.settings import Config
from newsletter.errors import StoreError
from newsletter.ledger.ledger import Ledger
from newsletter.ledger.lock import state_lock
from newsletter.models import Card, Details
from newsletter.render.views import paper_url
from newsletter.store.backend import open_store_for
from newsletter.store.ingest import ingest
from newsletter.store.papers import DigestRecord, Store
from newsletter.store.schema import MIGRATIONS
from newsletter.store.sqlite import STORE_FILE, open_store
from tests import helpers
from tests.digest_text import capture, card
from tests.helpers import NOW, child_env, command

Opener = Callable[..., Store]


@pytest.fixture
def open_any(tmp_path: Path, each_store: str) -> Opener:
    """Open the test's store, on each backend: the SQLite file in tmp_path, or PostgreSQL."""

    def opener(migrations: Sequence[str] = MIGRATIONS) -> Store:
        if each_store == "sqlite":
            return open_store(tmp_path, migrations=migrations)
        config = Config(path=tmp_path / "config.yaml")
        return open_store_for(config, helpers.STORE_ENV, migrations=migrations)

    return opener


SEARCH = "https://huggingface.co/papers?q="


def columns(store: Store, table: str) -> list[str]:
    cursor = store.db.execute(f"SELECT * FROM {table} LIMIT 0")
    return [column[0] for column in cursor.description]


def record(sha: str, listing: date, cards: int = 1, name: str | None = None) -> DigestRecord:
    return DigestRecord(sha, name or f"{sha}.txt", "hf-listing", listing, cards, 0)


def paper_card(title: str = "A Paper", **fields: object) -> Card:
    return Card(title=title, abstract="An abstract.", line=1, **fields)  # type: ignore[arg-type]


def test_new_store_has_latest_schema_and_wal(tmp_path: Path) -> None:
    with open_store(tmp_path / "state") as store:
        assert store.schema_version == len(MIGRATIONS)
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert (tmp_path / "state" / STORE_FILE).exists()


def test_migration_path_upgrades_an_existing_store_and_keeps_data(open_any: Opener) -> None:
    with open_any() as store:
        store.add_digest(record("a", date(2026, 1, 1)), [paper_card()], NOW)
    upgraded = (*MIGRATIONS, "ALTER TABLE papers ADD COLUMN note TEXT; CREATE TABLE extra (x TEXT)")
    with open_any(upgraded) as store:
        assert store.schema_version == len(MIGRATIONS) + 1
        assert [p.title for p in store.papers()] == ["A Paper"]
        assert "note" in columns(store, "papers")


def test_failed_migration_leaves_the_previous_version(open_any: Opener) -> None:
    with open_any() as store:
        store.add_digest(record("a", date(2026, 1, 1)), [paper_card()], NOW)
    broken = (*MIGRATIONS, "ALTER TABLE papers ADD COLUMN ok TEXT; THIS IS NOT SQL")
    with pytest.raises(StoreError):
        open_any(broken)
    with open_any() as store:
        assert store.schema_version == len(MIGRATIONS)
        assert "ok" not in columns(store, "papers")


def test_store_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    open_store(tmp_path).close()
    with sqlite3.connect(tmp_path / STORE_FILE) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="newer than this program"):
        open_store(tmp_path)


def test_a_file_that_is_not_a_database_is_refused_with_a_hint(tmp_path: Path) -> None:
    (tmp_path / STORE_FILE).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="move it aside"):
        open_store(tmp_path)


def test_same_paper_in_two_digests_is_one_paper_with_latest_counters(open_any: Opener) -> None:
    with open_any() as store:
        first = [paper_card("Deep Nets: Shallow Again!", comments=1, upvotes=5)]
        assert store.add_digest(record("a", date(2026, 1, 10)), first, NOW) == 1
        again = [paper_card("deep nets — shallow again", comments=3, upvotes=None)]
        later = NOW + timedelta(days=2)
        assert store.add_digest(record("b", date(2026, 1, 12)), again, later) == 0
        (paper,) = store.papers()
        assert (paper.comments, paper.upvotes) == (3, 5)
        assert paper.title == "Deep Nets: Shallow Again!"
        assert (paper.source, paper.first_seen, paper.listing_date) == (
            "a.txt",
            NOW,
            date(2026, 1, 10),
        )
        older = [paper_card("Deep nets shallow again", comments=9, upvotes=9)]
        store.add_digest(record("c", date(2026, 1, 1)), older, later)
        (paper,) = store.papers()
        assert (paper.comments, paper.upvotes) == (3, 5)


def test_empty_fields_are_filled_from_a_later_capture(open_any: Opener) -> None:
    with open_any() as store:
        store.add_digest(record("a", date(2026, 1, 1)), [paper_card()], NOW)
        fuller = [paper_card(authors_count=4, published=date(2025, 12, 30), arxiv_id="2512.00001")]
        store.add_digest(record("b", date(2026, 1, 2)), fuller, NOW)
        (paper,) = store.papers()
        assert (paper.authors_count, paper.published, paper.arxiv_id) == (
            4,
            date(2025, 12, 30),
            "2512.00001",
        )


def test_arxiv_source_reuses_the_id_a_title_only_source_gave(open_any: Opener) -> None:
    with open_any() as store:
        store.add_digest(record("a", date(2026, 1, 1)), [paper_card("Same")], NOW)
        (before,) = store.papers()
        new = store.add_digest(
            record("b", date(2026, 1, 2)), [paper_card("SAME", arxiv_id="2601.00002")], NOW
        )
        (after,) = store.papers()
        assert new == 0
        assert after.id == before.id
        assert after.arxiv_id == "2601.00002"


@pytest.mark.parametrize("capture_first", [True, False])
def test_a_captured_paper_links_to_its_hugging_face_page_once_another_source_lists_it(
    open_any: Opener, capture_first: bool
) -> None:
    """A text capture knows no arXiv id: its paper links to a search, until a source that
    knows the page lists the same title (its case and punctuation aside), in either order."""
    hf_page = "https://huggingface.co/papers/2601.00003"
    capture = [paper_card("Deep Nets: Shallow Again")]
    links = Details(links=(("hf", hf_page),))
    listed = [paper_card("deep nets - shallow again!", arxiv_id="2601.00003", details=links)]
    with open_any() as store:
        store.add_digest(record("a", date(2026, 1, 1)), capture if capture_first else listed, NOW)
        (alone,) = store.papers()
        assert paper_url(alone.title, alone.links).startswith(SEARCH) == capture_first
        store.add_digest(record("b", date(2026, 1, 2)), listed if capture_first else capture, NOW)
        (paper,) = store.papers()
        assert paper_url(paper.title, paper.links) == hf_page


def test_duplicate_cards_in_one_digest_count_once(open_any: Opener) -> None:
    with open_any() as store:
        cards = [paper_card("X"), paper_card("Y"), paper_card("x")]
        assert store.add_digest(record("a", date(2026, 1, 1), cards=3), cards, NOW) == 2
        assert store.paper_count() == 2


def test_an_error_mid_digest_leaves_nothing_behind(open_any: Opener) -> None:
    class Exploding(list):
        def __iter__(self):
            yield paper_card("First")
            raise RuntimeError("disk on fire")

        def __len__(self) -> int:
            return 2

    with open_any() as store:
        with pytest.raises(RuntimeError):
            store.add_digest(record("a", date(2026, 1, 1)), Exploding(), NOW)
        assert store.paper_count() == 0
        assert not store.has_digest("a")


@pytest.mark.slow
def test_killed_ingest_leaves_a_consistent_store_and_is_redone(tmp_path: Path) -> None:
    cards = [card(f"Paper number {i}: a synthetic title", date="Aug 20") for i in range(60_000)]
    big = tmp_path / "digests" / "big.txt"
    big.parent.mkdir()
    big.write_text(capture(*cards))
    (tmp_path / "config.yaml").write_text("digests: digests\nstate_dir: state\n")
    newsletter = command(tmp_path / "config.yaml")
    process = subprocess.Popen([*newsletter, "ingest"], stdout=subprocess.DEVNULL, env=child_env())
    wal = tmp_path / "state" / f"{STORE_FILE}-wal"
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        if wal.exists() and wal.stat().st_size > 1_000_000:
            process.kill()
            break
        time.sleep(0.005)
    process.wait()
    assert process.returncode < 0, "ingest finished before it could be killed; use a bigger file"
    with open_store(tmp_path / "state") as store:
        assert store.paper_count() == 0
        assert store.digests() == []
    subprocess.run([*newsletter, "ingest"], check=True, stdout=subprocess.DEVNULL, env=child_env())
    with open_store(tmp_path / "state") as store:
        assert store.paper_count() == 60_000
        assert len(store.digests()) == 1


def test_ingest_reports_each_file_and_goes_on_after_a_rejected_one(tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_text(capture(card("One"), card("Two")))
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x00\x01\x02")
    missing = tmp_path / "missing.txt"
    with open_store(tmp_path / "state") as store:
        report = ingest(store, [bad, missing, good], now=NOW)
        assert [f.status for f in report.files] == ["rejected", "rejected", "ingested"]
        assert "binary" in (report.files[0].error or "")
        assert "cannot read" in (report.files[1].error or "")
        assert report.new_papers == 2
        again = ingest(store, [good], now=NOW)
        assert [f.status for f in again.files] == ["skipped"]
        assert store.paper_count() == 2


def test_the_state_folder_and_its_files_are_private(tmp_path: Path) -> None:
    """Issue 13, 11: addresses and message bodies are nobody else's business."""
    state = tmp_path / "state"
    with state_lock(state), open_store(state) as store:
        store.db.execute("CREATE TABLE probe (x)")  # write something: WAL files appear
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for path in state.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def test_papers_stored_before_schema_5_read_with_empty_details(open_any: Opener) -> None:
    with open_any(MIGRATIONS[:4]) as store, store.transaction() as db:
        db.execute(
            "INSERT INTO papers (id, arxiv_id, title_key, title, abstract, listing_date, source,"
            " position, first_seen, counters_date) VALUES ('2601.00001', '2601.00001', 'old',"
            " 'Old', 'An abstract.', '2026-01-01', 'a.txt', 0, ?, '2026-01-01')",
            (NOW.isoformat(),),
        )
    with open_any() as store:
        (old,) = store.papers()
        assert store.schema_version == len(MIGRATIONS)
    assert old.details == Details() and old.links["arxiv"] == "https://arxiv.org/abs/2601.00001"
    assert old.to_json()["authors"] == [] and old.to_json()["links"]["pdf"].endswith("2601.00001")


def test_links_of_two_captures_merge_and_the_first_capture_keeps_its_own(open_any: Opener) -> None:
    first = Details(links=(("github", "https://github.com/a/first"),))
    later = Details(
        links=(("github", "https://github.com/a/later"), ("project", "https://a.example/"))
    )
    with open_any() as store:
        store.add_digest(record("a", date(2026, 1, 1)), [paper_card(details=first)], NOW)
        store.add_digest(record("b", date(2026, 1, 2)), [paper_card(details=later)], NOW)
        (paper,) = store.papers()
    assert dict(paper.details.links) == {
        "github": "https://github.com/a/first",
        "project": "https://a.example/",
    }


def test_papers_from_counts_only_the_files_a_source_fetched(open_any: Opener) -> None:
    with open_any() as store:
        for name, title in [
            ("hf-2026-01-01.json", "One"),
            ("hf-2026-01-02.json", "Two"),
            ("hf-extra-2026-01-02.json", "Another source"),
            ("hf_2026-01-02.json", "Not fetched"),
        ]:
            store.add_digest(record(name, date(2026, 1, 1), name=name), [paper_card(title)], NOW)
        recent, newest = store.papers_from("hf", NOW - timedelta(days=1))
        assert (recent, newest) == (2, NOW.isoformat())
        assert store.papers_from("hf", NOW)[0] == 0


def test_papers_of_digests_recorded_before_schema_9_are_packed_in_the_order_sent(
    open_any: Opener,
) -> None:
    stamp = NOW.isoformat()
    with open_any(MIGRATIONS[:8]) as store:
        store.add_digest(
            record("a", date(2026, 1, 1)),
            [paper_card(f"Paper {n}", arxiv_id=f"2601.0000{n}") for n in range(1, 5)],
            NOW,
        )
        with store.transaction() as db:
            for message_id, status in (("<m1@x>", "sent"), ("<m2@x>", "pending")):
                db.execute(
                    "INSERT INTO deliveries (message_id, subscriber, status, created_at,"
                    " updated_at, sent_at) VALUES (?, 'ada@example.org', ?, ?, ?, ?)",
                    (message_id, status, stamp, stamp, stamp if status == "sent" else None),
                )
            # Sent in the order 3, 1, 4 (positions); the pending one from before positions.
            db.executemany(
                "INSERT INTO delivery_papers VALUES ('ada@example.org', ?, ?, ?)",
                [
                    ("2601.00004", "<m1@x>", 2),
                    ("2601.00003", "<m1@x>", 0),
                    ("2601.00001", "<m1@x>", 1),
                    ("2601.00002", "<m2@x>", None),
                ],
            )
    with open_any() as store:
        assert store.schema_version == len(MIGRATIONS)
        assert "papers" in columns(store, "deliveries")
        ledger = Ledger(store)
        assert ledger.papers_of("<m1@x>") == ("2601.00003", "2601.00001", "2601.00004")
        assert [p.paper_ids for p in ledger.pending()] == [("2601.00002",)]
        history = ledger.history()["ada@example.org"]
        assert history.sent == {"2601.00001", "2601.00002", "2601.00003", "2601.00004"}
        assert ledger.totals()["ada@example.org"][1] == 3
        tables = store.db.execute(
            "SELECT count(*) FROM sqlite_master WHERE name = 'delivery_papers'"
            if store.db.shared() is None
            else "SELECT count(*) FROM pg_tables WHERE tablename = 'delivery_papers'"
        ).fetchone()
        assert tables == (0,)
