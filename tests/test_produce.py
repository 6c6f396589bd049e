"""The parallel production stage gives exactly what the sequential one gives."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from newsletter.errors import NewsletterError
from newsletter.matching import History
from newsletter.produce import PARALLEL_FROM, Order, produce
from tests.render_helpers import NOW, ada, fixed_papers, project_config


def test_parallel_production_equals_sequential(tmp_path: Path) -> None:
    config = project_config(tmp_path)
    papers = fixed_papers()
    count = PARALLEL_FROM + 50
    subscribers = [
        replace(ada(), email=f"reader{i}@example.org", max_papers=1 + i % 3) for i in range(count)
    ]
    # Some have received a paper already; some match nothing at all.
    history = {
        f"reader{i}@example.org": History(None, frozenset({"t-compress"}))
        for i in range(0, count, 7)
    }
    subscribers[5] = replace(subscribers[5], keywords=subscribers[5].exclude)

    def outcome(workers: int) -> dict[str, tuple]:
        return {
            item.subscriber: (
                item.email.message_id if item.email else None,
                item.email.paper_ids if item.email else None,
                item.reason,
            )
            for item in produce(Order(subscribers, papers, config, NOW, history, {}), workers)
        }

    sequential = outcome(1)
    assert len(sequential) == count
    assert sequential["reader5@example.org"][0] is None
    assert "t-compress" not in sequential["reader0@example.org"][1]
    assert outcome(2) == sequential


def test_a_failing_worker_stops_the_run_with_its_error(tmp_path: Path) -> None:
    """A template mistake that only shows when rendering (an undefined name) surfaces in the
    caller as a NewsletterError naming it, not as a hang or a half-finished silent run."""
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "digest.txt.j2").write_text("{{ digest.no_such_field }}\n")
    config = project_config(tmp_path)
    subscribers = [replace(ada(), email=f"r{i}@example.org") for i in range(PARALLEL_FROM + 10)]
    order = Order(subscribers, fixed_papers(), config, NOW, {}, {})
    with pytest.raises(NewsletterError, match="no_such_field"):
        for _ in produce(order, workers=2):
            pass
