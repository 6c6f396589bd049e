"""Links in a digest that act for its subscriber, and the secrets that sign them.

Every link of ``newsletter serve`` carries a token (``newsletter.render.tokens``) for its purpose:
unsubscribe (also the one-click ``List-Unsubscribe`` URL), preferences, the web copy of this
digest, the subscriber's feed, and feedback on each paper. Without ``public_url`` (and
``unsubscribe_url``) a digest has only the mailto unsubscribe link.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from urllib.parse import urlencode, urlsplit

from newsletter.config.settings import RenderSettings
from newsletter.errors import ConfigError
from newsletter.render.envelope import sender_domain
from newsletter.render.tokens import Signer

FEEDBACK_KINDS = ("more", "less")  # "more like this", "not relevant"


@dataclass(frozen=True)
class DigestLinks:
    """The links of one subscriber's digest (None: the web app is not configured)."""

    mailto: str
    https: str | None  # the one-click unsubscribe URL (List-Unsubscribe, RFC 8058)
    preferences: str | None = None
    archive: str | None = None  # this digest in a browser
    feed: str | None = None  # the subscriber's Atom feed
    feedback: tuple[tuple[str, str], ...] = ()  # per paper: (more like this, not relevant)

    @property
    def preferred(self) -> str:
        """The unsubscribe link to show in the email."""
        return self.https or self.mailto


class Links:
    """Makes the links of digests: the settings and the signer, once per run."""

    def __init__(self, settings: RenderSettings, signer: Signer | None) -> None:
        self.settings = settings
        self.signer = signer
        self.public = settings.public_url.rstrip("/") if settings.public_url else None
        self.unsubscribe_base = settings.unsubscribe_url or (
            f"{self.public}/unsubscribe" if self.public else None
        )
        self.mailbox = unsubscribe_mailbox(settings)
        self.mailto = f"mailto:{self.mailbox}?subject=unsubscribe"

    def mailto_for(self, email: str) -> str:
        """``email``'s mailto unsubscribe link: the unsubscribe mailbox with the subscriber's
        token after a ``+`` (``unsubscribe+<token>@domain``), so that a mail to it names them
        whatever address it comes from; the plain mailbox without a secret."""
        if self.signer is None:
            return self.mailto
        local, _, domain = self.mailbox.rpartition("@")
        return f"mailto:{local}+{self.signer.mailto(email)}@{domain}?subject=unsubscribe"

    def for_accounts(self, remember: Callable[[str], None]) -> AccountLinks | None:
        """The links of the sign-up flow's mails (None without public_url or a secret);
        ``remember`` keeps an address's link key in the store before a link names it."""
        if self.signer is None or self.public is None or self.unsubscribe_base is None:
            return None
        return AccountLinks(self.public, self.signer, self.unsubscribe_base, remember)

    def for_digest(
        self, email: str, digest: str, papers: tuple[str, ...], today: date
    ) -> DigestLinks:
        """The links of ``email``'s digest ``digest`` (its key) carrying ``papers``."""
        signer = self.signer
        mailto = self.mailto_for(email)
        if signer is None or self.unsubscribe_base is None:
            return DigestLinks(mailto, None)

        token = signer.signing(email, today)
        https = with_query(self.unsubscribe_base, t=token("unsubscribe"))
        if self.public is None:
            return DigestLinks(mailto, https)
        public = self.public

        def feedback(paper: str) -> tuple[str, str]:
            signed = urlencode({"t": token("feedback", digest, paper), "d": digest, "p": paper})
            more, less = (f"{public}/feedback?{signed}&k={kind}" for kind in FEEDBACK_KINDS)
            return more, less

        return DigestLinks(
            mailto,
            https,
            preferences=f"{public}/preferences?t={token('preferences')}",
            archive=f"{public}/digest/{digest}?t={token('archive', digest)}",
            feed=f"{public}/feed?t={token('feed')}",
            feedback=tuple(feedback(paper) for paper in papers),
        )


