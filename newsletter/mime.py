"""The MIME message: headers mail providers require, built with the standard ``email`` package.

multipart/alternative (text first, HTML last), UTF-8, CRLF line ends, every line at most 78
characters: quoted-printable text, base64 HTML, headers folded by ``email``'s policy.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.policy import compat32
from email.utils import format_datetime, formataddr, parseaddr, quote

from newsletter.config import RenderSettings
from newsletter.matching import Match
from newsletter.models import Subscriber

# The legacy folding (email.header.Header) on plain strings: the same encodings and folding
# as the header registry, without parsing every value into objects first (8x faster).
_FOLD = compat32.clone(linesep="\r\n", max_line_length=78)


@dataclass(frozen=True)
class Envelope:
    """The per-digest headers."""

    to_name: str
    to_address: str
    subject: str
    date: datetime
    message_id: str

    @classmethod
    def for_digest(
        cls,
        settings: RenderSettings,
        subscriber: Subscriber,
        matches: Sequence[Match],
        now: datetime,
    ) -> Envelope:
        """Headers for a subscriber's digest of ``matches``; the same digest, the same id."""
        digest_key = "\n".join([subscriber.email.casefold(), *sorted(m.paper.id for m in matches)])
        digest_hash = hashlib.sha256(digest_key.encode("utf-8")).hexdigest()[:32]
        return cls(
            to_name=_one_line(subscriber.name or ""),
            to_address=idna_address(subscriber.email),
            subject="",
            date=now,
            message_id=f"<digest.{digest_hash}@{_domain(settings.sender)}>",
        )

    @property
    def smtputf8(self) -> bool:
        """Does the recipient's address need SMTPUTF8 (a non-ASCII local part)?"""
        return not self.to_address.isascii()


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
    mailbox = settings.unsubscribe_mailto or f"unsubscribe@{_domain(settings.sender)}"
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


class Composer:
    """Serializes digests; the headers every digest shares are folded once."""

    def __init__(self, settings: RenderSettings) -> None:
        name, address = parseaddr(settings.sender)
        name = _one_line(name) or "Research digest"
        list_id = settings.list_id or f"{address.partition('@')[0] or 'digest'}.{_domain(address)}"
        self.fixed = b"".join(
            [
                _FOLD.fold_binary("From", formataddr((name, idna_address(address)))),
                _FOLD.fold_binary("List-Id", f"{name} <{list_id}>"),
                b"MIME-Version: 1.0\r\n",
            ]
        )

    def compose(self, envelope: Envelope, text: str, html: str, links: UnsubscribeLinks) -> bytes:
        """The message as the exact bytes to send.

        The bodies are encoded with the C codecs and framed by the boundary here: the
        ``email`` generator writes bodies line by line, which made it most of the cost of a
        digest (bench/render.py). Tests parse the result back with the ``email`` package."""
        boundary = "=_" + envelope.message_id.strip("<>").split("@")[0]
        targets = [f"<{links.mailto}>"] + ([f"<{links.https}>"] if links.https else [])
        head = [
            self.fixed,
            _to_header(envelope),
            _header("Subject", _one_line(envelope.subject)),
            _header("Date", format_datetime(envelope.date)),
            _header("Message-ID", envelope.message_id),
            _header("List-Unsubscribe", ", ".join(targets)),
        ]
        if links.https:
            head.append(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
        head.append(
            f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n\r\n'.encode()
        )
        part = f"--{boundary}\r\n".encode("ascii")
        return b"".join(
            [
                *head,
                part,
                b'Content-Type: text/plain; charset="utf-8"\r\n',
                b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
                _quoted_printable(text),
                b"\r\n",  # this line break belongs to the boundary that follows (RFC 2046)
                part,
                b'Content-Type: text/html; charset="utf-8"\r\n',
                b"Content-Transfer-Encoding: base64\r\n\r\n",
                _base64_lines(html.encode("utf-8")),
                b"\r\n",
                f"--{boundary}--\r\n".encode("ascii"),
            ]
        )


def _header(name: str, value: str) -> bytes:
    """One header field; short ASCII values need neither encoding nor folding."""
    if value.isascii() and len(name) + len(value) <= 76 and "\r" not in value and "\n" not in value:
        return f"{name}: {value}\r\n".encode("ascii")
    return _FOLD.fold_binary(name, value)


def _to_header(envelope: Envelope) -> bytes:
    if envelope.smtputf8:
        # SMTPUTF8 carries UTF-8 headers as they are; the server must announce it.
        name = f'"{quote(envelope.to_name)}" ' if envelope.to_name else ""
        return f"To: {name}<{envelope.to_address}>\r\n".encode()
    return _header("To", formataddr((envelope.to_name, envelope.to_address)))


def _base64_lines(data: bytes) -> bytes:
    """Base64 in 76-character lines with CRLF (one C call; ``base64.encodebytes`` loops in
    Python over 57-byte chunks)."""
    encoded = binascii.b2a_base64(data, newline=False)
    lines = [encoded[start : start + 76] for start in range(0, len(encoded), 76)]
    return b"\r\n".join(lines) + b"\r\n"


def _quoted_printable(text: str) -> bytes:
    """Quoted-printable with CRLF line ends, ending with a line break."""
    encoded = binascii.b2a_qp(text.replace("\r\n", "\n").encode("utf-8"), istext=True)
    encoded = encoded.replace(b"\n", b"\r\n")
    return encoded if encoded.endswith(b"\r\n") else encoded + b"\r\n"


def idna_address(address: str) -> str:
    """``address`` with its domain IDNA-encoded (an internationalized domain goes out ASCII)."""
    local, at, domain = address.rpartition("@")
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return address  # left as written; delivery reports it for this subscriber only
    return f"{local}{at}{domain}"


@functools.lru_cache(maxsize=64)
def _domain(sender: str) -> str:
    return parseaddr(sender)[1].rpartition("@")[2] or "localhost"


def _one_line(text: str) -> str:
    return " ".join(text.split())
