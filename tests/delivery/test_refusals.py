"""A permanent refusal read for what it is about: the mailbox, by its enhanced status or
the words of servers that give none, or us (5.7.x)."""

from __future__ import annotations

import pytest

from newsletter.delivery.refusals import MAILBOX, POLICY, refusal_kind


@pytest.mark.parametrize(
    ("code", "reply", "kind"),
    [
        (550, "5.1.1 <x@example.net>: Recipient address rejected: User unknown", MAILBOX),
        (550, "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP", MAILBOX),
        (550, "5.2.1 The email account that you tried to reach is disabled", MAILBOX),
        (550, "User unknown", MAILBOX),  # no enhanced status: the words decide
        (553, "sorry, no such mailbox here", MAILBOX),
        (551, "User not local; the recipient does not exist", MAILBOX),
        (550, "5.7.1 Message rejected due to local policy", POLICY),
        (554, "5.7.26 Unauthenticated email is not accepted from this domain", POLICY),
        (552, "5.2.2 Mailbox full", None),  # the subscriber's to fix: not suppressed
        (554, "Transaction failed", None),
        (550, "5.1.2 Bad destination system address [203.0.113.5]", None),
        (450, "4.1.1 User unknown (try again later)", None),  # temporary
        (None, "the connection was closed", None),
    ],
)
def test_a_refusal_is_told_by_its_status_or_words(code, reply, kind) -> None:
    assert refusal_kind(code, reply) == kind


def test_an_address_in_the_text_is_not_read_as_a_status() -> None:
    assert refusal_kind(550, "rejected: host [5.1.1.9] blocked, user unknown") == MAILBOX
    assert refusal_kind(554, "rejected: host [5.7.1.9] is listed") is None
