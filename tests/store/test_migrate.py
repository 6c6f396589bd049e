"""``newsletter migrate-store``: the SQLite store copied into PostgreSQL, whole and verified,
and a send from the copy that carries on where the SQLite store left off."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from newsletter.ledger.ledger import Ledger
from newsletter.ledger.suppression import SubscriberState
from newsletter.store.migrate import NOT_COPIED, TABLES
from newsletter.store.sqlite import open_store
from tests import helpers
from tests.helpers import NOW, SAMPLES, invoke, open_project_store
from tests.pg_cluster import PASSWORD, PASSWORD_ENV

PROFILES = """\
subscribers:
  - email: ada@example.org
    keywords: [pruning, "knowledge distillation", "compress*"]
  - email: grace@example.org
    keywords: [transformer, "zero-shot"]
  - email: bob@example.org
    keywords: [distillation]
"""


@pytest.fixture
def sent(tmp_path: Path) -> Path:
    """A project whose SQLite store has a send, an unsubscription and feedback in it."""
    shutil.copytree(SAMPLES, tmp_path / "digests")
    (tmp_path / "subscribers.yaml").write_text(PROFILES)
    (tmp_path / "config.yaml").write_text("delivery: outbox\n")
    config = tmp_path / "config.yaml"
    assert invoke(config, "send", "--now").exit_code == 0
    assert invoke(config, "unsubscribe", "bob@example.org").exit_code == 0
    with open_store(tmp_path / "state") as store:
        (row, *_) = Ledger(store).rows("ada@example.org")
        SubscriberState(store).record_feedback(
            "ada@example.org", str(row["paper_id"]), "k", "more", NOW
        )
    return tmp_path


def migrate(project: Path, url: str, *extra: str):
    return invoke(
        project / "config.yaml", "migrate-store", "--to", url, *extra,
        environ={PASSWORD_ENV: PASSWORD},
    )  # fmt: skip


def test_everything_is_copied_and_the_next_send_carries_on(sent: Path, pg_url: str) -> None:
    result = migrate(sent, pg_url, "--json")
    assert result.exit_code == 0, result.output
    tables = json.loads(result.stdout)["tables"]
    for table in ("papers", "digests", "deliveries", "suppressions"):
        assert tables[table]["source"] == tables[table]["target"] > 0, table
    assert tables["feedback"] == {"source": 1, "target": 1}
    with open_store(sent / "state") as store:
        before = Ledger(store).rows()
        papers = [p.id for p in store.papers()]
    environ = {"NEWSLETTER_STORE": pg_url, PASSWORD_ENV: PASSWORD}
    again = invoke(sent / "config.yaml", "send", "--now", "--json", environ=environ)
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    assert summary["sent"] == []  # nobody gets a paper twice: the ledger came along
    assert {s["subscriber"] for s in summary["skipped"]} >= {"bob@example.org"}
    helpers.STORE_ENV.update(environ)
    try:
        with open_project_store(sent) as store:
            assert Ledger(store).rows() == before
            assert [p.id for p in store.papers()] == papers
            state = SubscriberState(store)
            assert state.suppression("bob@example.org") is not None
            state.record_feedback("grace@example.org", papers[0], "k", "less", NOW)  # new id
            assert [f.kind for f in state.feedback("grace@example.org")] == ["less"]
    finally:
        helpers.STORE_ENV.clear()


def test_a_database_with_data_is_never_copied_into(sent: Path, pg_url: str) -> None:
    assert migrate(sent, pg_url).exit_code == 0
    second = migrate(sent, pg_url)
    assert second.exit_code == 1
    assert "already holds newsletter data" in second.output
    assert "createdb" in second.output


def test_the_target_must_be_postgresql_and_the_source_must_exist(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("digests: .\n")
    result = invoke(tmp_path / "config.yaml", "migrate-store", "--to", "postgresql://h/db")
    assert result.exit_code == 1 and "there is no SQLite store to copy" in result.output
    result = invoke(tmp_path / "config.yaml", "migrate-store", "--to", "sqlite")
    assert result.exit_code == 1 and "give a PostgreSQL URL" in result.output


def test_every_table_of_the_schema_is_copied_or_said_not_to_be(tmp_path: Path) -> None:
    with open_store(tmp_path / "state") as store:
        rows = store.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        tables = {name for (name,) in rows}
    assert tables == {*TABLES, *NOT_COPIED}
