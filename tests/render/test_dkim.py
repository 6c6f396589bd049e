"""DKIM: every digest signed after its final bytes are built, verified here with dkimpy
against the public key served by a stub resolver; resends verify too; validate checks the
key and the alignment with the sender."""

from __future__ import annotations

import itertools
import json
import mailbox
import pickle
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from newsletter.config.settings import DkimSettings
from newsletter.errors import ConfigError
from newsletter.render.dkim import DkimSigner, dns_record, make_dkim_signer
from tests.helpers import NOW, SAMPLES, invoke
from tests.send.test_send import PROFILES
from tests.smtp_server import SmtpServer

SECRET = {"NEWSLETTER_UNSUBSCRIBE_SECRET": "vYdwzo9WZIQmuhWYIlr2fsjFI4BcM-YLSxvL9cMqV1Q"}
REQUIRED = {
    "from", "to", "subject", "date", "message-id", "list-id", "list-unsubscribe",
    "list-unsubscribe-post",
}  # fmt: skip


def pem_of(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture(scope="module")
def key_pem() -> bytes:
    return pem_of(rsa.generate_private_key(public_exponent=65537, key_size=2048))


def resolver(signer: DkimSigner):
    """dkimpy's ``dnsfunc``: the TXT record of ``signer``'s selector, nothing else."""
    name, value = dns_record(signer)

    def txt(query: bytes, timeout: float = 5) -> bytes | None:
        return value.encode() if query.decode().rstrip(".") == name else None

    return txt


def project(folder: Path, key_pem: bytes, extra: str = "") -> Path:
    shutil.copytree(SAMPLES, folder / "digests")
    (folder / "subscribers.yaml").write_text(PROFILES)
    (folder / "dkim.pem").write_bytes(key_pem)
    (folder / "config.yaml").write_text(
        "sender: Research digest <digest@example.org>\n"
        "public_url: https://digest.example.org\n"
        "dkim:\n  domain: example.org\n  selector: mail2026\n  private_key_file: dkim.pem\n" + extra
    )
    return folder / "config.yaml"


def tags(message: bytes) -> dict[str, str]:
    # (mailbox gives the file's lines with LF ends; a message as sent has CRLF)
    header = message.replace(b"\r\n", b"\n").split(b"\n\n")[0].decode()
    start = header.index("DKIM-Signature:") + len("DKIM-Signature:")
    value = header[start:].split("\n")
    folded = itertools.takewhile(lambda line: line[:1] in (" ", "\t"), value[1:])
    field = value[0] + "".join(folded)
    pairs = (part.strip().split("=", 1) for part in field.split(";") if part.strip())
    return {key.strip(): "".join(val.split()) for key, val in pairs}


def outbox(folder: Path) -> list[bytes]:
    return [bytes(m) for m in mailbox.Maildir(folder / "outbox", create=False)]


def test_every_digest_is_signed_and_verifies(tmp_path: Path, key_pem: bytes) -> None:
    config = project(tmp_path, key_pem)
    result = invoke(config, "send", "--now", environ=SECRET)
    assert result.exit_code == 0, result.output
    signer = DkimSigner("example.org", "mail2026", key_pem)
    messages = outbox(tmp_path)
    assert len(messages) == 3
    for message in messages:
        assert dkim.verify(message, dnsfunc=resolver(signer))
        signed = tags(message)
        assert set(signed["h"].split(":")) >= REQUIRED
        assert signed["d"] == "example.org" and signed["s"] == "mail2026"
        assert signed["t"] == str(int(NOW.timestamp()))  # the digest's Date


def test_a_changed_or_added_header_breaks_the_signature(tmp_path: Path, key_pem: bytes) -> None:
    config = project(tmp_path, key_pem)
    assert invoke(config, "send", "--now", environ=SECRET).exit_code == 0
    signer = DkimSigner("example.org", "mail2026", key_pem)
    message = outbox(tmp_path)[0]
    assert dkim.verify(message, dnsfunc=resolver(signer))
    changed = message.replace(b"Subject: ", b"Subject: Re: ", 1)
    assert not dkim.verify(changed, dnsfunc=resolver(signer))
    added = b"List-Unsubscribe-Post: List-Unsubscribe=Two-Clicks\r\n" + message
    assert not dkim.verify(added, dnsfunc=resolver(signer))
    other = DkimSigner("example.org", "mail2026", pem_of(rsa.generate_private_key(65537, 2048)))
    assert not dkim.verify(message, dnsfunc=resolver(other))  # (the stub can say no)


def test_a_resend_of_a_pending_digest_is_signed_as_it_was(tmp_path: Path, key_pem: bytes) -> None:
    config = project(tmp_path, key_pem)
    signer = DkimSigner("example.org", "mail2026", key_pem)
    with SmtpServer() as server:
        text = config.read_text()
        config.write_text(
            text + "delivery: smtp\nsmtp: {host: 127.0.0.1, port: " + str(server.port) + ", "
            "security: none, max_attempts: 1, retry_delay: 0}\n"
        )
        server.sink.refuse["ada@example.org"] = (451, "try again later", 1)
        first = invoke(config, "send", "--now", "--json", environ=SECRET)
        assert [f["subscriber"] for f in json.loads(first.stdout)["failed"]] == ["ada@example.org"]
        later = NOW + timedelta(hours=3)
        again = invoke(config, "send", "--now", "--json", environ=SECRET, now=later)
        (resent,) = json.loads(again.stdout)["sent"]
        assert resent["subscriber"] == "ada@example.org" and resent["resent"]
        (_, _, data) = next(m for m in server.sink.messages if m[1] == ["ada@example.org"])
    assert dkim.verify(data, dnsfunc=resolver(signer))
    assert tags(data)["t"] == str(int(NOW.timestamp()))  # dated as first composed


def test_the_signer_travels_to_render_workers_as_its_key(key_pem: bytes) -> None:
    signer = DkimSigner("example.org", "mail2026", key_pem)
    message = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nbody\r\n"
    when = datetime(2026, 3, 12, tzinfo=UTC)
    copy = pickle.loads(pickle.dumps(signer))
    assert copy.sign(message, when) == signer.sign(message, when)
    assert dkim.verify(copy.sign(message, when), dnsfunc=resolver(signer))


def test_the_key_can_come_from_the_environment(tmp_path: Path, key_pem: bytes) -> None:
    settings = DkimSettings("example.org", "mail2026", private_key_env="DKIM_KEY")
    signer = make_dkim_signer(settings, {"DKIM_KEY": key_pem.decode()})
    assert signer is not None and signer.pem == key_pem
    with pytest.raises(ConfigError, match=r"\$DKIM_KEY is empty"):
        make_dkim_signer(settings, {})


def test_validate_prints_the_record_to_publish(tmp_path: Path, key_pem: bytes) -> None:
    result = invoke(project(tmp_path, key_pem), "validate", environ=SECRET)
    assert result.exit_code == 0, result.output
    assert "publish TXT mail2026._domainkey.example.org:" in result.output
    assert "v=DKIM1; k=rsa; p=MII" in result.output


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("domain: example.org", "domain: example.net", "does not align with the sender's domain"),
        ("private_key_file: dkim.pem", "private_key_file: missing.pem", "missing.pem: cannot read"),
        ("selector: mail2026", "selector: 'mail 2026'", "'selector' is the label"),
        ("  selector: mail2026\n", "", "'dkim' needs a 'selector'"),
    ],
    ids=["unaligned", "no key file", "bad selector", "no selector"],
)
def test_validate_finds_dkim_mistakes(
    tmp_path: Path, key_pem: bytes, old: str, new: str, expected: str
) -> None:
    config = project(tmp_path, key_pem)
    config.write_text(config.read_text().replace(old, new))
    result = invoke(config, "validate", environ=SECRET)
    assert result.exit_code != 0
    assert expected in result.output


