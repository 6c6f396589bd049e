"""The preview is the next send: the same papers, a pending digest first, and the whole view
with --all."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from newsletter.ledger.ledger import Handover, Ledger
from tests.helpers import invoke, open_project_store
from tests.send.test_history import FIVE, MONDAY, drop_digest, make_project, send

pytestmark = pytest.mark.usefixtures("each_store")


def preview(config: Path, now: datetime, *args: str):
    return invoke(config, "preview", "--subscriber", "ada@example.org", *args, now=now)


def test_preview_is_the_next_send_and_all_keeps_the_full_view(tmp_path: Path) -> None:
    config = make_project(tmp_path)
    drop_digest(tmp_path, "mon.txt", FIVE)
    send(config, MONDAY)
    later = MONDAY + timedelta(hours=1)
    shown = json.loads(preview(config, later, "--json").stdout)
    dry = json.loads(invoke(config, "send", "--json", "--dry-run", "--now", now=later).stdout)
    assert [p["id"] for p in shown["papers"]] == dry["sent"][0]["papers"]
    assert [p["title"] for p in shown["papers"]] == FIVE[2:4]
    everything = json.loads(preview(config, later, "--json", "--all").stdout)
    assert [p["title"] for p in everything["papers"]] == FIVE[:2]


def test_preview_before_any_ingest_says_to_ingest(tmp_path: Path) -> None:
    config = make_project(tmp_path)
    result = preview(config, MONDAY)
    assert result.exit_code == 0
    assert "nothing ingested yet: run `newsletter ingest`" in result.output
    assert "send_empty" not in result.output


def test_did_you_mean_only_for_a_close_address(tmp_path: Path) -> None:
    config = make_project(tmp_path)
    unrelated = invoke(config, "send", "--subscriber", "zed@example.org", now=MONDAY)
    assert unrelated.exit_code == 2
    assert "no subscriber 'zed@example.org'" in unrelated.output
    assert "did you mean" not in unrelated.output
    typo = invoke(config, "send", "--subscriber", "ada@exmaple.org", now=MONDAY)
    assert "did you mean 'ada@example.org'" in typo.output


def test_preview_shows_a_pending_digest_first_as_send_would(tmp_path: Path) -> None:
    config = make_project(tmp_path)
    drop_digest(tmp_path, "mon.txt", FIVE)
    send(config, MONDAY)
    assert len(list((tmp_path / "outbox" / "new").iterdir())) == 1
    with open_project_store(tmp_path) as store:
        ids = [p.id for p in store.papers() if p.title == FIVE[4]]
        left = Handover("<left@example.org>", "ada@example.org", tuple(ids))
        Ledger(store).record_pending([left], MONDAY)
    later = MONDAY + timedelta(hours=1)
    shown = preview(config, later, "--json")
    assert json.loads(shown.stdout)["pending"] == {
        "message_id": "<left@example.org>",
        "papers": ids,
    }
    text = preview(config, later)
    assert "from an interrupted run is pending" in text.stderr
    assert FIVE[4] in text.stdout and FIVE[0] not in text.stdout  # its papers, no others
    dry = json.loads(invoke(config, "send", "--json", "--dry-run", "--now", now=later).stdout)
    assert dry["sent"][0]["message_id"] == "<left@example.org>"
