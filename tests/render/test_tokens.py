"""Signed link tokens: bound to their purpose, address and parts; old secrets for a while."""

from __future__ import annotations

import base64
import string
from collections.abc import Callable
from datetime import date, timedelta

import pytest

from newsletter.render.tokens import Signer, opaque
from tests.helpers import legacy_token

SECRET = "k2Jx9-TqLw_0aZr7Vn4bYc8uHs1eDf6gPm3"
OLD = "Zr7Vn4bYc8uHs1eDf6gPm3-k2Jx9-TqLw_0a"
TODAY = date(2026, 3, 12)
ADDRESSES = ("ada@example.org", "bob@example.org")


def kept(*secrets: str) -> Callable[[str], str | None]:
    """The store's link keys of ADDRESSES, as the sends under ``secrets`` kept them."""
    return {Signer(s).key(a): a for s in secrets for a in ADDRESSES}.get


KEYS = kept(SECRET, OLD)


def check(signer: Signer, token: str, purpose: str, *parts: str, today: date = TODAY):
    return signer.check(token, purpose, *parts, today=today, address_of=KEYS)


def test_a_token_proves_its_address_for_its_purpose_and_parts_only() -> None:
    signer = Signer(SECRET)
    token = signer.sign("archive", "Ada@example.org", "digest1", day=TODAY)  # (any case)
    assert check(signer, token, "archive", "digest1").address == "ada@example.org"
    assert check(signer, token, "unsubscribe").address is None  # purpose swapped
    assert check(signer, token, "archive", "digest2").address is None  # digest
    assert check(Signer(OLD), token, "archive", "digest1").address is None
    preferences = signer.sign("preferences", "ada@example.org", day=TODAY)
    for other in ("unsubscribe", "feed"):  # the same parts (none), another purpose
        assert check(signer, preferences, other).address is None


def test_a_forged_token_is_refused_whatever_its_shape() -> None:
    signer = Signer(SECRET)
    token = signer.sign("unsubscribe", "ada@example.org", day=TODAY)
    key, day, mac = token.split(".")
    bob = signer.sign("unsubscribe", "bob@example.org", day=TODAY).split(".")[0]
    for forged in [
        f"{bob}.{day}.{mac}",  # another address under this MAC
        f"{key}.{int(day) + 1}.{mac}",  # another day
        f"{key}.{day}.{mac[:-2]}AA",
        f"{key}.{day}",
        f"{key[:-1]}{'B' if key[-1] == 'A' else 'A'}.{day}.{mac}",  # a key the store lacks
        "",
        "....",
        "%%%.1.%%%",
        "a" * 5000,
    ]:
        assert check(signer, forged, "unsubscribe").address is None, forged


def test_after_rotation_old_links_work_for_the_grace_period_then_expire() -> None:
    issued = TODAY - timedelta(days=10)
    token = Signer(OLD).sign("unsubscribe", "ada@example.org", day=issued)
    rotated = Signer(SECRET, previous=OLD, grace_days=30)
    assert check(rotated, token, "unsubscribe").address == "ada@example.org"
    late = check(rotated, token, "unsubscribe", today=issued + timedelta(days=31))
    assert late.address is None and late.expired_for == "ada@example.org"


def test_every_link_expires_after_max_age_and_says_whose_it_was() -> None:
    signer = Signer(SECRET, max_age_days=400)
    token = signer.sign("unsubscribe", "ada@example.org", day=TODAY)
    year_on = check(signer, token, "unsubscribe", today=TODAY + timedelta(days=365))
    assert year_on.address == "ada@example.org"  # a year-old digest still unsubscribes
    late = check(signer, token, "unsubscribe", today=TODAY + timedelta(days=401))
    assert late.address is None and late.expired_for == "ada@example.org"
    forged = check(signer, token[:-2] + "AA", "unsubscribe", today=TODAY + timedelta(days=401))
    assert forged.address is None and not forged.expired  # only a genuine one says whose


def test_a_token_dated_in_the_future_is_refused_under_either_secret() -> None:
    rotated = Signer(SECRET, previous=OLD, grace_days=30)
    for secret in (SECRET, OLD):
        ahead = Signer(secret).sign("unsubscribe", "ada@example.org", day=TODAY + timedelta(2))
        verdict = check(rotated, ahead, "unsubscribe")
        assert verdict.address is None and not verdict.expired, secret
    tomorrow = rotated.sign("unsubscribe", "ada@example.org", day=TODAY + timedelta(1))
    assert check(rotated, tomorrow, "unsubscribe").address  # (clock skew)


