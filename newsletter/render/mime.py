"""Framing: a digest's parts and headers into the exact bytes of a MIME message.

multipart/alternative (text first, HTML last), UTF-8, CRLF line ends, every line at most 78
characters: quoted-printable text; the HTML quoted-printable too, or base64 when that is
shorter (text in a non-Latin script, where each byte would take three).

Gmail clips a message whose HTML passes ~102 KB without saying whether it counts the
encoded or the decoded part; the renderer's budget counts the encoded part, the longer of
the two (``encoded_html``), so that neither reading clips a digest.

The standard ``email`` package decides how each header is encoded and folded (its legacy
``compat32`` folding, on plain strings), and the tests parse every message back with it;
but the bodies are encoded with the C codecs (``binascii``) and framed by the boundary
here, not by ``email``'s generator, which writes bodies line by line in Python. Measured by
bench/render.py ("framing", 48 KB digests): this frames ~6,200 messages/s, an
``EmailMessage`` with the same parts and headers ~400/s (15x slower), which would make
framing most of the cost of a digest (~2,600/s rendered).
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from datetime import datetime
from email.policy import compat32
from email.utils import format_datetime, formataddr, parseaddr, quote

from newsletter.config.settings import RenderSettings
from newsletter.matching.keywords import one_line
from newsletter.render.envelope import idna_address, sender_domain
from newsletter.render.links import DigestLinks

# The legacy folding (email.header.Header) on plain strings: the same encodings and folding
# as the header registry, without parsing every value into objects first (8x faster).
_FOLD = compat32.clone(linesep="\r\n", max_line_length=78)


@dataclass(frozen=True)
class Headers:
    """The headers that differ from one digest to the next."""

    to_name: str
    to_address: str  # as on the envelope (IDNA domain)
    subject: str
    date: datetime
    message_id: str

    @property
    def smtputf8(self) -> bool:
        """Does the address need SMTPUTF8 (a non-ASCII local part)?"""
        return not self.to_address.isascii()


class Composer:
    """Serializes digests; the headers every digest shares are folded once."""

    def __init__(self, settings: RenderSettings) -> None:
        name, address = parseaddr(settings.sender)
        name = one_line(name) or "Research digest"
        domain = sender_domain(settings.sender)
        list_id = settings.list_id or f"{address.partition('@')[0] or 'digest'}.{domain}"
        self.fixed = b"".join(
            [
                _FOLD.fold_binary("From", formataddr((name, idna_address(address)))),
                _FOLD.fold_binary("List-Id", f"{name} <{list_id}>"),
                # Bulk mail, written by a program: no vacation or out-of-office replies
                # (RFC 3834), and the class mailbox providers expect of a list.
                b"Precedence: bulk\r\n",
                b"Auto-Submitted: auto-generated\r\n",
                _header("Feedback-ID", one_line(settings.feedback_id))
                if settings.feedback_id
                else b"",
                b"MIME-Version: 1.0\r\n",
            ]
        )

    def compose(self, headers: Headers, text: str, html: EncodedHtml, links: DigestLinks) -> bytes:
        """The message as the exact bytes to send (``html``: its part, ``encoded_html``)."""
        boundary = "=_" + headers.message_id.strip("<>").split("@")[0]
        targets = [f"<{links.mailto}>"] + ([f"<{links.https}>"] if links.https else [])
        head = [
            self.fixed,
            _to_header(headers),
            _header("Subject", one_line(headers.subject)),
            _header("Date", format_datetime(headers.date)),
            _header("Message-ID", headers.message_id),
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
                b"Content-Transfer-Encoding: %s\r\n\r\n" % html.encoding,
                html.data,
                b"\r\n",
                f"--{boundary}--\r\n".encode("ascii"),
            ]
        )


@dataclass(frozen=True)
class EncodedHtml:
    """The HTML part's body as it goes on the wire, and its transfer encoding."""

    encoding: bytes  # b"quoted-printable" or b"base64"
    data: bytes

    @property
    def size(self) -> int:
        """Bytes on the wire: what the renderer's budget counts."""
        return len(self.data)


def encoded_html(html: str) -> EncodedHtml:
    """``html`` as the message carries it: quoted-printable, which leaves markup and Latin
    text readable and costs a few percent (bench/render.py), unless base64 is shorter."""
    raw = html.encode("utf-8")
    quoted = _quoted_printable(html, raw)
    if len(quoted) <= _base64_size(len(raw)):
        return EncodedHtml(b"quoted-printable", quoted)
    return EncodedHtml(b"base64", _base64_lines(raw))


def _base64_size(size: int) -> int:
    """The length of ``_base64_lines`` of ``size`` bytes."""
    encoded = (size + 2) // 3 * 4
    return encoded + (encoded + 75) // 76 * 2


def _header(name: str, value: str) -> bytes:
    """One header field; short ASCII values need neither encoding nor folding."""
    if value.isascii() and len(name) + len(value) <= 76 and "\r" not in value and "\n" not in value:
        return f"{name}: {value}\r\n".encode("ascii")
    return _FOLD.fold_binary(name, value)


def _to_header(headers: Headers) -> bytes:
    if headers.smtputf8:
        # SMTPUTF8 carries UTF-8 headers as they are; the server must announce it.
        name = f'"{quote(headers.to_name)}" ' if headers.to_name else ""
        return f"To: {name}<{headers.to_address}>\r\n".encode()
    return _header("To", formataddr((headers.to_name, headers.to_address)))


def _base64_lines(data: bytes) -> bytes:
    """Base64 in 76-character lines with CRLF (one C call; ``base64.encodebytes`` loops in
    Python over 57-byte chunks)."""
    encoded = binascii.b2a_base64(data, newline=False)
    lines = [encoded[start : start + 76] for start in range(0, len(encoded), 76)]
    return b"\r\n".join(lines) + b"\r\n"


def _quoted_printable(text: str, raw: bytes | None = None) -> bytes:
    """Quoted-printable with CRLF line ends, ending with a line break (``raw``: ``text``
    already encoded, when it holds no CR)."""
    if raw is None or b"\r" in raw:
        raw = text.replace("\r\n", "\n").encode("utf-8")
    encoded = binascii.b2a_qp(raw, istext=True)
    encoded = encoded.replace(b"\n", b"\r\n")
    return encoded if encoded.endswith(b"\r\n") else encoded + b"\r\n"
