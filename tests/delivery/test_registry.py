"""A transport is one module plus a registry line: one defined here delivers through
``newsletter send`` with nothing else changed."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from newsletter.config.settings import Config
from newsletter.delivery.registry import TRANSPORTS
from newsletter.delivery.transport import Connection, Outgoing, Transport, TransportKind
from tests.helpers import invoke


class Pigeons(Transport, Connection):
    """A transport of the test's own: keeps what it is given, a message per connection."""

    where = "the pigeon loft"
    parallel = 2

    def __init__(self, loft: list[Outgoing]) -> None:
        self.loft = loft

    def connect(self) -> Connection:
        return self

    def send(self, outgoing: Outgoing) -> None:
        self.loft.append(outgoing)


LOFT: list[Outgoing] = []


def _make(config: Config, environ: Mapping[str, str]) -> Pigeons:
    return Pigeons(LOFT)


@pytest.fixture
def pigeons() -> Iterator[list[Outgoing]]:
    """The pigeon transport, registered for the test's length (the registry line)."""
    LOFT.clear()
    TRANSPORTS["pigeons"] = TransportKind("pigeons", _make)
    try:
        yield LOFT
    finally:
        del TRANSPORTS["pigeons"]


def test_a_transport_defined_in_a_test_delivers_through_send(
    samples_project: Path, pigeons: list[Outgoing]
) -> None:
    config = samples_project / "config.yaml"
    config.write_text(config.read_text() + "delivery: pigeons\n")
    (samples_project / "subscribers.yaml").write_text(
        "subscribers:\n  - email: ada@example.org\n    keywords: [diffusion]\n"
    )
    result = invoke(config, "send", "--now")
    assert result.exit_code == 0, result.output
    assert [o.envelope.recipient for o in pigeons] == ["ada@example.org"]
    assert b"Subject:" in pigeons[0].data
    assert "the pigeon loft" in result.output
    again = invoke(config, "send", "--now")  # recorded in the ledger: not sent twice
    assert again.exit_code == 0, again.output
    assert len(pigeons) == 1


def test_an_unregistered_delivery_is_refused_with_the_registered_names(
    samples_project: Path,
) -> None:
    config = samples_project / "config.yaml"
    config.write_text(config.read_text() + "delivery: pigeons\n")
    result = invoke(config, "send", "--now")
    assert result.exit_code == 2
    assert "'delivery' cannot be 'pigeons' (one of: outbox, smtp)" in result.output
