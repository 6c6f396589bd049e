"""The transports, by the name ``delivery`` gives them in config.yaml: a new transport is a
module declaring its ``TransportKind`` (see ``delivery.transport``) and a line here."""

from __future__ import annotations

from newsletter.delivery import outbox, smtp
from newsletter.delivery.transport import TransportKind

TRANSPORTS: dict[str, TransportKind] = {
    outbox.KIND.name: outbox.KIND,
    smtp.KIND.name: smtp.KIND,
}


def transport_kind(name: str) -> TransportKind:
    """The transport ``delivery`` names (the config reader has checked it is one)."""
    return TRANSPORTS[name]
