"""Signed tokens: what lets a link in a digest act for its subscriber, and nothing else.

A token is ``<address>.<day>.<mac>``: the address (base64url), the day it was issued (days
since 1970) and HMAC-SHA256(secret, purpose, address, day, *parts), cut to 128 bits. The
purpose (unsubscribe, preferences, archive, ...) and the parts (a digest, a paper) are in the
MAC but not in the token, so a token made for one purpose or digest fails for any other, and
the server needs no table of tokens. Checks compare in constant time.

Rotating the secret: the old one goes into the ``previous_secret_env`` variable and keeps
working for tokens issued up to ``secret_grace_days`` before; older ones have expired. Any
token expires ``link_max_age_days`` after it was issued (400 by default: a year-old digest's
unsubscribe link still works); one dated after tomorrow is refused under either secret, as
is any spelling of a token other than the one ``sign`` writes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import date

# (confirm: a sign-up's confirmation link; it signs the request's id in the address's place)
PURPOSES = (
    "unsubscribe", "preferences", "archive", "feed", "feedback", "bounce", "mailto", "confirm",
)  # fmt: skip
_EPOCH = date(1970, 1, 1)
_MAC_BYTES = 16
_URLSAFE = re.compile(r"[A-Za-z0-9_-]*")
_ADDRESS_MAX = 512  # RFC 5321 allows 254; room for a little more, never for a megabyte


_SKEW_DAYS = 1  # a token dated later than tomorrow was never issued by us


@dataclass(frozen=True)
class Verdict:
    """What a token proved: whose it is (None when nothing), and, for a genuine token that
    only failed for its age (older than ``max_age_days``, or signed by the previous secret
    before the grace period), whose it was (``expired_for``: a fresh link may be mailed
    there)."""

    address: str | None
    expired_for: str | None = None

    @property
    def expired(self) -> bool:
        """Genuine, but too old."""
        return self.expired_for is not None


class Signer:
    """Makes and checks tokens with the current secret (and the previous one, for a while)."""

    def __init__(
        self,
        secret: str,
        previous: str | None = None,
        grace_days: int = 60,
        max_age_days: int = 400,
    ) -> None:
        self.secret = secret.encode("utf-8")
        self.previous = previous.encode("utf-8") if previous else None
        self.grace_days = grace_days
        self.max_age_days = max_age_days

    def sign(self, purpose: str, address: str, *parts: str, day: date) -> str:
        """The token for ``address`` and ``purpose`` (and ``parts``), issued on ``day``."""
        issued = (day - _EPOCH).days
        mac = _mac(self.secret, purpose, address, issued, parts)
        return f"{_b64(address.encode('utf-8'))}.{issued}.{_b64(mac)}"

    def check(self, token: str, purpose: str, *parts: str, today: date) -> Verdict:
        """Whose ``token`` is for ``purpose`` (and ``parts``), if it is genuine, in its one
        canonical spelling, not dated in the future, and young enough."""
        decoded = _decoded(token)
        if decoded is None:
            return Verdict(None)
        address, issued, given = decoded
        age = (today - _EPOCH).days - issued
        if age < -_SKEW_DAYS:
            return Verdict(None)  # dated in the future: forged with a leaked old secret
        if hmac.compare_digest(_mac(self.secret, purpose, address, issued, parts), given):
            return Verdict(address) if age <= self.max_age_days else Verdict(None, address)
        if self.previous is not None:
            old = _mac(self.previous, purpose, address, issued, parts)
            if hmac.compare_digest(old, given):
                fresh = age <= min(self.grace_days, self.max_age_days)
                return Verdict(address) if fresh else Verdict(None, address)
        return Verdict(None)

    def verp(self, address: str) -> str:
        """A short lowercase token naming ``address`` in a bounce address (local parts are
        64 characters at most, and some servers change their case)."""
        return self.verp_candidates(address)[0]

    def verp_candidates(self, address: str) -> list[str]:
        """The bounce tokens of ``address`` under the current and the previous secret."""
        return self._short_candidates("bounce", address)

    def mailto(self, address: str) -> str:
        """The short token naming ``address`` in the unsubscribe mailbox's address (like a
        bounce token, but of its own purpose: a bounce address does not unsubscribe)."""
        return self.mailto_candidates(address)[0]

    def mailto_candidates(self, address: str) -> list[str]:
        """The unsubscribe-mailbox tokens of ``address`` under the current and previous secret."""
        return self._short_candidates("mailto", address)

    def _short_candidates(self, purpose: str, address: str) -> list[str]:
        secrets = [self.secret] + ([self.previous] if self.previous else [])
        return [_mac(secret, purpose, address.casefold(), 0, ()).hex()[:20] for secret in secrets]


def _mac(secret: bytes, purpose: str, address: str, issued: int, parts: tuple[str, ...]) -> bytes:
    # NUL cannot occur in an address, a purpose or our ids: the fields cannot run together.
    message = "\0".join([purpose, address.casefold(), str(issued), *parts]).encode("utf-8")
    return hmac.new(secret, message, hashlib.sha256).digest()[:_MAC_BYTES]


def _decoded(token: str) -> tuple[str, int, bytes] | None:
    """(address, day issued, MAC) of a token written exactly as ``sign`` writes it; None
    for anything else (another spelling of the same bytes included: one token, one form)."""
    pieces = token.split(".")
    if len(pieces) != 3 or len(token) > 2 * _ADDRESS_MAX:
        return None
    encoded, day, mac = pieces
    if not (day.isascii() and day.isdigit()) or day != str(int(day)):
        return None
    try:
        raw, given = _unb64(encoded), _unb64(mac)
        address = raw.decode("utf-8")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    if _b64(raw) != encoded or _b64(given) != mac or len(given) != _MAC_BYTES:
        return None
    return address, int(day), given


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    if len(text) > _ADDRESS_MAX or not _URLSAFE.fullmatch(text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
