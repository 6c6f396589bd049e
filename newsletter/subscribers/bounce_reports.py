"""What a bounce or complaint message says: which addresses failed, and for good or not.

In this order: an ARF complaint (``multipart/report; report-type=feedback-report``) names
the address that complained; an RFC 3464 delivery status report is read field by field (a
``Status`` of 5.x.x is permanent, 4.x.x temporary, whatever ``Action`` says: RFC 3463 makes
the class the judge, and repeated temporary failures suppress anyway; but ``Action:
delayed`` is only a delay notice, never a failure); anything else goes to
flufl.bounce (Mailman's detectors for Exim, qmail, Postfix, Exchange, Yahoo, ...), then to
``X-Failed-Recipients`` and the diagnostic text. The VERP token of the address the bounce
was sent to is read too: it names the subscriber when the report does not.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import re
from dataclasses import dataclass
from email.utils import getaddresses, parseaddr

from flufl.bounce import all_failures

_STATUS = re.compile(r"\b([245])\.\d{1,3}\.\d{1,3}\b")
_ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
# Where a bounce's own text ends and the returned message begins.
_ORIGINAL = re.compile(
    r"(?im)^.*(original message|copy of (the|your) message|below this line|message headers"
    r"|returned message|^received: ).*$"
)
_MESSAGE_ID = re.compile(r"(?im)^message-id:\s*(<[^>\s]+>)")
_VERP_HEADERS = ("To", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To")


@dataclass(frozen=True)
class Failure:
    """One address a report says failed."""

    address: str
    permanent: bool
    status: str | None  # the enhanced status code (5.1.1), when given
    diagnostic: str  # what the server said, shortened
    also: tuple[str, ...] = ()  # other names of the same recipient (Original-Recipient)
    delayed: bool = False  # a delay notice (Action: delayed): still being retried


@dataclass(frozen=True)
class Report:
    """What one message reports."""

    kind: str  # bounce | complaint | none
    failures: tuple[Failure, ...]
    verp: str | None  # the token of our bounce address it was sent to
    message_id: str | None  # the report's own Message-ID (read twice, it counts once)
    status: str | None = None  # the status code of its text, for a report naming nobody
    about: str | None = None  # the Message-ID of our message it reports on, when returned


def parse_message(data: bytes) -> email.message.EmailMessage:
    """A message from its bytes (an mbox ``From `` line first is skipped)."""
    if data.startswith(b"From "):
        data = data.split(b"\n", 1)[1] if b"\n" in data else b""
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def classify(message: email.message.EmailMessage, bounce_local: str | None) -> Report:
    """What ``message`` reports; ``bounce_local`` is the local part of bounce_address (the
    VERP token follows it and a ``+``)."""
    verp = _verp_token(message, bounce_local) if bounce_local else None
    message_id = str(message.get("Message-ID", "")).strip() or None
    about = _original_message_id(message)
    if _is_complaint(message):
        return Report("complaint", _complainants(message), verp, message_id, about=about)
    failures = _dsn_failures(message) or _detected_failures(message)
    kind = "bounce" if failures or verp else "none"
    status = _STATUS.search(_diagnostic_text(message)) if verp and not failures else None
    code = status.group(0) if status else None
    return Report(kind, tuple(failures), verp, message_id, code, about)


def _original_message_id(message: email.message.EmailMessage) -> str | None:
    """The Message-ID of the returned message (its headers part, else its quoted text)."""
    for part in message.walk():
        if part.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
            found = _returned_headers(part).get("Message-ID")
            if found:
                return str(found).strip()
    text = _body_text(message)
    cut = _ORIGINAL.search(text)
    quoted = _MESSAGE_ID.search(text[cut.start() :]) if cut else None
    return quoted.group(1) if quoted else None


def _verp_token(message: email.message.EmailMessage, local: str) -> str | None:
    pattern = re.compile(rf"(?i)\b{re.escape(local)}\+([0-9a-f]{{20}})@")
    for name in _VERP_HEADERS:
        for value in message.get_all(name, []):
            found = pattern.search(str(value))
            if found:
                return found.group(1).lower()
    return None


# -- complaints (RFC 5965) -------------------------------------------------------------------


def _is_complaint(message: email.message.EmailMessage) -> bool:
    return (
        message.get_content_type() == "multipart/report"
        and str(message.get_param("report-type", "")).lower() == "feedback-report"
    )


def _complainants(message: email.message.EmailMessage) -> tuple[Failure, ...]:
    """The address that complained: Original-Rcpt-To of the report, else the To of the
    returned message."""
    found: list[str] = []
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/feedback-report":
            found += _addresses(_fields(part).get("original-rcpt-to", ""))
        elif kind in ("message/rfc822", "text/rfc822-headers") and not found:
            returned = _returned_headers(part)
            found += [a for _, a in getaddresses(returned.get_all("To", [])) if "@" in a]
    unique = list(dict.fromkeys(a.strip() for a in found))
    return tuple(Failure(a, True, None, "complaint (abuse report)") for a in unique)


def _returned_headers(part: email.message.Message) -> email.message.Message:
    payload = part.get_payload()
    if isinstance(payload, list) and payload:
        return payload[0]
    text = part.get_payload(decode=True) or b""
    return email.message_from_bytes(text if isinstance(text, bytes) else b"")


def _fields(part: email.message.Message) -> dict[str, str]:
    """The fields of a feedback report part (a header block), lower-cased names."""
    payload = part.get_payload()
    blocks = payload if isinstance(payload, list) else [part]
    fields: dict[str, str] = {}
    for block in blocks:
        for name, value in block.items():
            fields.setdefault(name.lower(), str(value))
    if not fields and isinstance(payload, str):
        for line in payload.splitlines():
            name, colon, value = line.partition(":")
            if colon:
                fields.setdefault(name.strip().lower(), value.strip())
    return fields


# -- delivery status notifications (RFC 3464) ------------------------------------------------


def _dsn_failures(message: email.message.EmailMessage) -> list[Failure]:
    failures: dict[str, Failure] = {}
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        if not isinstance(blocks, list):
            continue
        for block in blocks[1:]:  # the first block is about the message, not a recipient
            failure = _recipient_failure(block)
            if failure is not None:
                failures.setdefault(failure.address.casefold(), failure)
    return list(failures.values())


def _recipient_failure(block: email.message.Message) -> Failure | None:
    action = str(block.get("Action", "")).strip().lower().split(" ")[0].split("(")[0]
    if action not in ("failed", "delayed"):
        return None  # delivered, relayed, expanded: not a failure
    final = _addresses(str(block.get("Final-Recipient", "")))
    original = _addresses(str(block.get("Original-Recipient", "")))
    if not (final or original):
        return None
    status = _STATUS.search(str(block.get("Status", "")))
    diagnostic = " ".join(str(block.get("Diagnostic-Code", "")).split())
    permanent = status.group(1) == "5" if status else action == "failed"
    address, *also = [*final, *original]
    code = status.group(0) if status else None
    return Failure(
        address, permanent and action == "failed", code, diagnostic[:300], tuple(also),
        delayed=action == "delayed",
    )  # fmt: skip


def _addresses(field: str) -> list[str]:
    """The addresses of a recipient field (``rfc822; <a@b>``)."""
    value = field.partition(";")[2] if ";" in field else field
    return [m.group(0) for m in _ADDRESS.finditer(value)]


# -- everything else: flufl.bounce, X-Failed-Recipients, the diagnostic text -----------------


def _detected_failures(message: email.message.EmailMessage) -> list[Failure]:
    try:
        temporary, permanent = all_failures(message)
    except Exception:  # flufl's detectors on a malformed message: fall back on the text
        temporary, permanent = set(), set()
    text = _diagnostic_text(message)
    status = _STATUS.search(text)
    soft = bool(status and status.group(1) == "4")  # the server's own class decides
    code = status.group(0) if status else None
    said = _said(text)
    found: dict[str, Failure] = {}

    def add(address: str, is_permanent: bool) -> None:
        address = address.strip("<>")
        if "@" in address and address.casefold() not in found:
            found[address.casefold()] = Failure(address, is_permanent and not soft, code, said)

    for raw in permanent:
        add(_decoded(raw), True)
    for raw in temporary:
        add(_decoded(raw), False)
    for value in message.get_all("X-Failed-Recipients", []):
        for address in str(value).split(","):
            add(address.strip(), True)
    if not found and (status or _looks_like_bounce(message)):
        for address in _text_recipients(text):
            add(address, True)
    return list(found.values())


def _decoded(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


def _looks_like_bounce(message: email.message.EmailMessage) -> bool:
    sender = parseaddr(str(message.get("From", "")))[1].lower()
    subject = str(message.get("Subject", "")).lower()
    return sender.startswith(("mailer-daemon", "postmaster")) or any(
        word in subject for word in ("undeliver", "failure", "failed", "returned mail")
    )


def _diagnostic_text(message: email.message.EmailMessage) -> str:
    """The bounce's own words: its first text part, up to where the returned message
    starts."""
    text = _body_text(message)
    cut = _ORIGINAL.search(text)
    return text[: cut.start()] if cut else text


def _body_text(message: email.message.EmailMessage) -> str:
    """The first text part of ``message`` as text (HTML tags removed), or ""."""
    for part in message.walk():
        if part.get_content_maintype() == "text" and not part.is_attachment():
            try:
                text = part.get_content()
            except (LookupError, UnicodeError, AssertionError):
                payload = part.get_payload(decode=True)
                text = payload.decode("latin-1") if isinstance(payload, bytes) else ""
            if part.get_content_subtype() == "html":
                text = re.sub(r"<[^>]+>", " ", text)
            return text
    return ""


def _text_recipients(text: str) -> list[str]:
    """Addresses the diagnostic text names, in order, without repeats."""
    return list(dict.fromkeys(m.group(0) for m in _ADDRESS.finditer(text)))


def _said(text: str) -> str:
    """The line of the text that carries the server's answer, or its first words."""
    for line in text.splitlines():
        if _STATUS.search(line) or re.search(r"\b[45]\d\d\b", line):
            return " ".join(line.split())[:300]
    return " ".join(text.split())[:200]
