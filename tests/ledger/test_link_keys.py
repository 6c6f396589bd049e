"""The link keys a send keeps in the store: every recipient's, once; none in a dry run."""

from __future__ import annotations

from pathlib import Path

from newsletter.ledger.link_keys import LinkKeys
from newsletter.render.tokens import Signer
from tests.helpers import NOW, invoke, open_project_store, readers_of_pruning

SECRET = "k2Jx9-TqLw_0aZr7Vn4bYc8uHs1eDf6gPm3"
ENV = {"NEWSLETTER_UNSUBSCRIBE_SECRET": SECRET}
READERS = ("ada@example.org", "Bob@example.org")


def project(folder: Path) -> Path:
    readers_of_pruning(folder, READERS)
    config = folder / "config.yaml"
    config.write_text(
        "digests: digests\nstate_dir: state\noutbox_dir: outbox\n"
        "public_url: https://news.example.org\n"
    )
    return config


def kept(folder: Path) -> list[tuple]:
    with open_project_store(folder) as store:
        return store.db.execute("SELECT link_key, address FROM link_keys").fetchall()


def test_a_send_keeps_each_recipients_link_key_once(tmp_path: Path) -> None:
    config = project(tmp_path)
    assert "2 sent" in invoke(config, "send", "--now", environ=ENV, now=NOW).output
    signer = Signer(SECRET)
    expected = sorted((signer.key(address), address) for address in READERS)
    assert sorted(kept(tmp_path)) == expected
    with open_project_store(tmp_path) as store:
        assert LinkKeys(store).address_of(signer.key("bob@example.org")) == "Bob@example.org"
        assert LinkKeys(store).address_of("unknown-key") is None
    invoke(config, "send", "--now", environ=ENV, now=NOW)  # again: nothing added
    assert sorted(kept(tmp_path)) == expected


def test_a_dry_run_keeps_no_key(tmp_path: Path) -> None:
    config = project(tmp_path)
    result = invoke(config, "send", "--now", "--dry-run", environ=ENV, now=NOW)
    assert result.exit_code == 0, result.output
    assert kept(tmp_path) == []


def test_a_new_secret_adds_keys_and_keeps_the_old(tmp_path: Path) -> None:
    config = project(tmp_path)
    invoke(config, "send", "--now", environ=ENV, now=NOW)
    new = "Zr7Vn4bYc8uHs1eDf6gPm3-k2Jx9-TqLw_0a"
    with open_project_store(tmp_path) as store:
        LinkKeys(store).remember(Signer(new), READERS, NOW)
        LinkKeys(store).remember(Signer(new), READERS, NOW)  # (kept once)
    assert len(kept(tmp_path)) == 4
