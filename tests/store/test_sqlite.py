"""A store file that is not ours, an unusable state folder, a read-only disk, a damaged page:
each refused with what to do."""

from __future__ import annotations

import sqlite3
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from newsletter.store.sqlite import STORE_FILE
from tests.helpers import NOW, invoke
from tests.shop import new_digest, outbox_messages, send_now, small_disk


@pytest.mark.parametrize("content", [b"", "schema-less"])
def test_a_store_file_without_our_schema_is_refused_not_taken_for_a_new_install(
    shop: Path, content: bytes | str
) -> None:
    (shop / "state").mkdir()
    store = shop / "state" / STORE_FILE
    if content == "schema-less":
        with sqlite3.connect(store) as db:
            db.execute("CREATE TABLE other (x)")
    else:
        store.write_bytes(content)
    result = send_now(shop)
    assert result.exit_code == 1, result.output
    assert f"{store}" in result.stderr and "not a newsletter store" in result.stderr
    assert "restore it from a backup" in result.stderr
    assert not (shop / "outbox").exists()  # nothing sent to anyone
    # With no file at all, a new store is made (a new install).
    store.unlink()
    assert send_now(shop).exit_code == 0
    assert len(outbox_messages(shop)) == 2


def test_an_unusable_state_folder_is_named_with_the_fix(shop: Path) -> None:
    (shop / "blocker").write_text("a file where a folder should be")
    (shop / "config.yaml").write_text(
        "sender: Research digest <digest@example.org>\nstate_dir: blocker/state\n"
    )
    for args in (("send", "--now"), ("papers",), ("ingest",)):
        result = invoke(shop / "config.yaml", *args)
        assert result.exit_code == 1, result.output
        assert "cannot use the state folder" in result.stderr and "blocker/state" in result.stderr
        assert "internal error" not in result.stderr


def test_a_read_only_state_disk_is_named_with_the_fix(shop: Path) -> None:
    with small_disk(shop / "state"):
        assert send_now(shop).exit_code == 0
        new_digest(shop)
        subprocess.run(["mount", "-o", "remount,ro", str(shop / "state")], check=True)
        result = send_now(shop, now=NOW + timedelta(days=1))
    assert result.exit_code == 1, result.output
    assert "internal error" not in result.stderr
    assert str(shop / "state") in result.stderr and "read-only" in result.stderr.lower()


def test_a_damaged_store_page_is_named_with_how_to_recover(shop: Path) -> None:
    assert send_now(shop).exit_code == 0
    store = shop / "state" / STORE_FILE
    with sqlite3.connect(store) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = db.execute("PRAGMA page_count").fetchone()[0]
    data = bytearray(store.read_bytes())
    page = len(data) // pages
    for number in range(1, pages):  # every page but the header's
        data[number * page : number * page + 64] = b"\xa5" * 64
    store.write_bytes(bytes(data))
    result = invoke(shop / "config.yaml", "papers")
    assert result.exit_code == 1, result.output
    assert "internal error" not in result.stderr
    assert "is damaged" in result.stderr and ".recover" in result.stderr
