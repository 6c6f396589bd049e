"""validate: what a send will need that the config file alone does not show (SMTP settings
that can only fail, an unset password variable, the sender, the templates)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import invoke

PROFILES = "subscribers:\n  - email: ada@example.org\n    keywords: [pruning]\n"


def validate_config(folder: Path, **smtp: object) -> Path:
    (folder / "digests").mkdir(exist_ok=True)
    (folder / "subscribers.yaml").write_text(PROFILES)
    lines = "".join(f"  {key}: {value}\n" for key, value in smtp.items())
    (folder / "config.yaml").write_text(
        "sender: Digest <digest@example.org>\ndelivery: smtp\nsmtp:\n" + lines
    )
    return folder / "config.yaml"


@pytest.mark.parametrize(
    ("smtp", "message"),
    [
        ({"host": "mail", "port": 465, "security": "starttls"}, "port 465 expects security: ssl"),
        ({"host": "mail", "port": 587, "security": "ssl"}, "port 587 expects security: starttls"),
        ({"host": "mail", "port": 25, "security": "ssl"}, "port 25 expects security: starttls"),
        ({"host": "mail", "username": "ada"}, "'username' is set but 'password_env' is not"),
    ],
)
def test_validate_catches_smtp_settings_that_can_only_fail(tmp_path, smtp, message) -> None:
    config = validate_config(tmp_path, **smtp)
    result = invoke(config, "validate")
    assert result.exit_code == 1
    assert message in result.output
    assert "config.yaml:" in result.output


def test_a_plain_connection_on_the_tls_port_says_which_port_serves_it(tmp_path) -> None:
    config = validate_config(tmp_path, host="mail", port=465, security="none")
    result = invoke(config, "validate")
    assert result.exit_code == 1
    assert "port 465 expects security: ssl" in result.output
    assert "provider gives for none" not in result.output
    assert "port 25" in result.output


def test_validate_names_an_unset_password_variable(tmp_path: Path) -> None:
    config = validate_config(tmp_path, host="mail", username="ada", password_env="SMTP_PW")
    unset = invoke(config, "validate")
    assert unset.exit_code == 1
    assert "$SMTP_PW is not set" in unset.output
    assert invoke(config, "validate", environ={"SMTP_PW": "secret"}).exit_code == 0


@pytest.mark.parametrize(
    ("sender", "message"),
    [("Digest <digest@>", "'sender'"), ("Digest <digest@example..org>", "'sender'")],
)
def test_validate_checks_the_sender_address(tmp_path: Path, sender: str, message: str) -> None:
    (tmp_path / "digests").mkdir()
    (tmp_path / "subscribers.yaml").write_text(PROFILES)
    (tmp_path / "config.yaml").write_text(f"sender: {sender}\n")
    result = invoke(tmp_path / "config.yaml", "validate")
    assert result.exit_code == 1 and message in result.output


def test_validate_compiles_the_templates(tmp_path: Path) -> None:
    (tmp_path / "digests").mkdir()
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "digest.txt.j2").write_text("Hello\n{% if digest.papers %}\n")
    (tmp_path / "subscribers.yaml").write_text(PROFILES)
    (tmp_path / "config.yaml").write_text("sender: Digest <digest@example.org>\n")
    result = invoke(tmp_path / "config.yaml", "validate")
    assert result.exit_code == 1
    assert "digest.txt.j2:2" in result.output
