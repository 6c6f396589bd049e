"""The preview is the next send: the same papers, a pending digest first, and the whole view
with --all."""

from __future__ import annotations

import json
import mailbox
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from newsletter.ledger.ledger import Handover, Ledger
from tests.helpers import invoke, open_project_store
from tests.send.test_history import FIVE, MONDAY, drop_digest, make_project, send
from tests.smtp_server import SmtpServer

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


def test_a_test_copy_is_the_next_digest_to_another_address_and_records_nothing(
    tmp_path: Path,
) -> None:
    config = make_project(tmp_path)
    drop_digest(tmp_path, "mon.txt", FIVE)
    invoke(config, "ingest", now=MONDAY)
    shown = json.loads(preview(config, MONDAY, "--json").stdout)
    result = invoke(
        config, "send", "--to", "me@example.org", "--subscriber", "ada@example.org", now=MONDAY
    )
    assert result.exit_code == 0, result.output
    assert "nothing recorded" in result.output
    (copy,) = mailbox.Maildir(tmp_path / "outbox", create=False)
    assert str(copy["Subject"]).startswith("[test] ")
    assert str(copy["Message-ID"]).startswith("<test.")
    titles = [p["title"] for p in shown["papers"]]
    assert all(title in copy.get_payload(0).get_payload(decode=True).decode() for title in titles)
    history = invoke(config, "history", "--subscriber", "ada@example.org", "--json")
    assert json.loads(history.stdout)["digests"] == []
    sent = json.loads(invoke(config, "send", "--now", "--json", now=MONDAY).stdout)
    (item,) = sent["sent"]  # (the real digest still goes, with the same papers)
    assert item["papers"] == [p["id"] for p in shown["papers"]]


def test_a_test_copy_over_smtp_goes_to_the_given_address_only(tmp_path: Path) -> None:
    config = make_project(tmp_path)
    drop_digest(tmp_path, "mon.txt", FIVE)
    invoke(config, "ingest", now=MONDAY)
    with SmtpServer() as server:
        config.write_text(
            config.read_text()
            + f"delivery: smtp\nsmtp:\n  host: 127.0.0.1\n  port: {server.port}\n"
            "  security: none\n  timeout: 5\n"
        )
        args = ("send", "--to", "Me@Example.org", "--subscriber", "ada@example.org")
        result = invoke(config, *args, now=MONDAY)
        assert result.exit_code == 0, result.output
        assert f"via 127.0.0.1:{server.port}" in result.output
        assert server.sink.recipients() == ["Me@example.org"]
        (copy,) = server.sink.parsed()
    assert str(copy["Subject"]).startswith("[test] ")
    assert copy["To"].addresses[0].addr_spec == "ada@example.org"  # whose digest it is


def test_a_test_copy_needs_one_subscriber_and_says_when_there_is_nothing(tmp_path: Path) -> None:
    config = make_project(tmp_path)
    alone = invoke(config, "send", "--to", "me@example.org", now=MONDAY)
    assert alone.exit_code == 2 and "--to needs one --subscriber" in alone.output
    empty = invoke(
        config, "send", "--to", "me@example.org", "--subscriber", "ada@example.org", now=MONDAY
    )
    assert empty.exit_code == 1
    assert "no test copy for ada@example.org: nothing ingested yet" in empty.output
    bad = invoke(config, "send", "--to", "me at home", "--subscriber", "ada@example.org")
    assert bad.exit_code == 2 and "'me at home' is not an address" in bad.output
