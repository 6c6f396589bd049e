"""Checking and normalizing e-mail addresses, with each domain checked once.

email-validator checks an address's domain afresh on every call, and that is two thirds of
its cost; a list of 100,000 subscribers has a few hundred distinct domains. So the common
case (a plain ASCII dot-atom before the @-sign and an ASCII host name after it) is built
here from the domain's cached result; anything else, and anything the fast path would
refuse, goes to ``validate_email`` itself, so errors keep its exact wording.
tests/test_addresses.py holds the fast path to the library's answer on many addresses.
"""

from __future__ import annotations

import functools
import re

from email_validator import EmailNotValidError, ValidatedEmail, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES

__all__ = ["EmailNotValidError", "normalized_address"]

# RFC 5322 atext, as in email-validator's DOT_ATOM_TEXT; the host name part is only what
# could be a valid ASCII domain name, the rest of its checking is the library's.
_ATEXT = r"A-Za-z0-9_!#$%&'*+\-/=?^`{|}~"
_PLAIN = re.compile(rf"([{_ATEXT}]+(?:\.[{_ATEXT}]+)*)@([A-Za-z0-9.\-]+)\Z")
_ADDRESS_MAX = 254
_CASE_INSENSITIVE = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)


def normalized_address(text: str) -> str:
    """``text`` checked and normalized as email-validator would (no DNS); raises
    EmailNotValidError with the library's message when it is not an address."""
    fast = _plain_normalized(text)
    if fast is not None:
        return fast
    return validate_email(text, check_deliverability=False).normalized


def _plain_normalized(text: str) -> str | None:
    """The normalized form of a plain address whose domain is valid, else None."""
    plain = _PLAIN.match(text)
    if plain is None:
        return None
    local, domain_part = plain.groups()
    domain = _checked_domain(domain_part)
    if domain is None:
        return None
    if local.lower() in _CASE_INSENSITIVE:
        local = local.lower()
    normalized = f"{local}@{domain.domain}"
    # The library's length checks: the address as given (here all ASCII, so as long as its
    # ASCII form) and the normalized one, whose IDNA domain may be longer in UTF-8.
    longest = max(len(text), len(normalized.encode()))
    return normalized if longest <= _ADDRESS_MAX else None


@functools.lru_cache(maxsize=4096)
def _checked_domain(domain_part: str) -> ValidatedEmail | None:
    """The library's result for an address at ``domain_part``, or None if it refuses it."""
    try:
        return validate_email(f"a@{domain_part}", check_deliverability=False)
    except EmailNotValidError:
        return None
