"""Signed links: one-click unsubscribe with a token, and a secret strong enough to sign
them or none at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.errors import ConfigError
from newsletter.render.tokens import Signer
from tests.render_helpers import (
    NOW,
    parse,
    parts,
    render,
)


def test_one_click_unsubscribe_with_a_signed_token(tmp_path: Path) -> None:
    secret = "k2Jx9-TqLw_0aZr7Vn4bYc8uHs1eDf6gPm3"
    rendered = render(
        tmp_path,
        extra="unsubscribe_url: https://example.org/unsubscribe\n",
        environ={"NEWSLETTER_UNSUBSCRIBE_SECRET": secret},
    )
    message = parse(rendered.data)
    mailto, https = (v.strip(" <>") for v in message["List-Unsubscribe"].split(","))
    assert mailto.startswith("mailto:")
    token = https.split("t=")[1]
    assert https.startswith("https://example.org/unsubscribe?t=")
    signer, today = Signer(secret), NOW.date()
    keys = {signer.key("ada@example.org"): "ada@example.org"}.get  # (what the send keeps)
    assert signer.check(token, "unsubscribe", today=today, address_of=keys).address == (
        "ada@example.org"
    )
    assert signer.check(token, "preferences", today=today, address_of=keys).address is None
    other = Signer(secret[::-1])
    assert other.check(token, "unsubscribe", today=today, address_of=keys).address is None
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert https in parts(message)[1].replace("&amp;", "&")


def test_unsubscribe_url_without_a_secret_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="NEWSLETTER_UNSUBSCRIBE_SECRET is empty"):
        render(tmp_path, extra="unsubscribe_url: https://example.org/u\n")


@pytest.mark.parametrize("secret", ["x", "s3cret-for-tests", "changeme" * 4, "ab" * 40])
def test_a_short_or_plain_unsubscribe_secret_is_refused_with_how_to_make_one(
    tmp_path: Path, secret: str
) -> None:
    with pytest.raises(ConfigError, match=r"too weak.*secrets.token_urlsafe\(32\)"):
        render(
            tmp_path,
            extra="unsubscribe_url: https://example.org/u\n",
            environ={"NEWSLETTER_UNSUBSCRIBE_SECRET": secret},
        )
