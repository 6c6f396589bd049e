"""Checks across settings that reading alone cannot make: a line break in a header setting
is refused."""

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
