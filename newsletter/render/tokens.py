"""Signed tokens: what lets a link in a digest act for its subscriber, and nothing else.

A token is ``<key>.<day>.<mac>``: the address's key, the day it was issued (days since 1970)
and HMAC-SHA256(secret, purpose, address, day, *parts), cut to 128 bits. The key is an opaque
name of the address (``key``: 128 bits of HMAC, base64url) that the store keeps
(``ledger.link_keys``), so the address is in no URL and no proxy's log; whoever checks a
token looks its key up (``address_of``). The purpose (unsubscribe, preferences, archive, ...)
and the parts (a digest, a paper) are in the MAC but not in the token, so a token made for one
purpose or digest fails for any other, and the server needs no table of tokens. Checks compare
in constant time.

Links of the previous release name the address itself (base64url) in the key's place: they
are still accepted in this release (``_LEGACY``), and the next one drops them.

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
from collections.abc import Callable
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
_KEY_BYTES = 16
# Tokens naming the address in base64url (0.1's links): accepted through this release, so a
# digest sent before the upgrade still unsubscribes; remove with the next one.
_LEGACY = True

AddressOf = Callable[[str], "str | None"]  # a link key -> the address it names (the store's)


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

    def key(self, address: str) -> str:
        """The opaque name of ``address`` in its links (the store must keep it to resolve
        them: ``ledger.link_keys``); the same for any case of the address."""
        # ("key" is no purpose: a key is never a link's MAC, nor a MAC a key)
        message = b"key\0" + address.casefold().encode("utf-8")
        return _b64(hmac.new(self.secret, message, hashlib.sha256).digest()[:_KEY_BYTES])

    def sign(self, purpose: str, address: str, *parts: str, day: date) -> str:
        """The token for ``address`` and ``purpose`` (and ``parts``), issued on ``day``."""
        return self.signing(address, day)(purpose, *parts)

    def signing(self, address: str, day: date) -> Callable[..., str]:
        """``sign`` for one address and day, its key computed once: (purpose, *parts) -> token."""
        named, issued = self.key(address), (day - _EPOCH).days

        def token(purpose: str, *parts: str) -> str:
            mac = _mac(self.secret, purpose, address, issued, parts)
            return f"{named}.{issued}.{_b64(mac)}"

        return token

    def sign_opaque(self, purpose: str, name: str, *parts: str, day: date) -> str:
        """A token naming ``name`` itself, for a name that is already opaque and random (a
        sign-up request's id); checked with ``address_of=opaque``."""
        if not _URLSAFE.fullmatch(name) or not name or len(name) > _ADDRESS_MAX:
            raise ValueError(f"not a URL-safe name: {name!r}")
        issued = (day - _EPOCH).days
        return f"{name}.{issued}.{_b64(_mac(self.secret, purpose, name, issued, parts))}"

    def check(
        self, token: str, purpose: str, *parts: str, today: date, address_of: AddressOf
    ) -> Verdict:
        """Whose ``token`` is for ``purpose`` (and ``parts``), if it is genuine, in its one
        canonical spelling, not dated in the future, and young enough; ``address_of`` says
        whom its key names."""
        decoded = _decoded(token)
        if decoded is None:
            return Verdict(None)
        named, issued, given = decoded
        if (today - _EPOCH).days - issued < -_SKEW_DAYS:
            return Verdict(None)  # dated in the future: forged with a leaked old secret
        for address in _candidates(named, address_of):
            verdict = self._verdict(address, purpose, parts, issued, given, today)
            if verdict is not None:
                return verdict
        return Verdict(None)

    def _verdict(
        self,
        address: str,
        purpose: str,
        parts: tuple[str, ...],
        issued: int,
        given: bytes,
        today: date,
    ) -> Verdict | None:
        """What a MAC ``given`` proves of ``address``: None when it is not its MAC."""
        age = (today - _EPOCH).days - issued
        if hmac.compare_digest(_mac(self.secret, purpose, address, issued, parts), given):
            return Verdict(address) if age <= self.max_age_days else Verdict(None, address)
        if self.previous is not None:
            old = _mac(self.previous, purpose, address, issued, parts)
            if hmac.compare_digest(old, given):
                fresh = age <= min(self.grace_days, self.max_age_days)
                return Verdict(address) if fresh else Verdict(None, address)
        return None

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


def opaque(name: str) -> str:
    """The ``address_of`` of ``sign_opaque``'s tokens: the name is itself."""
    return name


def _candidates(named: str, address_of: AddressOf) -> list[str]:
    """Whom the first field of a token may name: what the store says of it as a key, and
    (a link of the previous release) the address it spells in base64url."""
    found = address_of(named)
    candidates = [found] if found is not None else []
    if _LEGACY:
        try:
            raw = _unb64(named)
            if _b64(raw) == named:
                candidates.append(raw.decode("utf-8"))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            pass
    return candidates


def _decoded(token: str) -> tuple[str, int, bytes] | None:
    """(key, day issued, MAC) of a token written exactly as ``sign`` writes it; None for
    anything else (another spelling of the same bytes included: one token, one form)."""
    pieces = token.split(".")
    if len(pieces) != 3 or len(token) > 2 * _ADDRESS_MAX:
        return None
    named, day, mac = pieces
    if not (day.isascii() and day.isdigit()) or day != str(int(day)):
        return None
    if not named or len(named) > _ADDRESS_MAX or not _URLSAFE.fullmatch(named):
        return None
    try:
        given = _unb64(mac)
    except (ValueError, binascii.Error):
        return None
    if _b64(given) != mac or len(given) != _MAC_BYTES:
        return None
    return named, int(day), given


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    if len(text) > _ADDRESS_MAX or not _URLSAFE.fullmatch(text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
