"""The send use case as a library call: the run object, its stop, its dry run."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from newsletter.config.load import load_config
from newsletter.delivery.outbox import OutboxTransport
from newsletter.delivery.transport import Connection, Outgoing, Result, Transport
from newsletter.errors import FatalDeliveryError
from newsletter.ledger.ledger import Ledger
from newsletter.ledger.suppression import SubscriberState
from newsletter.models import Envelope
from newsletter.profiles.cache import profiles_of
from newsletter.send.run import Run
from newsletter.send.sending import SENT_GROUP, SENT_LINGER, _HeldResults
from newsletter.world import World
from tests.helpers import NOW, SAMPLES, STORE_ENV, FakeClock, open_project_store

pytestmark = pytest.mark.usefixtures("each_store")


class Recording(Transport, Connection):
    """A transport that keeps what it is given; after ``stop_after`` messages it sets
    ``stop`` (as SIGTERM does to the daemon's event)."""

    where = "memory"

    def __init__(self, stop: threading.Event | None = None, stop_after: int = 0) -> None:
        self.stop = stop
        self.stop_after = stop_after
        self.sent: list[Outgoing] = []

    def connect(self) -> Recording:
        return self

    def send(self, outgoing: Outgoing) -> None:
        self.sent.append(outgoing)
        if self.stop is not None and len(self.sent) == self.stop_after:
            self.stop.set()


def readers_project(folder: Path, count: int) -> Path:
    shutil.copytree(SAMPLES, folder / "digests")
    entries = "".join(
        f"  - email: Reader.{i}@example.org\n    keywords: [pruning]\n" for i in range(count)
    )
    (folder / "subscribers.yaml").write_text("subscribers:\n" + entries)
    (folder / "config.yaml").write_text("sender: Digest <digest@example.org>\n")
    return folder / "config.yaml"


def world() -> World:
    return World(now=lambda: NOW, environ=dict(STORE_ENV))


def test_a_stop_ends_the_run_after_the_message_in_hand_and_is_only_read(tmp_path: Path) -> None:
    config = load_config(readers_project(tmp_path, 40))
    readers = profiles_of(config).subscribers
    stop = threading.Event()
    transport = Recording(stop, stop_after=3)
    report = Run(config, world(), ignore_schedule=True, stop=stop, transport=transport).send(
        readers
    )
    # Stopped: a few delivered (those in the hand-over queue at most), the rest untouched.
    assert 3 <= len(transport.sent) < 10
    assert len(report.sent) == len(transport.sent)
    with open_project_store(config.state_dir.parent) as store:
        rows = Ledger(store).rows()
    assert {r["status"] for r in rows} <= {"sent", "pending"}
    # A run that ends normally never sets the caller's event (the daemon would stop).
    calm = threading.Event()
    Run(config, world(), ignore_schedule=True, stop=calm, transport=Recording()).send(readers)
    assert not calm.is_set()


class WatchedOutbox(OutboxTransport):
    """The outbox, noting whether each message it is handed was staged by the workers."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.staged: list[bool] = []

    def connect(self):
        connection = super().connect()
        send_many = connection.send_many  # type: ignore[attr-defined]

        def noting(batch: list[Outgoing]) -> None:
            self.staged += [outgoing.staged for outgoing in batch]
            send_many(batch)

        connection.send_many = noting  # type: ignore[attr-defined]
        return connection


def test_new_digests_reach_the_outbox_through_its_spool(tmp_path: Path) -> None:
    config = load_config(readers_project(tmp_path, 30))
    readers = profiles_of(config).subscribers
    transport = WatchedOutbox(tmp_path / "outbox")
    report = Run(config, world(), ignore_schedule=True, transport=transport).send(readers)
    assert len(report.sent) == 30 and transport.staged == [True] * 30
    assert len(os.listdir(tmp_path / "outbox" / "new")) == 30
    assert os.listdir(tmp_path / "outbox" / "tmp") == []


def test_history_holds_for_addresses_with_capitals(tmp_path: Path) -> None:
    """Addresses keep their case in the profile file (Reader.1@...), the ledger keys them
    casefolded: a second run must still know what the first sent."""
    config = load_config(readers_project(tmp_path, 2))
    readers = profiles_of(config).subscribers
    first = Run(config, world(), ignore_schedule=True, transport=Recording()).send(readers)
    assert len(first.sent) == 2
    again = Recording()
    second = Run(config, world(), ignore_schedule=True, transport=again).send(readers)
    assert again.sent == [] and second.sent == ()
    stored = 12  # the sample digests' papers
    assert [s.reason for s in second.skipped] == [
        f"no new matches ({stored - len(item.papers)} papers of the last 7 days not sent yet, "
        "none matching)"
        for item in first.sent
    ]


def test_a_dry_run_hands_nothing_over_and_records_nothing(tmp_path: Path) -> None:
    config = load_config(readers_project(tmp_path, 3))
    readers = profiles_of(config).subscribers
    report = Run(config, world(), ignore_schedule=True, dry_run=True).send(readers)
    assert report.dry_run and len(report.sent) == 3
    assert not (tmp_path / "outbox").exists()
    with open_project_store(config.state_dir.parent) as store:
        assert Ledger(store).rows() == []
    assert len(Run(config, world(), ignore_schedule=True, dry_run=True).send(readers).sent) == 3


def test_a_suppressed_address_is_skipped_and_no_other(tmp_path: Path) -> None:
    """Written with capitals in the profile, the suppressed address is still found (on
    PostgreSQL the run is cut into chunks of 2)."""
    project = readers_project(tmp_path, 5)
    project.write_text(project.read_text() + "workers:\n  chunk_size: 2\n")
    config = load_config(project)
    readers = profiles_of(config).subscribers
    with open_project_store(tmp_path) as store:
        SubscriberState(store).suppress("reader.3@example.org", "unsubscribed", "link", NOW)
    transport = Recording()
    report = Run(config, world(), ignore_schedule=True, transport=transport).send(readers)
    assert sorted(item.subscriber for item in report.sent) == [
        f"Reader.{i}@example.org" for i in (0, 1, 2, 4)
    ]
    (skip,) = report.skipped
    assert skip.subscriber == "Reader.3@example.org" and "unsubscribed" in skip.reason
    assert "Reader.3@example.org" not in {o.subscriber for o in transport.sent}


class FailsAfter(Recording):
    """Accepts ``accepted`` messages, then stops the run as a refused login would."""

    def __init__(self, accepted: int) -> None:
        super().__init__()
        self.accepted = accepted

    def send(self, outgoing: Outgoing) -> None:
        if len(self.sent) == self.accepted:
            raise FatalDeliveryError("the server refused the login")
        super().send(outgoing)


def test_accepted_messages_held_for_one_commit_are_recorded_when_the_run_fails(
    tmp_path: Path,
) -> None:
    """Accepted messages wait to share a commit (_HeldResults); a run that fails meanwhile still
    records them as sent, so the next run does not send them again. (On a clock that stands
    still, the group holds up to SENT_GROUP.)"""
    config = load_config(readers_project(tmp_path, 30))
    readers = profiles_of(config).subscribers
    transport, progress = FailsAfter(SENT_GROUP - 4), []
    clock = FakeClock(NOW)
    run = Run(
        config,
        clock.world(environ=dict(STORE_ENV)),
        ignore_schedule=True,
        transport=transport,
        on_result=lambda: progress.append(1),
    )
    with pytest.raises(FatalDeliveryError, match="refused the login"):
        run.send(readers)
    with open_project_store(config.state_dir.parent) as store:
        rows = Ledger(store).rows()
    sent = {r["message_id"] for r in rows if r["status"] == "sent"}
    assert sent == {m.message_id for m in transport.sent} and len(sent) == SENT_GROUP - 4
    assert len(progress) == len(sent)  # (the progress follows what is recorded)
    again = Recording()
    Run(config, world(), ignore_schedule=True, transport=again).send(readers)
    assert len(again.sent) == 30 - len(sent)  # nobody twice


def result(number: int) -> Result:
    message_id = f"<{number}@example.org>"
    envelope = Envelope("digest@example.org", f"r{number}@example.org")
    return Result(Outgoing(message_id, f"r{number}@example.org", envelope, b""), True, 1)


def test_a_group_is_recorded_when_full_or_when_its_first_result_has_waited() -> None:
    clock = FakeClock(NOW)
    group = _HeldResults(clock.monotonic)
    assert group.add([result(0)]) == []
    held = [group.add([result(n)]) for n in range(1, SENT_GROUP - 1)]
    assert held == [[]] * (SENT_GROUP - 2)
    full = group.add([result(SENT_GROUP - 1)])
    assert [r.outgoing.message_id for r in full] == [f"<{n}@example.org>" for n in range(16)]
    assert group.add([result(100)]) == [] and group.add([result(101)]) == []
    clock.sleep(SENT_LINGER)
    assert len(group.add([result(102)])) == 3 and group.take() == []
    paced = _HeldResults(None)  # (a paced send: each result at once)
    assert paced.add([result(7)]) == [result(7)]
