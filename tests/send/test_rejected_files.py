"""Digest files that cannot be read: the send goes on, then names them and exits 1; the daemon
logs them."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from newsletter.schedule.daemon import Daemon
from newsletter.world import World
from tests.helpers import NOW, SAMPLES, invoke

PROFILES = "subscribers:\n  - email: ada@example.org\n    keywords: [pruning]\n"


@pytest.fixture
def shop_with_bad_files(tmp_path: Path) -> Path:
    shutil.copytree(SAMPLES, tmp_path / "digests")
    (tmp_path / "digests" / "broken.txt").write_bytes(b"\x00\x01\x02" * 100)
    (tmp_path / "digests" / "empty.txt").write_text("")
    (tmp_path / "subscribers.yaml").write_text(PROFILES)
    (tmp_path / "config.yaml").write_text("sender: Digest <digest@example.org>\n")
    return tmp_path


def test_send_reports_rejected_files_and_exits_1_after_sending(shop_with_bad_files: Path) -> None:
    result = invoke(shop_with_bad_files / "config.yaml", "send", "--json", "--now")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert [s["subscriber"] for s in report["sent"]] == ["ada@example.org"]
    ingest = report["ingest"]
    assert (ingest["ingested"], ingest["rejected"], ingest["new_papers"]) == (3, 2, 12)
    rejected = {Path(f["path"]).name: f["error"] for f in ingest["files"] if f["error"]}
    assert sorted(rejected) == ["broken.txt", "empty.txt"]
    again = invoke(shop_with_bad_files / "config.yaml", "send", "--json", "--now")
    assert again.exit_code == 1  # still there, still reported, until fixed or removed
    assert json.loads(again.stdout)["ingest"]["rejected"] == 2
    (shop_with_bad_files / "digests" / "broken.txt").unlink()
    (shop_with_bad_files / "digests" / "empty.txt").unlink()
    assert invoke(shop_with_bad_files / "config.yaml", "send", "--now").exit_code == 0


def test_the_human_summary_names_rejected_files_and_warnings(shop_with_bad_files: Path) -> None:
    result = invoke(shop_with_bad_files / "config.yaml", "send", "--now")
    assert result.exit_code == 1
    assert "ingested 3 new digest files (12 new papers), 2 rejected" in result.stdout
    assert "broken.txt: rejected:" in result.stderr
    assert "empty.txt: rejected: the file is empty" in result.stderr


def test_the_daemon_logs_rejected_files(
    shop_with_bad_files: Path, caplog: pytest.LogCaptureFixture
) -> None:
    daemon = Daemon(shop_with_bad_files / "config.yaml", World(now=lambda: NOW, environ={}))
    daemon.reload()
    with caplog.at_level(logging.INFO, logger="newsletter.run"):
        daemon.run_due(None)
    text = caplog.text
    assert "3 files ingested (12 new papers), 2 rejected" in text
    assert "broken.txt: rejected" in text
