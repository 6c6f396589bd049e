"""The suppression list: an address unsubscribed, bounced or complained is skipped by every
send until it is lifted; the first reason stays, and each change is an event."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from newsletter.ledger.suppression import SubscriberState
from newsletter.store.sqlite import open_store
from tests.helpers import NOW


@pytest.fixture
def state(tmp_path: Path) -> Iterator[SubscriberState]:
    with open_store(tmp_path / "state") as store:
        yield SubscriberState(store)


def test_the_first_reason_stays(state: SubscriberState) -> None:
    assert state.suppress("ada@example.org", "unsubscribed", "web", NOW)
    assert not state.suppress("ada@example.org", "bounced", "bounce", NOW, "550 gone")
    suppression = state.suppression("ada@example.org")
    assert suppression is not None and suppression.reason == "unsubscribed"


def test_an_address_is_found_whatever_its_case(state: SubscriberState) -> None:
    state.suppress("Ada@Example.org", "complained", "arf", NOW)
    assert state.suppression("ada@example.org") is not None
    assert list(state.suppressed()) == ["ada@example.org"]
    assert state.suppressed(["grace@example.org"]) == {}


def test_lifting_returns_what_was_lifted_and_both_changes_are_events(
    state: SubscriberState,
) -> None:
    state.suppress("ada@example.org", "unsubscribed", "web", NOW)
    lifted = state.lift("ada@example.org", "cli", NOW + timedelta(days=1))
    assert lifted is not None and lifted.reason == "unsubscribed"
    assert state.suppression("ada@example.org") is None
    assert state.lift("ada@example.org", "cli", NOW) is None  # nothing left to lift
    events = state.events("ada@example.org")
    assert [event.event for event in events][-2:] == ["unsubscribed", "resubscribed"]
