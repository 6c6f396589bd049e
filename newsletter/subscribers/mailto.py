"""Mail to the unsubscribe mailbox that every digest's ``List-Unsubscribe`` offers
(``mailto:unsubscribe+<token>@domain?subject=unsubscribe``): who it was sent to (the token
after the ``+`` names the subscriber), who sent it (From, and the envelope sender the
receiving server wrote into ``Return-Path``), and whether a machine sent it.
"""

from __future__ import annotations

import email.message
from dataclasses import dataclass
from email.utils import getaddresses, parseaddr

# Where the receiving server (or the mail itself) says whom it was for, surest first.
_RECIPIENT_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To", "Cc")


@dataclass(frozen=True)
class MailtoRequest:
    """One mail to the unsubscribe mailbox."""

    token: str | None  # what followed the "+", if anything
    sender: str | None  # the From address
    envelope: str | None  # the envelope sender (Return-Path), when the server recorded it
    automatic: str | None  # the Auto-Submitted value of a machine's mail (a vacation reply)

    def aligned(self) -> bool:
        """Do From and the envelope sender name the same address?"""
        return bool(self.sender and self.envelope) and (
            str(self.sender).casefold() == str(self.envelope).casefold()
        )


def mailto_request(message: email.message.EmailMessage, mailbox: str) -> MailtoRequest | None:
    """The request ``message`` makes if it was sent to ``mailbox`` (with or without a
    ``+token``), else None."""
    if message.get_content_type() == "multipart/report":
        return None  # a delivery or feedback report: the bounce reader's
    local, _, domain = mailbox.rpartition("@")
    found = _addressed(message, local.casefold(), domain.casefold())
    if found is None:
        return None
    automatic = str(message.get("Auto-Submitted", "")).strip()
    return MailtoRequest(
        token=found or None,
        sender=parseaddr(str(message.get("From", "")))[1] or None,
        envelope=parseaddr(str(message.get("Return-Path", "")))[1] or None,
        automatic=automatic if automatic and automatic.lower() != "no" else None,
    )


def _addressed(message: email.message.EmailMessage, local: str, domain: str) -> str | None:
    """The token of the first recipient that is the mailbox ("" for the plain mailbox; a
    recipient with a token wins over one without), or None when none is."""
    plain = False
    for header in _RECIPIENT_HEADERS:
        for _, address in getaddresses([str(v) for v in message.get_all(header, [])]):
            name, at, host = address.rpartition("@")
            if not at or host.casefold() != domain:
                continue
            base, plus, token = name.partition("+")
            if base.casefold() != local:
                continue
            if plus and token:
                return token
            plain = True
    return "" if plain else None
