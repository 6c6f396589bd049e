"""Links in a digest that act for its subscriber, and the tokens that sign them.

A token is an HMAC-SHA256 of the address under the operator's secret, so a link works for
that address alone and cannot be forged without the secret; the web endpoint checks tokens
here too (``token_matches``, constant time).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from newsletter.config import RenderSettings
from newsletter.envelope import sender_domain
from newsletter.errors import ConfigError


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
    mailbox = settings.unsubscribe_mailto or f"unsubscribe@{sender_domain(settings.sender)}"
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


# A secret anyone can guess forges links for every address: demand what
# ``secrets.token_urlsafe(32)`` gives, 32 random bytes (43 characters).
SECRET_MIN_BYTES = 32
_SECRET_MIN_DISTINCT = 10  # "aaaa…" or "changeme" four times is long, not random
MAKE_SECRET = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def unsubscribe_secret(settings: RenderSettings, environ: Mapping[str, str]) -> str:
    """The secret that signs the links, from the environment; a ConfigError when links need
    one and it is not set, or too short or too plain to be random."""
    name = settings.unsubscribe_secret_env
    secret = environ.get(name, "")
    if not settings.unsubscribe_url:
        return secret
    if not secret:
        raise ConfigError(
            f"unsubscribe_url is set but ${name} is empty; set it to a random secret of at "
            f"least {SECRET_MIN_BYTES} bytes (it signs the unsubscribe tokens): {MAKE_SECRET}"
        )
    if len(secret.encode("utf-8")) < SECRET_MIN_BYTES or len(set(secret)) < _SECRET_MIN_DISTINCT:
        raise ConfigError(
            f"${name} is too weak to sign unsubscribe links (it must be at least "
            f"{SECRET_MIN_BYTES} random bytes; a guessed secret forges links for every "
            f"address): make one with {MAKE_SECRET}"
        )
    return secret
