"""What did not fit comes later, what is too old is gone, nothing comes twice."""

from __future__ import annotations

import collections
import email
import email.policy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from newsletter.ledger.ledger import Ledger
from tests.digest_text import capture, card
from tests.helpers import invoke, open_project_store

pytestmark = pytest.mark.usefixtures("each_store")


MONDAY = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)


PROFILES = """\
subscribers:
  - email: ada@example.org
    keywords: [alpha]
    max_papers: 2
    timezone: Europe/Berlin
"""


def make_project(folder: Path, lookback_days: int = 7) -> Path:
    (folder / "digests").mkdir()
    (folder / "subscribers.yaml").write_text(PROFILES)
    (folder / "config.yaml").write_text(
        f"sender: Digest <digest@example.org>\nlookback_days: {lookback_days}\n"
    )
    return folder / "config.yaml"


def drop_digest(folder: Path, name: str, titles: list[str]) -> None:
    cards = [card(title, upvotes=str(10 - i)) for i, title in enumerate(titles)]
    (folder / "digests" / name).write_text(capture(*cards, listing="Nov 23"))


def send(config: Path, now: datetime, *args: str) -> dict:
    result = invoke(config, "send", "--json", "--now", *args, now=now)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def titles_sent(config: Path) -> collections.Counter:
    with open_project_store(config.parent) as store:
        papers = {p.id: p.title for p in store.papers()}
        rows = Ledger(store).rows()
    return collections.Counter(papers[r["paper_id"]] for r in rows if r["status"] == "sent")


FIVE = [f"Alpha study number {n}" for n in range(1, 6)]


def test_papers_left_out_come_in_the_next_digests_and_never_twice(tmp_path: Path) -> None:
    config = make_project(tmp_path)
    drop_digest(tmp_path, "mon.txt", FIVE)
    first = send(config, MONDAY)
    assert [len(item["papers"]) for item in first["sent"]] == [2]
    (path,) = (tmp_path / "outbox" / "new").iterdir()
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    text = " ".join(message.get_body(("plain",)).get_content().split())
    assert "3 more matches did not fit" in text
    assert "Tuesday 24 November" in text  # when the next digest comes
    second = send(config, MONDAY + timedelta(days=1))
    third = send(config, MONDAY + timedelta(days=2))
    fourth = send(config, MONDAY + timedelta(days=3))
    assert [len(r["sent"][0]["papers"]) for r in (second, third)] == [2, 1]
    assert fourth["sent"] == []
    assert fourth["skipped"][0]["reason"] == "no new papers since the last digest"
    sent = titles_sent(config)
    assert sorted(sent) == FIVE and set(sent.values()) == {1}


def test_papers_older_than_lookback_days_are_gone(tmp_path: Path) -> None:
    config = make_project(tmp_path, lookback_days=2)
    drop_digest(tmp_path, "mon.txt", FIVE)
    send(config, MONDAY)
    late = send(config, MONDAY + timedelta(days=3))
    assert late["sent"] == []
    assert sorted(titles_sent(config)) == FIVE[:2]


def test_a_profile_change_reaches_papers_that_did_not_match_before(tmp_path: Path) -> None:
    config = make_project(tmp_path)
    drop_digest(tmp_path, "mon.txt", ["Alpha study number 1", "Gamma rays observed"])
    send(config, MONDAY)
    (tmp_path / "subscribers.yaml").write_text(PROFILES.replace("[alpha]", "[alpha, gamma]"))
    again = send(config, MONDAY + timedelta(hours=2))
    assert len(again["sent"][0]["papers"]) == 1
    assert titles_sent(config) == {"Alpha study number 1": 1, "Gamma rays observed": 1}
