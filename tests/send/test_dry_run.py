"""What a dry run writes: the new digest files, stored exactly as ``newsletter ingest``
stores them (so that it shows what the send will), and nothing else."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from tests.helpers import NOW, invoke
from tests.send.test_send import configure, send
from tests.smtp_server import SmtpServer


def store_dump(project: Path) -> list[str]:
    with sqlite3.connect(project / "state" / "newsletter.sqlite3") as db:
        lines = list(db.iterdump())
    db.close()
    return lines


def test_a_dry_run_writes_what_ingest_writes_and_nothing_else(shop: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(shop, other)
    with SmtpServer() as server:
        configure(shop, server.port)
        configure(other, server.port)
        dry = send(shop, "--dry-run")
        assert dry.exit_code == 0, dry.output
        assert invoke(other / "config.yaml", "ingest", now=NOW).exit_code == 0
        assert store_dump(shop) == store_dump(other)  # the digest files, stored as ingest does
        assert "stores new digest files as `newsletter ingest` stores them" in dry.output
        before = store_dump(shop)
        assert send(shop, "--dry-run").exit_code == 0  # nothing new: nothing written at all
        assert store_dump(shop) == before
        assert server.sink.messages == []
