"""Signed link tokens: bound to their purpose, address and parts; old secrets for a while."""

from __future__ import annotations

import base64
import string
from datetime import date, timedelta

from newsletter.render.tokens import Signer

SECRET = "k2Jx9-TqLw_0aZr7Vn4bYc8uHs1eDf6gPm3"
OLD = "Zr7Vn4bYc8uHs1eDf6gPm3-k2Jx9-TqLw_0a"
TODAY = date(2026, 3, 12)


def test_a_token_proves_its_address_for_its_purpose_and_parts_only() -> None:
    signer = Signer(SECRET)
    token = signer.sign("archive", "Ada@example.org", "digest1", day=TODAY)
    assert signer.check(token, "archive", "digest1", today=TODAY).address == "Ada@example.org"
    assert signer.check(token, "unsubscribe", today=TODAY).address is None  # purpose swapped
    assert signer.check(token, "archive", "digest2", today=TODAY).address is None  # digest
    assert Signer(OLD).check(token, "archive", "digest1", today=TODAY).address is None
    preferences = signer.sign("preferences", "ada@example.org", day=TODAY)
    for other in ("unsubscribe", "feed"):  # the same parts (none), another purpose
        assert signer.check(preferences, other, today=TODAY).address is None


def test_a_forged_token_is_refused_whatever_its_shape() -> None:
    signer = Signer(SECRET)
    token = signer.sign("unsubscribe", "ada@example.org", day=TODAY)
    address, day, mac = token.split(".")
    bob = Signer("x" * 40).sign("unsubscribe", "bob@example.org", day=TODAY).split(".")[0]
    for forged in [
        f"{bob}.{day}.{mac}",  # another address under this MAC
        f"{address}.{int(day) + 1}.{mac}",  # another day
        f"{address}.{day}.{mac[:-2]}AA",
        f"{address}.{day}",
        "",
        "....",
        "%%%.1.%%%",
        "a" * 5000,
    ]:
        assert signer.check(forged, "unsubscribe", today=TODAY).address is None, forged


def test_after_rotation_old_links_work_for_the_grace_period_then_expire() -> None:
    issued = TODAY - timedelta(days=10)
    token = Signer(OLD).sign("unsubscribe", "ada@example.org", day=issued)
    rotated = Signer(SECRET, previous=OLD, grace_days=30)
    assert rotated.check(token, "unsubscribe", today=TODAY).address == "ada@example.org"
    late = rotated.check(token, "unsubscribe", today=issued + timedelta(days=31))
    assert late.address is None and late.expired_for == "ada@example.org"


def test_every_link_expires_after_max_age_and_says_whose_it_was() -> None:
    signer = Signer(SECRET, max_age_days=400)
    token = signer.sign("unsubscribe", "ada@example.org", day=TODAY)
    year_on = signer.check(token, "unsubscribe", today=TODAY + timedelta(days=365))
    assert year_on.address == "ada@example.org"  # a year-old digest still unsubscribes
    late = signer.check(token, "unsubscribe", today=TODAY + timedelta(days=401))
    assert late.address is None and late.expired_for == "ada@example.org"
    forged = signer.check(token[:-2] + "AA", "unsubscribe", today=TODAY + timedelta(days=401))
    assert forged.address is None and not forged.expired  # only a genuine one says whose


def test_a_token_dated_in_the_future_is_refused_under_either_secret() -> None:
    rotated = Signer(SECRET, previous=OLD, grace_days=30)
    for secret in (SECRET, OLD):
        ahead = Signer(secret).sign("unsubscribe", "ada@example.org", day=TODAY + timedelta(2))
        verdict = rotated.check(ahead, "unsubscribe", today=TODAY)
        assert verdict.address is None and not verdict.expired, secret
    tomorrow = rotated.sign("unsubscribe", "ada@example.org", day=TODAY + timedelta(1))
    assert rotated.check(tomorrow, "unsubscribe", today=TODAY).address  # (clock skew)


def test_only_the_one_spelling_sign_writes_is_accepted() -> None:
    signer = Signer(SECRET)
    token = signer.sign("unsubscribe", "ada@example.org", day=TODAY)
    address, day, mac = token.split(".")
    assert signer.check(token, "unsubscribe", today=TODAY).address
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
            assert signer.check(other, "unsubscribe", today=TODAY).address is None, other
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
        assert signer.check(twin, "unsubscribe", today=TODAY).address is None


def test_verp_tokens_are_short_lowercase_and_follow_the_secret() -> None:
    signer = Signer(SECRET, previous=OLD)
    token = signer.verp("Ada@Example.org")
    assert len(token) == 20 and token == token.lower()
    assert token == signer.verp("ada@example.org")  # case does not matter
    assert token != signer.verp("bob@example.org")
    assert Signer(OLD).verp("ada@example.org") in signer.verp_candidates("ada@example.org")
