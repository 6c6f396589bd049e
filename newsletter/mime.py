"""The MIME message: headers mail providers require, built with the standard ``email`` package.

multipart/alternative (text first, HTML last), UTF-8, serialized with the SMTP policy (CRLF
line ends, every line at most 78 characters thanks to the transfer encodings).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from newsletter.config import RenderSettings
from newsletter.matching import Match
from newsletter.models import Subscriber


@dataclass(frozen=True)
class Envelope:
    """The headers of one digest."""

    sender: Address
    to: Address
    subject: str
    date: datetime
    message_id: str
    list_id: str
    smtputf8: bool  # the recipient's local part is not ASCII

    @classmethod
    def for_digest(
        cls,
        settings: RenderSettings,
        subscriber: Subscriber,
        matches: Sequence[Match],
        now: datetime,
    ) -> Envelope:
        """Headers for a subscriber's digest of ``matches``; the same digest, the same id."""
        name, address = parseaddr(settings.sender)
        sender = _address(name, address)
        domain = sender.domain or "localhost"
        digest_key = "\n".join([subscriber.email.casefold(), *sorted(m.paper.id for m in matches)])
        digest_hash = hashlib.sha256(digest_key.encode("utf-8")).hexdigest()[:32]
        local = subscriber.email.rpartition("@")[0]
        list_id = settings.list_id or f"{sender.username or 'digest'}.{domain}"
        return cls(
            sender=sender,
            to=_address(subscriber.name or "", subscriber.email),
            subject="",
            date=now,
            message_id=f"<digest.{digest_hash}@{domain}>",
            list_id=f"{_one_line(name) or 'Research digest'} <{list_id}>",
            smtputf8=not local.isascii(),
        )


@dataclass(frozen=True)
class UnsubscribeLinks:
    """Where a subscriber can unsubscribe: always by mail, by https when configured."""

    mailto: str
    https: str | None

    @property
    def preferred(self) -> str:
        """The link to show in the email."""
        return self.https or self.mailto


def unsubscribe_links(settings: RenderSettings, email: str, secret: str) -> UnsubscribeLinks:
    """The mailto and (when ``unsubscribe_url`` is set) the signed https unsubscribe links."""
    _, sender = parseaddr(settings.sender)
    mailbox = settings.unsubscribe_mailto or f"unsubscribe@{sender.rpartition('@')[2]}"
    https = None
    if settings.unsubscribe_url:
        joiner = "&" if "?" in settings.unsubscribe_url else "?"
        https = f"{settings.unsubscribe_url}{joiner}token={unsubscribe_token(secret, email)}"
    return UnsubscribeLinks(f"mailto:{mailbox}?subject=unsubscribe", https)


def unsubscribe_token(secret: str, email: str) -> str:
    """An opaque per-subscriber token: HMAC-SHA256 of the address under ``secret``."""
    mac = hmac.new(secret.encode("utf-8"), email.casefold().encode("utf-8"), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).decode("ascii").rstrip("=")


def token_matches(secret: str, email: str, token: str) -> bool:
    """Does ``token`` belong to ``email`` (constant-time comparison)?"""
    return hmac.compare_digest(unsubscribe_token(secret, email), token)


def compose(envelope: Envelope, text: str, html: str, links: UnsubscribeLinks) -> bytes:
    """The message as the exact bytes to send."""
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = envelope.sender
    message["To"] = envelope.to
    message["Subject"] = _one_line(envelope.subject)
    message["Date"] = format_datetime(envelope.date)
    message["Message-ID"] = envelope.message_id
    message["List-Id"] = envelope.list_id
    targets = [f"<{links.mailto}>"] + ([f"<{links.https}>"] if links.https else [])
    message["List-Unsubscribe"] = ", ".join(targets)
    if links.https:
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message["MIME-Version"] = "1.0"
    message.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(html, subtype="html", charset="utf-8", cte="base64")
    # A boundary from the Message-ID: the same digest serializes to the same bytes.
    message.set_boundary("=_" + envelope.message_id.strip("<>").split("@")[0])
    wire = policy.SMTPUTF8 if envelope.smtputf8 else policy.SMTP
    return message.as_bytes(policy=wire)


def _address(name: str, email: str) -> Address:
    """An Address with a one-line display name and an IDNA-encoded domain."""
    local, _, domain = email.rpartition("@")
    with contextlib.suppress(UnicodeError):  # left as written; delivery reports it
        domain = domain.encode("idna").decode("ascii")
    return Address(display_name=_one_line(name), username=local, domain=domain)


def _one_line(text: str) -> str:
    return " ".join(text.split())
