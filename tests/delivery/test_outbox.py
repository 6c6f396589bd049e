"""The Maildir outbox: written in batches (one sync each), exactly once per Message-ID, and
its spool, written by the rendering workers."""

from __future__ import annotations

import ctypes
import json
import mailbox
import mmap
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from newsletter.config.settings import DomainLimit, SmtpSettings
from newsletter.delivery.flow import Retry, deliver
from newsletter.delivery.outbox import OUTBOX_BATCH, OutboxTransport
from newsletter.delivery.pacing import Clock, Pacer
from newsletter.delivery.transport import Outgoing
from newsletter.errors import FatalDeliveryError
from newsletter.models import Envelope, RenderedEmail
from tests.shop import outbox_messages, send_now


def message(number: int) -> Outgoing:
    recipient = f"reader{number}@example.org"
    data = f"Message-ID: <digest.{number}@example.org>\r\nSubject: {number}\r\n\r\nbody\r\n"
    envelope = Envelope("digest@example.org", recipient)
    return Outgoing(f"<digest.{number}@example.org>", recipient, envelope, data.encode())


def send(folder: Path, items: list[Outgoing]) -> list[bool]:
    bursts = deliver(OutboxTransport(folder), items, Retry(1, 0))
    return [r.delivered for burst in bursts for r in burst]


def subjects(folder: Path) -> list[str]:
    return sorted(str(m["Subject"]) for m in mailbox.Maildir(folder, create=False))


def test_every_message_once_in_batches(tmp_path: Path) -> None:
    assert OutboxTransport(tmp_path / "outbox").batch == OUTBOX_BATCH > 1
    items = [message(n) for n in range(300)]
    assert send(tmp_path / "outbox", items) == [True] * 300
    assert subjects(tmp_path / "outbox") == sorted(str(n) for n in range(300))
    first = next(iter(mailbox.Maildir(tmp_path / "outbox", create=False)))
    assert first["Return-Path"] == "<digest@example.org>"
    assert os.listdir(tmp_path / "outbox" / "tmp") == []


