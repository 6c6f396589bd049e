"""Problems surface before and during a send: rejected files in the report and the exit
status, a missing digests folder, and what `validate` can tell before sending (issue 12,
findings 4 and 6)."""

from __future__ import annotations

import json
import logging
import shutil
import ssl
from pathlib import Path

import pytest
import trustme

from newsletter.schedule.daemon import Daemon
from newsletter.world import World
from tests.helpers import NOW, SAMPLES, invoke
from tests.smtp_server import SilentServer, SmtpServer

PROFILES = "subscribers:\n  - email: ada@example.org\n    keywords: [pruning]\n"


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    shutil.copytree(SAMPLES, tmp_path / "digests")
    (tmp_path / "digests" / "broken.txt").write_bytes(b"\x00\x01\x02" * 100)
    (tmp_path / "digests" / "empty.txt").write_text("")
    (tmp_path / "subscribers.yaml").write_text(PROFILES)
    (tmp_path / "config.yaml").write_text("sender: Digest <digest@example.org>\n")
    return tmp_path


def test_send_reports_rejected_files_and_exits_1_after_sending(shop: Path) -> None:
    result = invoke(shop / "config.yaml", "send", "--json", "--now")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert [s["subscriber"] for s in report["sent"]] == ["ada@example.org"]
    ingest = report["ingest"]
    assert (ingest["ingested"], ingest["rejected"], ingest["new_papers"]) == (3, 2, 12)
    rejected = {Path(f["path"]).name: f["error"] for f in ingest["files"] if f["error"]}
    assert sorted(rejected) == ["broken.txt", "empty.txt"]
    again = invoke(shop / "config.yaml", "send", "--json", "--now")
    assert again.exit_code == 1  # still there, still reported, until fixed or removed
    assert json.loads(again.stdout)["ingest"]["rejected"] == 2
    (shop / "digests" / "broken.txt").unlink()
    (shop / "digests" / "empty.txt").unlink()
    assert invoke(shop / "config.yaml", "send", "--now").exit_code == 0


def test_the_human_summary_names_rejected_files_and_warnings(shop: Path) -> None:
    result = invoke(shop / "config.yaml", "send", "--now")
    assert result.exit_code == 1
    assert "ingested 3 new digest files (12 new papers), 2 rejected" in result.stdout
    assert "broken.txt: rejected:" in result.stderr
    assert "empty.txt: rejected: the file is empty" in result.stderr


def test_the_daemon_logs_rejected_files(shop: Path, caplog: pytest.LogCaptureFixture) -> None:
    daemon = Daemon(shop / "config.yaml", World(now=lambda: NOW, environ={}))
    daemon.reload()
    with caplog.at_level(logging.INFO, logger="newsletter.run"):
        daemon.run_due(None)
    text = caplog.text
    assert "3 files ingested (12 new papers), 2 rejected" in text
    assert "broken.txt: rejected" in text


@pytest.mark.parametrize(
    "args", [("send",), ("preview", "--subscriber", "ada@example.org"), ("papers",),
             ("schedule",), ("ingest",), ("validate",)],
)  # fmt: skip
def test_a_missing_digests_folder_is_a_config_error_for_every_command(shop: Path, args) -> None:
    shutil.rmtree(shop / "digests")
    result = invoke(shop / "config.yaml", *args)
    assert result.exit_code in ((1,) if args == ("validate",) else (2,)), result.output
    assert "the digests folder" in result.output and "does not exist" in result.output


# -- validate: what send will need ----------------------------------------------------------


def smtp_config(folder: Path, **smtp: object) -> Path:
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
    config = smtp_config(tmp_path, **smtp)
    result = invoke(config, "validate")
    assert result.exit_code == 1
    assert message in result.output
    assert "config.yaml:" in result.output


def test_validate_names_an_unset_password_variable(tmp_path: Path) -> None:
    config = smtp_config(tmp_path, host="mail", username="ada", password_env="SMTP_PW")
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


def test_validate_connect_logs_in_over_starttls_and_sends_nothing(tmp_path: Path) -> None:
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(authority.cert_pem.bytes())
    with SmtpServer(tls_context=context, credentials=("ada", "secret")) as server:
        config = smtp_config(
            tmp_path, host="127.0.0.1", port=server.port, security="starttls", username="ada",
            password_env="SMTP_PW", ca_file=str(ca_file), timeout=2,
        )  # fmt: skip
        good = invoke(config, "validate", "--connect", environ={"SMTP_PW": "secret"})
        assert good.exit_code == 0, good.output
        assert f"127.0.0.1:{server.port}: connected, STARTTLS, logged in as 'ada'" in good.output
        bad = invoke(config, "validate", "--connect", environ={"SMTP_PW": "wrong"})
        assert bad.exit_code == 1 and "refused the login" in bad.output
        assert server.sink.messages == []


def test_ssl_against_a_plain_server_says_to_use_starttls_or_none(tmp_path: Path) -> None:
    with SmtpServer() as server:
        config = smtp_config(
            tmp_path, host="127.0.0.1", port=server.port, security="ssl", timeout=2
        )
        result = invoke(config, "validate", "--connect")
    assert result.exit_code == 1
    assert f"127.0.0.1:{server.port}" in result.output
    assert "security: starttls" in result.output and "WRONG_VERSION_NUMBER" not in result.output


def test_a_port_that_never_answers_names_the_likely_causes(tmp_path: Path) -> None:
    shutil.copytree(SAMPLES, tmp_path / "digests")
    with SilentServer() as server:
        config = smtp_config(
            tmp_path, host="127.0.0.1", port=server.port, security="none", timeout=1,
            max_attempts=1,
        )  # fmt: skip
        result = invoke(config, "send", "--now")
    assert result.exit_code == 1
    assert f"127.0.0.1:{server.port}" in result.output
    assert "did not answer within 1 s" in result.output
    assert "firewall" in result.output
