"""Who a digest goes from and to on the wire, and its Message-ID."""

from __future__ import annotations

from pathlib import Path

from newsletter.render.envelope import digest_key, envelope_for, message_id_for
from tests.render_helpers import fixed_papers, render


def test_message_id_is_the_same_for_the_same_digest(tmp_path: Path) -> None:
    first, again = render(tmp_path), render(tmp_path)
    assert first.message_id == again.message_id
    assert first.data == again.data  # a resend carries the very same bytes
    fewer = render(tmp_path, papers=fixed_papers()[:2])
    assert fewer.message_id != first.message_id


def test_the_envelope_goes_from_the_senders_address_or_the_return_path() -> None:
    plain = envelope_for("Research digest <digest@example.org>", "ada@example.org")
    assert (plain.sender, plain.recipient) == ("digest@example.org", "ada@example.org")
    verp = envelope_for("Digest <digest@example.org>", "ada@example.org", "bounces+x@example.org")
    assert verp.sender == "bounces+x@example.org"


def test_an_international_domain_goes_out_in_idna() -> None:
    envelope = envelope_for("Digest <digest@bücher.example>", "jörg@bücher.example")
    assert envelope.sender == "digest@xn--bcher-kva.example"
    assert envelope.recipient == "jörg@xn--bcher-kva.example"


def test_the_message_id_ignores_the_order_of_papers_and_the_case_of_the_address() -> None:
    sender = "Digest <digest@example.org>"
    first = message_id_for(sender, "Ada@Example.org", ["2601.00002", "2601.00001"])
    again = message_id_for(sender, "ada@example.org", ["2601.00001", "2601.00002"])
    assert first == again and first.endswith("@example.org>")
    assert digest_key(first) == first.strip("<>").split("@")[0].removeprefix("digest.")
    assert message_id_for(sender, "grace@example.org", ["2601.00001"]) != first
