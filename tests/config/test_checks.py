"""Checks across settings that reading alone cannot make: a line break in a header setting
is refused; every mistake in the sign-up settings is named with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import invoke


@pytest.mark.parametrize("key", ["list_id", "unsubscribe_mailto"])
def test_validate_catches_a_line_break_in_a_header_setting(shop: Path, key: str) -> None:
    (shop / "config.yaml").write_text(
        f'sender: Research digest <digest@example.org>\n{key}: "x@example.org\\r\\nBcc: a@b.c"\n'
    )
    result = invoke(shop / "config.yaml", "validate")
    assert result.exit_code == 1, result.output
    assert f"config.yaml:2: '{key}' must be one line of plain text" in result.output
    assert "U+000D" in result.output


def test_validate_names_each_mistake_in_the_sign_up_settings(shop: Path) -> None:
    (shop / "config.yaml").write_text(
        "sender: Research digest <digest@example.org>\n"
        "subscribe:\n  enabled: true\n  confirm_hour: 48\n  domains: [uni-example, ok.edu]\n"
        "  defaults:\n    frequency: hourly\n    timezone: Mars/Base\n"
        "  limits:\n    per_hour: -1\n"
    )
    result = invoke(shop / "config.yaml", "validate")
    assert result.exit_code == 1, result.output
    for line, says in [
        (3, "the sign-up page mails a confirmation link to <public_url>/confirm"),
        (4, "unknown key 'confirm_hour' (did you mean 'confirm_hours'?)"),
        (5, "'uni-example' is not a domain name"),
        (7, "'frequency' cannot be 'hourly' (one of: daily, weekly)"),
        (8, "unknown time zone 'Mars/Base'"),
        (10, "'per_hour' must be from 1 to"),
    ]:
        assert f"config.yaml:{line}: {says}" in result.output, result.output
    assert "ok.edu" not in result.output
