"""A full disk stops a send before anything more is handed over: nothing goes out that
cannot be recorded."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from newsletter.config.load import load_config
from newsletter.errors import StoreError
from newsletter.profiles.cache import profiles_of
from newsletter.send.run import Run
from newsletter.world import World
from tests.helpers import NOW
from tests.shop import fill, new_digest, outbox_messages, send_now, small_disk, smtp_config
from tests.smtp_server import Sink, SmtpServer


def test_a_full_disk_stops_the_send_before_anything_more_is_handed_over(shop: Path) -> None:
    with small_disk(shop / "state"):
        assert send_now(shop).exit_code == 0
        delivered = len(outbox_messages(shop))
        new_digest(shop)
        filler = fill(shop / "state")
        later = NOW + timedelta(days=1)
        full = send_now(shop, now=later)
        assert full.exit_code == 1, full.output
        assert f"the disk holding {shop / 'state'}" in full.stderr and "is full" in full.stderr
        assert "internal error" not in full.stderr
        assert len(outbox_messages(shop)) == delivered  # nothing handed over
        again = send_now(shop, now=later)  # still full: still nothing, still said
        assert again.exit_code == 1 and len(outbox_messages(shop)) == delivered
        filler.unlink()
        assert send_now(shop, now=later).exit_code == 0
    messages = outbox_messages(shop)
    assert len(messages) == delivered + 2  # the new paper, once to each of its two readers
    assert len({m["Message-ID"] for m in messages}) == len(messages)


def test_when_sqlite_itself_cannot_write_no_pending_digest_is_handed_over_again(
    shop: Path,
) -> None:
    """The free-space check aside (a disk that says it has room), a ledger that cannot be
    written stops the hand-over: a pending digest goes out again only once its ledger row
    has been written."""
    sink = Sink(refuse={"grace@example.org": (451, "try later", 1)})
    roomy = World(now=lambda: NOW, environ={}, free_bytes=lambda path: 10**12)
    with small_disk(shop / "state"), SmtpServer(sink) as server:
        config = load_config(smtp_config(shop, server.port))
        subscribers = profiles_of(config).subscribers
        first = Run(config, roomy, ignore_schedule=True).send(subscribers)
        assert [f.subscriber for f in first.failed] == ["grace@example.org"]
        filler = fill(shop / "state")
        for _ in range(3):  # each cron cycle: refused, never one more copy
            with pytest.raises(StoreError, match="is full"):
                Run(config, roomy, ignore_schedule=True).send(subscribers)
        assert sink.recipients().count("grace@example.org") == 0
        filler.unlink()
        Run(config, roomy, ignore_schedule=True).send(subscribers)
    assert sink.recipients().count("grace@example.org") == 1


def test_a_disk_short_of_room_to_record_is_a_clear_error_and_nothing_goes_out(shop: Path) -> None:
    config = load_config(shop / "config.yaml")
    tight = World(now=lambda: NOW, environ={}, free_bytes=lambda path: 200_000)
    with pytest.raises(StoreError, match=r"is full \(195 KB free\).*free some space"):
        Run(config, tight, ignore_schedule=True).send(profiles_of(config).subscribers)
    assert not (shop / "outbox").exists() or not outbox_messages(shop)
