"""Who a digest goes from and to on the wire, and its Message-ID: worked out here, once.

The rendered email carries its ``Envelope`` (IDNA domains; whether SMTPUTF8 is needed), and a
digest re-sent from the ledger gets its envelope from the same function.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from email.utils import parseaddr

from newsletter.models import Envelope


def idna_address(address: str) -> str:
    """``address`` with its domain IDNA-encoded (an internationalized domain goes out ASCII)."""
    local, at, domain = address.rpartition("@")
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return address  # left as written; delivery reports it for this subscriber only
    return f"{local}{at}{domain}"


def envelope_for(sender: str, recipient: str, return_path: str | None = None) -> Envelope:
    """The envelope from ``sender`` (a From header value, ``Name <addr>``), or from
    ``return_path`` when bounces go elsewhere, to ``recipient``."""
    origin = idna_address(return_path) if return_path else _wire_address(sender)
    return Envelope(origin, idna_address(recipient))


@functools.lru_cache(maxsize=64)
def _wire_address(sender: str) -> str:
    """The address of a From header value, as on the wire (one sender, every digest)."""
    return idna_address(parseaddr(sender)[1])


def message_id_for(sender: str, subscriber: str, paper_ids: Iterable[str]) -> str:
    """The Message-ID of a subscriber's digest of these papers: the same digest, the same id
    (a resend after a crash is recognised as the same message by the mailbox)."""
    digest_key = "\n".join([subscriber.casefold(), *sorted(paper_ids)])
    digest_hash = hashlib.sha256(digest_key.encode("utf-8")).hexdigest()[:32]
    return f"<digest.{digest_hash}@{sender_domain(sender)}>"


def digest_key(message_id: str) -> str:
    """The key of a digest in links and the web app: its Message-ID's hash part."""
    return message_id.strip("<>").partition("@")[0].removeprefix("digest.")


@functools.lru_cache(maxsize=64)
def sender_domain(sender: str) -> str:
    """The domain of ``sender``'s address (``localhost`` when it has none)."""
    return parseaddr(sender)[1].rpartition("@")[2] or "localhost"