@dataclass(frozen=True)
class AccountLinks:
    """The links a mail of the sign-up flow carries for one address (or one request)."""

    public: str
    signer: Signer
    unsubscribe_base: str
    remember: Callable[[str], None]  # keeps the address's link key (``ledger.link_keys``)

    def confirm(self, request_id: str, today: date) -> str:
        """The page confirming the sign-up ``request_id``."""
        token = self.signer.sign_opaque("confirm", request_id, day=today)
        return f"{self.public}/confirm?t={token}"

    def preferences(self, email: str, today: date) -> str:
        """``email``'s preferences page."""
        self.remember(email)
        return f"{self.public}/preferences?t={self.signer.sign('preferences', email, day=today)}"

    def unsubscribe(self, email: str, today: date) -> str:
        """``email``'s unsubscribe page."""
        self.remember(email)
        token = self.signer.sign("unsubscribe", email, day=today)
        return with_query(self.unsubscribe_base, t=token)


def unsubscribe_mailbox(settings: RenderSettings) -> str:
    """The address readers write to to unsubscribe (``unsubscribe_mailto``, by default
    ``unsubscribe@`` the sender's domain)."""
    return settings.unsubscribe_mailto or f"unsubscribe@{sender_domain(settings.sender)}"


def with_query(url: str, **params: str) -> str:
    """``url`` with ``params`` added to its query."""
    joiner = "&" if urlsplit(url).query else "?"
    return f"{url}{joiner}{urlencode(params)}"


# A secret anyone can guess forges links for every address: demand what
# ``secrets.token_urlsafe(32)`` gives, 32 random bytes (43 characters).
SECRET_MIN_BYTES = 32
_SECRET_MIN_DISTINCT = 10  # "aaaa…" or "changeme" four times is long, not random
MAKE_SECRET = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def needs_secret(settings: RenderSettings) -> bool:
    """Do digests carry signed links or a VERP return path (so a secret is required)?"""
    return bool(settings.unsubscribe_url or settings.public_url or settings.bounce_address)


def make_signer(settings: RenderSettings, environ: Mapping[str, str]) -> Signer | None:
    """The signer of links from the secrets in the environment (None when nothing needs
    one); a ConfigError when one is needed and missing, or too short or plain to be random."""
    name = settings.unsubscribe_secret_env
    secret = environ.get(name, "")
    if not needs_secret(settings):
        return Signer(secret, max_age_days=settings.link_max_age_days) if secret else None
    why = "unsubscribe_url, public_url or bounce_address is set"
    if not secret:
        raise ConfigError(
            f"{why} but ${name} is empty; set it to a random secret of at least "
            f"{SECRET_MIN_BYTES} bytes (it signs the links and unsubscribe tokens): {MAKE_SECRET}"
        )
    _check_strength(name, secret)
    previous = None
    if settings.previous_secret_env:
        previous = environ.get(settings.previous_secret_env) or None
        if previous:
            _check_strength(settings.previous_secret_env, previous)
    return Signer(secret, previous, settings.secret_grace_days, settings.link_max_age_days)


def _check_strength(name: str, secret: str) -> None:
    if len(secret.encode("utf-8")) < SECRET_MIN_BYTES or len(set(secret)) < _SECRET_MIN_DISTINCT:
        raise ConfigError(
            f"${name} is too weak to sign unsubscribe links (it must be at least "
            f"{SECRET_MIN_BYTES} random bytes; a guessed secret forges links for every "
            f"address): make one with {MAKE_SECRET}"
        )


def return_path(settings: RenderSettings, signer: Signer | None, email: str) -> str | None:
    """The VERP return path of ``email``'s digests (``bounces+<token>@domain``), so that a
    bounce names its subscriber even when the report does not; None without bounce_address."""
    if not settings.bounce_address or signer is None:
        return None
    local, _, domain = settings.bounce_address.rpartition("@")
    return f"{local}+{signer.verp(email)}@{domain}"
