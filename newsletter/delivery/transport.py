"""What delivery asks of a transport, declared: the values handed over (``Outgoing``) and
reported (``Result``), the ``Connection`` and ``Transport`` base classes with their defaults,
the spool rendering workers may write into, and ``TransportKind``, how the registry knows
one."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from newsletter.models import Envelope, RenderedEmail

if TYPE_CHECKING:
    from newsletter.config.settings import Config


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to deliver."""

    message_id: str
    subscriber: str
    envelope: Envelope
    data: bytes
    staged: bool = False  # written to the transport's spool by a rendering worker (no data)

    @classmethod
    def of(cls, email: RenderedEmail) -> Outgoing:
        """The rendered email, as delivery needs it."""
        return cls(email.message_id, email.subscriber, email.envelope, email.data, email.staged)


@dataclass(frozen=True, slots=True)
class Result:
    """What happened to one message."""

    outgoing: Outgoing
    delivered: bool
    attempts: int
    error: str | None = None
    code: int | None = None
    permanent: bool = False  # a 5xx (or an address the server cannot take): not retried


class Connection(ABC):
    """An open connection to where messages go."""

    @abstractmethod
    def send(self, outgoing: Outgoing) -> None:
        """Deliver one message or raise Failure / FatalDeliveryError."""

    def send_many(self, batch: list[Outgoing]) -> None:
        """Deliver every message of ``batch`` or raise (a transport whose ``batch`` is more
        than 1 writes them at once; this default sends each in turn)."""
        for outgoing in batch:
            self.send(outgoing)

    def close(self) -> None:
        """Let go of the connection (by default there is nothing to let go of)."""
        return

    def abort(self) -> None:
        """Cut the connection from another thread: a ``send`` in progress fails at once (by
        default there is nothing to cut)."""
        return


class Transport(ABC):
    """Where messages go: opens connections. What delivery asks of every transport is
    declared here, with the defaults a simple one needs (listmonk's ``Messenger``)."""

    parallel: int = 1  # connections used at once
    where: str = ""  # for messages and reports: the folder or host:port
    message_timeout: float | None = None  # the most one message may take in all (None: none)
    rate_limited: bool = False  # smtp.rate and smtp.domains apply (not to a folder)
    # Messages one connection takes at once with ``send_many``: more than 1 only for a
    # transport that is exactly once (a message handed over again writes no copy).
    batch: int = 1

    @abstractmethod
    def connect(self) -> Connection:
        """A new connection (raises FatalDeliveryError or Failure)."""

    def spool(self) -> Spool | None:
        """Where rendering workers may write messages before they are handed over, so only
        their names travel back (None: the messages travel back whole)."""
        return None


class DryRunTransport(Transport, Connection):
    """Takes every message and delivers none of them (``send --dry-run``); counts the caps
    of ``smtp.rate`` as the configured transport would (``rate_limited``)."""

    where = "nowhere (dry run)"

    def __init__(self, rate_limited: bool = False) -> None:
        self.rate_limited = rate_limited

    def connect(self) -> Connection:
        return self

    def send(self, outgoing: Outgoing) -> None:
        """Accepts the message; it goes nowhere."""


def _no_problems(config: Config, environ: Mapping[str, str]) -> list[str]:
    return []


@dataclass(frozen=True)
class TransportKind:
    """A way out, declared once: its name as ``delivery`` in config.yaml, how it is made,
    and what a send and ``validate`` ask of it before any transport exists. A new transport
    is a module declaring one of these plus a line in ``delivery.registry``."""

    name: str
    make: Callable[[Config, Mapping[str, str]], Transport]
    rate_limited: bool = False  # as the transport's own (a dry run counts the caps so)
    # Its connections wait on a server's replies: the rendering workers then yield the CPU,
    # so a reply gets a core the moment it comes (send.produce).
    waits_on_server: bool = False
    section: str | None = None  # the config section it needs, e.g. "smtp"
    section_hint: str = ""  # what goes in that section, for the error when it is missing
    # What a send would stumble on that the config file alone does not show.
    setup_problems: Callable[[Config, Mapping[str, str]], list[str]] = _no_problems
    # ``validate --connect``: connect, say how it went (None: nothing to connect to).
    try_connection: Callable[[Config, Mapping[str, str]], str] | None = None


class Spool(Protocol):
    """Where a worker writes the messages it renders, so that only their names travel on
    (the outbox's ``Spool``); picklable."""

    def stage(self, email: RenderedEmail) -> Any:
        """Write ``email``; what ``settle`` needs to put it on disk."""

    def settle(self, staged: list[Any]) -> None:
        """Everything ``stage``d since the last call, on disk."""
