"""The flow that hands messages over, whatever the transport: transient failures retried
with backoff, permanent ones not, a fatal error stops everything, a batch goes at once."""

from __future__ import annotations

import random
import threading

import pytest

from newsletter.delivery.flow import Retry, deliver
from newsletter.delivery.transport import Connection, Outgoing, Transport
from newsletter.errors import DeliveryFailure, FatalDeliveryError
from newsletter.models import Envelope


def message(number: int) -> Outgoing:
    recipient = f"reader{number}@example.org"
    envelope = Envelope("digest@example.org", recipient)
    return Outgoing(f"<digest.{number}@example.org>", recipient, envelope, b"body\r\n")


class Scripted(Transport, Connection):
    """A transport that fails each message as ``failures`` says (a recipient to the
    failures to raise, in turn), then accepts it."""

    where = "scripted"

    def __init__(self, failures: dict[str, list[Exception]], parallel: int = 1) -> None:
        self.failures = failures
        self.parallel = parallel
        self.accepted: list[str] = []
        self.lock = threading.Lock()

    def connect(self) -> Connection:
        return self

    def send(self, outgoing: Outgoing) -> None:
        with self.lock:
            waiting = self.failures.get(outgoing.subscriber, [])
            if waiting:
                raise waiting.pop(0)
            self.accepted.append(outgoing.subscriber)


def results(transport: Transport, items: list[Outgoing], retry: Retry) -> dict:
    return {r.outgoing.subscriber: r for burst in deliver(transport, items, retry) for r in burst}


def transient(code: int = 451) -> DeliveryFailure:
    return DeliveryFailure(f"{code} try again later", code, permanent=False)


def test_a_transient_failure_is_retried_with_doubling_backoff() -> None:
    waits: list[float] = []
    retry = Retry(attempts=3, delay=1.0, sleep=waits.append, rng=random.Random(7))
    transport = Scripted({"reader1@example.org": [transient(), transient()]})
    done = results(transport, [message(1)], retry)
    assert done["reader1@example.org"].delivered and done["reader1@example.org"].attempts == 3
    jitter = random.Random(7)
    assert waits == [1.0 * jitter.uniform(0.5, 1.5), 2.0 * jitter.uniform(0.5, 1.5)]


def test_a_message_still_failing_after_its_attempts_stays_undelivered_not_permanent() -> None:
    retry = Retry(attempts=2, delay=0.0, sleep=lambda seconds: None)
    transport = Scripted({"reader1@example.org": [transient(), transient(), transient()]})
    result = results(transport, [message(1)], retry)["reader1@example.org"]
    assert not result.delivered and not result.permanent
    assert (result.attempts, result.code) == (2, 451)


def test_a_permanent_failure_is_not_retried_and_the_others_go_on() -> None:
    refused = DeliveryFailure("550 no such user", 550, permanent=True)
    transport = Scripted({"reader1@example.org": [refused]}, parallel=2)
    done = results(transport, [message(1), message(2)], Retry(3, 0.0, lambda seconds: None))
    assert done["reader1@example.org"].permanent and done["reader1@example.org"].attempts == 1
    assert done["reader2@example.org"].delivered
    assert transport.accepted == ["reader2@example.org"]


def test_a_fatal_error_stops_the_delivery_and_reaches_the_caller() -> None:
    fatal = FatalDeliveryError("535 authentication refused: check the password")
    transport = Scripted({"reader1@example.org": [fatal]})
    with pytest.raises(FatalDeliveryError, match="authentication refused"):
        results(transport, [message(n) for n in range(1, 50)], Retry(1, 0.0))
    assert len(transport.accepted) < 48


def test_by_default_a_batch_is_its_messages_sent_in_turn() -> None:
    transport = Scripted({})
    transport.send_many([message(1), message(2)])
    assert transport.accepted == ["reader1@example.org", "reader2@example.org"]
