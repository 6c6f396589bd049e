"""normalized_address gives email-validator's answer (the normalized address, or its exact
error) on every address, though it checks each domain once."""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.subscribers.addresses import _checked_domain, _plain_normalized, normalized_address

TRICKY = [
    "ada@example.org",
    "Ada.Lovelace@Example.ORG",
    "POSTMASTER@example.org",
    "Abuse@example.org",
    "o'neil+news@example.co.uk",
    "a..b@example.org",
    ".a@example.org",
    "a.@example.org",
    "a@example..org",
    "a@-example.org",
    "a@example-.org",
    "a@example.org.",
    "a@.example.org",
    "a@localhost",
    "a@example",
    "a@example.invalid",
    "a@123.45.67.89",
    "a@[127.0.0.1]",
    "a@xn--bcher-kva.example",
    "a@xn--abc.example",
    "a@ab--cd.example",
    "a@bücher.example",
    "jörg@example.org",
    '"quoted"@example.org',
    '"a b"@example.org',
    "Ada <ada@example.org>",
    "a@b@example.org",
    "@example.org",
    "ada@",
    "ada",
    "",
    "a" * 64 + "@example.org",
    "a" * 65 + "@example.org",
    "a@" + "b" * 63 + ".example.org",
    "a@" + "b" * 64 + ".example.org",
    "a" * 64 + "@" + ".".join(["b" * 60] * 3) + ".org",
    "a" * 40 + "@" + ".".join(["c" * 63] * 3) + ".org",
    "a" * 60 + "@" + ".".join(["d" * 63] * 3) + ".xn--bcher-kva",
    # Punycode of a repeated character is short; its UTF-8 is not (too long once normalized).
    "x@" + ".".join([("中" * 20).encode("idna").decode()] * 5) + ".org",
    "x" * 70 + "@" + ".".join([("中" * 20).encode("idna").decode()] * 3) + ".org",
    "x" * 68 + "@" + ".".join([("中" * 20).encode("idna").decode()] * 3) + ".org",
    # ... and the other way round: too long as given, not once normalized.
    "x" * 80 + "@" + ".".join(["xn--bcher-kva"] * 12) + ".example",
    "x" * 70 + "@" + ".".join(["xn--bcher-kva"] * 12) + ".example",
]


def library(address: str) -> str:
    """email-validator's own answer: the normalized address, or 'error: <message>'."""
    try:
        return validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        return f"error: {exc}"


def ours(address: str) -> str:
    try:
        return normalized_address(address)
    except EmailNotValidError as exc:
        return f"error: {exc}"


@pytest.mark.parametrize("address", TRICKY)
def test_same_answer_as_the_library(address):
    assert ours(address) == library(address)


def test_the_fast_path_takes_plain_addresses_and_checks_each_domain_once():
    _checked_domain.cache_clear()
    for n in range(50):
        assert _plain_normalized(f"reader{n}@Example.ORG") == f"reader{n}@example.org"
    assert _checked_domain.cache_info().misses == 1
    # Refused by the fast path, so the library answers them with its own message.
    assert _plain_normalized("a@[127.0.0.1]") is None
    assert _plain_normalized("jörg@example.org") is None
    assert _plain_normalized("a@example") is None


LOCAL_CHARS = "aZ09._+-'!#$%&*/=?^`{|}~\"@ <>é\\"
DOMAIN_CHARS = "aZ09.-_[]xn@ü"
DOMAINS = ["example.org", "Example.Org", "mail.example.co.uk", "xn--bcher-kva.example", "localhost"]


@settings(max_examples=600, deadline=None)
@given(
    local=st.text(LOCAL_CHARS, max_size=70),
    domain=st.one_of(st.sampled_from(DOMAINS), st.text(DOMAIN_CHARS, max_size=70)),
)
def test_generated_addresses_get_the_library_answer(local, domain):
    address = f"{local}@{domain}"
    assert ours(address) == library(address)


@settings(max_examples=200, deadline=None)
@given(length=st.integers(200, 270), label=st.integers(1, 70))
def test_long_addresses_get_the_library_answer(length, label):
    host = ".".join(["h" * label] * (length // (label + 1) + 1))[: length - 20].strip(".")
    address = "x" * 12 + "@" + host + ".org"
    assert ours(address) == library(address)
