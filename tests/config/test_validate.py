"""validate: what a send will need that the config file alone does not show (SMTP settings
that can only fail, an unset password variable, the sender, the templates)."""

from __future__ import annotations

import sqlite3
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from newsletter.config.settings import Config
from newsletter.ledger.suppression import SubscriberState
from newsletter.store.sqlite import open_store
from tests.helpers import NOW, SAMPLES, invoke

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


def test_validate_lists_config_environment_profile_and_template_mistakes_in_one_run(
    tmp_path: Path,
) -> None:
    config = validate_config(
        tmp_path, host="mail", port=465, security="starttls", username="ada",
        password_env="SMTP_PW",
    )  # fmt: skip
    (tmp_path / "subscribers.yaml").write_text(
        "subscribers:\n  - email: ada@example.org\n    keywords: [pruning]\n    max_papers: lots\n"
    )
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "digest.txt.j2").write_text("Hello\n{% if digest.papers %}\n")
    result = invoke(config, "validate")
    assert result.exit_code == 1
    assert "port 465 expects security: ssl" in result.output  # the config
    assert "$SMTP_PW is not set" in result.output  # the environment
    assert "subscribers.yaml:4: 'max_papers' must be a whole number" in result.output
    assert "digest.txt.j2:2" in result.output  # the templates
    assert "4 problems found" in result.output


def test_validate_checks_the_store_it_would_send_from(tmp_path: Path) -> None:
    config = validate_config(tmp_path, host="mail")
    assert invoke(config, "validate").exit_code == 0
    assert not (tmp_path / "state").exists()  # validate makes no store of its own
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "newsletter.sqlite3").write_bytes(b"not a database at all" * 300)
    result = invoke(config, "validate")
    assert result.exit_code == 1
    assert "newsletter.sqlite3 is not a database" in result.output, result.output


def test_validate_finds_a_damaged_page_of_the_store(tmp_path: Path) -> None:
    config = validate_config(tmp_path, host="mail")
    (tmp_path / "digests" / "d.txt").write_text(
        (SAMPLES / "mar-10-daily.txt").read_text(encoding="utf-8"), encoding="utf-8"
    )
    assert invoke(config, "ingest").exit_code == 0
    store = tmp_path / "state" / "newsletter.sqlite3"
    with sqlite3.connect(store) as db:
        root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'papers'").fetchone()
        page = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    data = bytearray(store.read_bytes())
    start = (root[0] - 1) * page
    data[start + 8 : start + page] = bytes(page - 8)  # the table's first page wiped
    store.write_bytes(bytes(data))
    result = invoke(config, "validate")
    assert result.exit_code == 1
    assert "newsletter.sqlite3 is damaged" in result.output, result.output
    assert ".recover" in result.output


def test_receiving_counts_no_bounced_or_unsubscribed_address(tmp_path: Path) -> None:
    config = validate_config(tmp_path, host="mail")
    (tmp_path / "subscribers.yaml").write_text(
        "subscribers:\n"
        + "".join(f"  - email: {name}@example.org\n    keywords: [x]\n" for name in "abcd")
        + "  - email: e@example.org\n    keywords: [x]\n    active: false\n"
    )
    assert invoke(config, "unsubscribe", "b@example.org").exit_code == 0
    with open_store(tmp_path / "state") as store:
        SubscriberState(store).suppress("c@example.org", "bounced", "dsn", NOW)
    result = invoke(config, "validate")
    assert result.exit_code == 0, result.output
    assert "5 subscribers (2 receiving; 1 bounced, 1 unsubscribed)" in result.output, result.output


def every_setting(cls: type = Config, at: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The key path of every setting of ``cls`` and its sections, as config.yaml has them."""
    found = []
    for item in fields(cls):
        meta = item.metadata
        if "section" in meta:
            inner = at if meta["section"] is None else (*at, meta["section"])
            found += every_setting(meta["class"], inner)
        elif "kind" in meta:
            found.append((*at, item.name))
    return found


def test_every_setting_in_error_is_reported_and_the_rest_still_checked(tmp_path: Path) -> None:
    """A config read despite a mistake must not trip the checks after it (a value in error
    reads as its default, which no later check may take for granted)."""
    (tmp_path / "digests").mkdir()
    (tmp_path / "subscribers.yaml").write_text(PROFILES + "    max_papers: lots\n")
    settings = every_setting()
    assert len(settings) > 40
    for path in settings:
        data: dict = {
            "sender": "Digest <digest@example.org>",
            "delivery": "smtp",
            "smtp": {"host": "mail", "username": "ada", "password_env": "SMTP_PW"},
            "dkim": {"domain": "example.org", "selector": "s1", "private_key_file": "k.pem"},
        }
        inner = data
        for key in path[:-1]:
            inner = inner.setdefault(key, {})
        inner[path[-1]] = ["not", "a", "value"]
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(data))
        result = invoke(tmp_path / "config.yaml", "validate")
        assert result.exit_code == 1, (path, result.output)
        assert "internal error" not in result.output, (path, result.output)
        assert "'max_papers' must be a whole number" in result.output, (path, result.output)


def test_validate_says_when_max_papers_cannot_fit_in_one_email_and_what_fits(tmp_path) -> None:
    (tmp_path / "digests").mkdir()
    (tmp_path / "config.yaml").write_text("sender: Digest <digest@example.org>\n")
    (tmp_path / "subscribers.yaml").write_text(
        "subscribers:\n"
        "  - email: ada@example.org\n    keywords: [pruning]\n    max_papers: 100\n"
        "  - email: bob@example.org\n    keywords: [pruning]\n    max_papers: 25\n"
    )
    result = invoke(tmp_path / "config.yaml", "validate")
    assert result.exit_code == 0, result.output  # (a note, not a mistake)
    (note,) = [line for line in result.output.splitlines() if line.startswith("note:")]
    fits = int(note.split("about ")[1].split()[0])
    assert 25 < fits < 100 and "ada@example.org (line 2: 100)" in note
    assert "bob@example.org" not in note and "abstract_chars" in note
    (tmp_path / "config.yaml").write_text(
        "sender: Digest <digest@example.org>\nabstract_chars: 200\n"
    )
    shorter = invoke(tmp_path / "config.yaml", "validate").output
    assert int(shorter.split("about ")[1].split()[0]) > fits  # (shorter abstracts: more fit)