def test_a_subdomain_aligns(tmp_path: Path, key_pem: bytes) -> None:
    config = project(tmp_path, key_pem)
    config.write_text(config.read_text().replace("domain: example.org", "domain: mail.example.org"))
    assert invoke(config, "validate", environ=SECRET).exit_code == 0


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"not a key", "not an unencrypted PEM private key"),
        (pem_of(ed25519.Ed25519PrivateKey.generate()), "must be an RSA key"),
    ],
)
def test_a_key_file_that_is_no_rsa_key_is_refused(
    tmp_path: Path, key_pem: bytes, content: bytes, expected: str
) -> None:
    config = project(tmp_path, key_pem)
    (tmp_path / "dkim.pem").write_bytes(content)
    result = invoke(config, "validate", environ=SECRET)
    assert result.exit_code != 0 and expected in result.output
    assert str(tmp_path / "dkim.pem") in result.output


def test_a_test_copy_is_signed_again_and_verifies(tmp_path: Path, key_pem: bytes) -> None:
    config = project(tmp_path, key_pem, "bounce_address: bounces@example.org\n")
    invoke(config, "ingest")
    args = ("send", "--to", "me@example.org", "--subscriber", "ada@example.org")
    result = invoke(config, *args, environ=SECRET)
    assert result.exit_code == 0, result.output
    (message,) = outbox(tmp_path)
    assert b"\nSubject: [test] " in message
    assert message.count(b"DKIM-Signature:") == 1  # the digest's own, with its subject, is gone
    assert dkim.verify(message, dnsfunc=resolver(DkimSigner("example.org", "mail2026", key_pem)))
    # its bounces go to the sender, never counted against the subscriber (no VERP)
    assert message.startswith(b"Return-Path: <digest@example.org>\n")
