"""The ledger: each digest recorded pending before it is handed over, then sent or failed;
what a subscriber was offered is never offered again, and the totals follow."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from newsletter.ledger.ledger import Handover, Ledger
from newsletter.store.papers import Store
from newsletter.store.sqlite import open_store
from tests.helpers import NOW

LATER = NOW + timedelta(hours=1)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(tmp_path / "state") as opened:
        yield opened


def hand_over(ledger: Ledger, message_id: str, *papers: str) -> None:
    ledger.record_pending([Handover(message_id, "ada@example.org", papers)], NOW)


def test_a_digest_is_pending_until_sent_then_history(store: Store) -> None:
    ledger = Ledger(store)
    hand_over(ledger, "<m1@example.org>", "2601.00002", "2601.00001")
    (pending,) = ledger.pending()
    assert pending.paper_ids == ("2601.00002", "2601.00001")  # in the order sent
    assert ledger.history()["ada@example.org"].sent == {"2601.00001", "2601.00002"}
    assert ledger.history()["ada@example.org"].last_digest_at is None
    ledger.record_sent([("<m1@example.org>", 1)], LATER)
    assert ledger.pending() == []
    assert ledger.history()["ada@example.org"].last_digest_at == LATER
    assert ledger.totals()["ada@example.org"] == (LATER, 2)
    assert ledger.papers_of("<m1@example.org>") == ("2601.00002", "2601.00001")


def test_a_transient_failure_stays_pending_and_counts_its_attempts(store: Store) -> None:
    ledger = Ledger(store)
    hand_over(ledger, "<m1@example.org>", "2601.00001")
    ledger.record_failure("<m1@example.org>", 3, "451 try later", 451, False, LATER)
    (pending,) = ledger.pending()
    assert pending.message_id == "<m1@example.org>" and pending.attempts == 3


def test_papers_of_a_permanent_failure_are_offered_again_only_when_asked(store: Store) -> None:
    ledger = Ledger(store)
    hand_over(ledger, "<m1@example.org>", "2601.00001")
    ledger.record_failure("<m1@example.org>", 1, "550 no such user", 550, True, LATER)
    assert ledger.pending() == []
    assert ledger.history()["ada@example.org"].sent == {"2601.00001"}
    assert ledger.history(retry_failed=True)["ada@example.org"].sent == frozenset()


def test_a_dry_run_ledger_writes_nothing(store: Store) -> None:
    from newsletter.ledger.ledger import DryRunLedger

    hand_over(DryRunLedger(store), "<m1@example.org>", "2601.00001")
    assert Ledger(store).pending() == [] and Ledger(store).history() == {}