def test_only_the_one_spelling_sign_writes_is_accepted() -> None:
    signer = Signer(SECRET)
    token = signer.sign("unsubscribe", "ada@example.org", day=TODAY)
    address, day, mac = token.split(".")
    assert check(signer, token, "unsubscribe").address
    for other in [
        f"{address}.0{day}.{mac}",  # a leading zero
        f"{address}==.{day}.{mac}",  # padding
        f"{address}.{day}.{mac}=",
        f"{address[:-1]}{chr(ord(address[-1]) + 1)}.{day}.{mac}",  # other trailing bits
        f"{address}.{day}.{mac[:-1]}{chr(ord(mac[-1]) ^ 1)}",
        f"{address}.+{day}.{mac}",
        f"{address}.{day}.{mac}".replace("-", "+").replace("_", "/"),  # standard alphabet
    ]:
        if other != token:
            assert check(signer, other, "unsubscribe").address is None, other
    # The same bytes spelt with other unused low bits in the last character of the MAC.
    alphabet = string.ascii_letters + string.digits + "-_"
    same = [
        c for c in alphabet
        if c != mac[-1] and base64.urlsafe_b64decode(mac[:-1] + c + "==")
        == base64.urlsafe_b64decode(mac + "==")
    ]  # fmt: skip
    assert same  # (a 16-byte MAC leaves four bits unused)
    for c in same:
        twin = f"{address}.{day}.{mac[:-1]}{c}"
        assert check(signer, twin, "unsubscribe").address is None


def test_verp_tokens_are_short_lowercase_and_follow_the_secret() -> None:
    signer = Signer(SECRET, previous=OLD)
    token = signer.verp("Ada@Example.org")
    assert len(token) == 20 and token == token.lower()
    assert token == signer.verp("ada@example.org")  # case does not matter
    assert token != signer.verp("bob@example.org")
    assert Signer(OLD).verp("ada@example.org") in signer.verp_candidates("ada@example.org")


def test_a_link_names_its_address_by_an_opaque_key_the_store_keeps() -> None:
    signer = Signer(SECRET)
    token = signer.sign("unsubscribe", "ada@example.org", day=TODAY)
    key = token.split(".")[0]
    assert key == signer.key("ADA@example.org") and len(key) == 22
    assert b"ada" not in base64.urlsafe_b64decode(key + "==") and "ada" not in token
    assert Signer(OLD).key("ada@example.org") != key  # (a new secret, new keys)
    nobody: Callable[[str], str | None] = {}.get  # a store that never kept it
    assert signer.check(token, "unsubscribe", today=TODAY, address_of=nobody).address is None


def test_a_link_of_the_previous_release_still_works_through_this_one() -> None:
    signer = Signer(SECRET, previous=OLD)
    nobody: Callable[[str], str | None] = {}.get  # (its address was never kept as a key)
    for secret in (SECRET, OLD):
        token = legacy_token(secret, "unsubscribe", "carol@example.org", TODAY)
        verdict = signer.check(token, "unsubscribe", today=TODAY, address_of=nobody)
        assert verdict.address == "carol@example.org", secret
        assert signer.check(token, "preferences", today=TODAY, address_of=nobody).address is None
    forged = legacy_token("another-secret-0123456789-abcdefghijkl", "unsubscribe", "c@x.org", TODAY)
    assert signer.check(forged, "unsubscribe", today=TODAY, address_of=nobody).address is None


def test_an_opaque_name_is_signed_as_itself() -> None:
    signer = Signer(SECRET)
    token = signer.sign_opaque("confirm", "q7Yx_3-request", day=TODAY)
    assert token.startswith("q7Yx_3-request.")
    assert signer.check(token, "confirm", today=TODAY, address_of=opaque).address == (
        "q7Yx_3-request"
    )
    other = token.replace("q7Yx_3-request", "q7Yx_3-requesu")
    assert signer.check(other, "confirm", today=TODAY, address_of=opaque).address is None
    for unsafe in ("a.b", "", "a/b"):
        with pytest.raises(ValueError):
            signer.sign_opaque("confirm", unsafe, day=TODAY)