def test_a_message_handed_over_again_is_not_written_twice(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    assert send(outbox, [message(1), message(2)]) == [True, True]
    assert send(outbox, [message(1)]) == [True]  # (a resend after a kill)
    assert subjects(outbox) == ["1", "2"]


def test_a_message_a_reader_has_seen_is_not_written_again(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    send(outbox, [message(1)])
    (name,) = os.listdir(outbox / "new")
    os.rename(outbox / "new" / name, outbox / "cur" / f"{name}:2,S")  # as mutt does
    assert send(outbox, [message(1)]) == [True]
    assert os.listdir(outbox / "new") == [] and os.listdir(outbox / "cur") == [f"{name}:2,S"]
    connection = OutboxTransport(outbox).connect()
    connection.send_many([message(1), message(2)])  # type: ignore[attr-defined]
    assert subjects(outbox) == ["1", "2"] and len(os.listdir(outbox / "new")) == 1


def test_a_half_written_file_of_a_killed_run_is_replaced(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    send(outbox, [message(1)])
    (name,) = os.listdir(outbox / "new")
    os.unlink(outbox / "new" / name)
    (outbox / "tmp" / name).write_bytes(b"x" * 1000)  # a killed run's, longer than this one
    assert send(outbox, [message(1)]) == [True]
    assert (outbox / "new" / name).read_bytes().endswith(b"\r\n\r\nbody\r\n")
    assert os.listdir(outbox / "tmp") == []


def rendered(number: int) -> RenderedEmail:
    item = message(number)
    return RenderedEmail(
        item.subscriber, str(number), "", "", item.message_id, (), item.data, item.envelope
    )


def staged(number: int) -> Outgoing:
    """What a rendering worker passes on for a message it wrote to the spool: no bytes."""
    return replace(message(number), data=b"", staged=True)


def test_staged_messages_are_handed_over_by_linking_them(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    spool = OutboxTransport(outbox).spool()
    files = [spool.stage(rendered(n)) for n in range(3)]
    spool.settle(files)
    assert len(os.listdir(outbox / "tmp")) == 3 and os.listdir(outbox / "new") == []
    assert send(outbox, [staged(0), staged(1), message(7), staged(2)]) == [True] * 4
    assert subjects(outbox) == ["0", "1", "2", "7"]
    assert os.listdir(outbox / "tmp") == []
    first = next(iter(mailbox.Maildir(outbox, create=False)))
    assert first["Return-Path"] == "<digest@example.org>"


def cached_pages(path: Path) -> int | None:
    """How many of the file's pages are in the page cache (mincore(2)); None where that
    cannot be asked."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int]
    libc.mmap.argtypes += [ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    size, page = path.stat().st_size, os.sysconf("SC_PAGE_SIZE")
    handle = os.open(path, os.O_RDONLY)
    try:
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, handle, 0)
        if address in (None, ctypes.c_void_p(-1).value):
            return None
        pages = ctypes.create_string_buffer((size + page - 1) // page)
        asked = libc.mincore(address, size, pages)
        libc.munmap(address, size)
        return None if asked != 0 else sum(byte & 1 for byte in pages.raw)
    finally:
        os.close(handle)


def test_staged_messages_are_synced_by_the_handing_over_and_leave_the_page_cache(
    tmp_path: Path,
) -> None:
    """The rendering workers only write (a sync there kept them off their cores); the
    connection that links the batch syncs it first, and its pages then leave the cache."""
    outbox = tmp_path / "outbox"
    spool = OutboxTransport(outbox).spool()
    spool.settle([spool.stage(rendered(n)) for n in range(3)])
    (outbox / "written").write_bytes(b"x" * 10_000)
    if not cached_pages(outbox / "written"):
        pytest.skip("this file system keeps no page cache that mincore(2) can see")
    assert send(outbox, [staged(0), staged(1), staged(2)]) == [True] * 3
    assert [cached_pages(outbox / "new" / name) for name in os.listdir(outbox / "new")] == [0] * 3


def test_a_staged_message_a_reader_has_is_not_delivered_again(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    send(outbox, [message(1)])
    (name,) = os.listdir(outbox / "new")
    os.rename(outbox / "new" / name, outbox / "cur" / f"{name}:2,S")
    spool = OutboxTransport(outbox).spool()
    spool.settle([spool.stage(rendered(1))])  # (rendered again after a kill)
    assert send(outbox, [staged(1)]) == [True]
    assert os.listdir(outbox / "new") == [] and os.listdir(outbox / "tmp") == []


def test_a_staged_message_that_vanished_fails_and_says_where(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    OutboxTransport(outbox).spool()
    bursts = deliver(OutboxTransport(outbox), [staged(4)], Retry(1, 0))
    (result,) = [r for burst in bursts for r in burst]
    assert not result.delivered and "cannot write to the outbox" in (result.error or "")
    assert "tmp" in (result.error or "")


def test_the_spool_says_when_it_cannot_write(tmp_path: Path) -> None:
    spool = OutboxTransport(tmp_path / "outbox").spool()
    shutil.rmtree(tmp_path / "outbox" / "tmp")
    with pytest.raises(FatalDeliveryError, match=r"cannot write to the outbox: .*tmp"):
        spool.stage(rendered(1))


class _Noting(OutboxTransport):
    """The outbox, noting the thread and size of each batch written."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.batches: list[tuple[int, int]] = []  # (thread, messages)

    def connect(self):  # type: ignore[no-untyped-def]
        connection = super().connect()
        send_many = connection.send_many  # type: ignore[attr-defined]

        def noting(batch: list[Outgoing]) -> None:
            self.batches.append((threading.get_ident(), len(batch)))
            send_many(batch)

        connection.send_many = noting  # type: ignore[attr-defined]
        return connection


def test_the_outbox_is_written_in_the_callers_thread_a_batch_at_a_time(tmp_path: Path) -> None:
    transport = _Noting(tmp_path / "outbox")
    bursts = [len(b) for b in deliver(transport, [message(n) for n in range(250)], Retry(1, 0))]
    assert bursts == [OUTBOX_BATCH, OUTBOX_BATCH, 250 - 2 * OUTBOX_BATCH]
    assert transport.batches == [(threading.get_ident(), size) for size in bursts]
    assert len(subjects(tmp_path / "outbox")) == 250


def test_a_stop_hands_over_no_more_batches(tmp_path: Path) -> None:
    stop = threading.Event()
    taken: list[int] = []

    def items() -> Iterator[Outgoing]:
        for number in range(3 * OUTBOX_BATCH):
            taken.append(number)
            yield message(number)

    bursts = deliver(_Noting(tmp_path / "outbox"), items(), Retry(1, 0), stop)
    first = next(bursts)
    stop.set()
    assert list(bursts) == [] and len(first) == OUTBOX_BATCH
    assert len(taken) == OUTBOX_BATCH and len(subjects(tmp_path / "outbox")) == OUTBOX_BATCH


def test_a_paced_outbox_goes_through_the_pacer_on_a_thread(tmp_path: Path) -> None:
    limits = SmtpSettings(domains={"example.org": DomainLimit(connections=1, per_minute=None)})
    pacer = Pacer(limits, Clock(time.monotonic, time.sleep), datetime.now(UTC))
    transport = _Noting(tmp_path / "outbox")
    results = deliver(transport, [message(n) for n in range(5)], Retry(1, 0), pacer=pacer)
    assert sum(len(burst) for burst in results) == 5
    assert {thread for thread, _ in transport.batches} != {threading.get_ident()}


def test_a_pre_created_empty_outbox_folder_becomes_a_maildir(shop: Path) -> None:
    (shop / "outbox").mkdir()
    result = send_now(shop, "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["sent"]) == 2
    assert len(outbox_messages(shop)) == 2


def test_an_outbox_folder_of_other_files_is_refused_with_the_fix(shop: Path) -> None:
    (shop / "outbox").mkdir()
    (shop / "outbox" / "notes.txt").write_text("mine")
    result = send_now(shop)
    assert result.exit_code != 0
    assert "is not a Maildir" in result.output and "new or empty folder" in result.output
    assert (shop / "outbox" / "notes.txt").read_text() == "mine"
