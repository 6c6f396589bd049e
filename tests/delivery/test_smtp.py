"""The SMTP client's DATA: dots stuffed with ``bytes.replace`` (smtplib's regular expression
held the GIL 63 us a digest), the same bytes on the wire as smtplib's own."""

from __future__ import annotations

import json
import re
import shutil
import socket
import ssl
from pathlib import Path

import pytest
import trustme
from hypothesis import given
from hypothesis import strategies as st

from newsletter.config.settings import SmtpSettings
from newsletter.delivery.smtp import SmtpTransport, stuffed
from newsletter.delivery.transport import Outgoing
from newsletter.errors import DeliveryFailure
from newsletter.ledger.ledger import Ledger
from newsletter.models import Envelope
from newsletter.store.sqlite import open_store
from tests.config.test_validate import validate_config
from tests.helpers import SAMPLES, invoke
from tests.shop import SHOP_PROFILES, send_now, smtp_config
from tests.smtp_server import ScriptedServer, SilentServer, Sink, SmtpServer


def smtplib_sends(data: bytes) -> bytes:
    """What smtplib's ``data`` puts on the wire for ``data`` (its own regular expression)."""
    quoted = re.sub(rb"(?m)^\.", b"..", data)
    if quoted[-2:] != b"\r\n":
        quoted += b"\r\n"
    return quoted + b".\r\n"


LINES = st.lists(
    st.sampled_from([b".", b"..", b".x", b"x.", b"", b"a.b", b" .", b"\r", b"\r."]), max_size=12
)


@given(LINES, st.sampled_from([b"\r\n", b"\n", b"\r"]), st.booleans())
def test_stuffed_is_what_smtplib_sends(lines: list[bytes], end: bytes, last: bool) -> None:
    data = end.join(lines) + (end if last else b"")
    assert stuffed(data) == smtplib_sends(data)


@given(st.binary(max_size=200))
def test_stuffed_is_what_smtplib_sends_for_any_bytes(data: bytes) -> None:
    assert stuffed(data) == smtplib_sends(data)


def outgoing(data: bytes, recipient: str = "reader@example.org") -> Outgoing:
    return Outgoing("<id@example.org>", recipient, Envelope("digest@example.org", recipient), data)


DOTTED = (
    b"Subject: dots\r\n\r\n.\r\n..\r\n.hidden line\r\nmiddle . dot\r\n"
    b"...three\r\n.\r\nend without a line break"
)


def transport(port: int, **settings: object) -> SmtpTransport:
    options: dict = {"host": "127.0.0.1", "port": port, "security": "none", "timeout": 5}
    return SmtpTransport(SmtpSettings(**(options | settings)), {}, "test.example.org")


def test_lines_of_dots_arrive_as_written() -> None:
    """aiosmtpd takes the dots off again: what it records is the message as rendered."""
    with SmtpServer() as server:
        connection = transport(server.port).connect()
        try:
            connection.send(outgoing(DOTTED))
            connection.send(outgoing(b".first\r\n", "second@example.org"))
        finally:
            connection.close()
    contents = [content for _, _, content in server.sink.messages]
    assert contents == [DOTTED + b"\r\n", b".first\r\n"]


def test_lines_of_dots_arrive_over_tls_from_the_start(tmp_path) -> None:
    """security: ssl goes through the TLS client, with the same DATA."""
    trustme = pytest.importorskip("trustme")
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    from aiosmtpd.controller import Controller

    from tests.smtp_server import free_port

    sink, port = Sink(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, ssl_context=context)
    controller.start()
    try:
        settings = {"security": "ssl", "ca_file": tmp_path / "ca.pem"}
        connection = transport(port, **settings).connect()
        try:
            connection.send(outgoing(DOTTED))
        finally:
            connection.close()
    finally:
        controller.stop()
    assert [content for _, _, content in sink.messages] == [DOTTED + b"\r\n"]


@pytest.mark.parametrize(
    ("replies", "code", "permanent"),
    [
        ({"DATA": "554 no data for you"}, 554, True),  # refused before the message
        ({"DATA-END": "452 out of room, later"}, 452, False),  # refused after it
    ],
)
def test_a_refused_data_fails_with_the_servers_code(replies, code, permanent) -> None:
    with ScriptedServer(replies=replies) as server:
        connection = transport(server.port).connect()
        try:
            with pytest.raises(DeliveryFailure) as failure:
                connection.send(outgoing(DOTTED))
        finally:
            connection.close()
    assert failure.value.code == code and failure.value.permanent is permanent
    assert "DATA" in server.commands


def test_a_421_to_ehlo_under_starttls_is_a_transient_failure_with_its_code(shop: Path) -> None:
    with ScriptedServer(replies={"EHLO": "421 4.3.2 too busy, come back later"}) as server:
        smtp_config(shop, server.port, security="starttls")
        result = send_now(shop, "--json")
    assert result.exit_code == 1, result.output
    failed = json.loads(result.stdout)["failed"]
    assert {f["code"] for f in failed} == {421} and not any(f["permanent"] for f in failed)
    assert all("refused EHLO (421" in f["error"] for f in failed)
    assert not any("STARTTLS" in f["error"] for f in failed)


def test_a_421_greeting_is_reported_with_its_code(shop: Path) -> None:
    with ScriptedServer(greeting="421 4.7.0 too many connections from your host") as server:
        smtp_config(shop, server.port)
        result = send_now(shop, "--json")
    assert result.exit_code == 1, result.output
    failed = json.loads(result.stdout)["failed"]
    assert {f["code"] for f in failed} == {421}
    assert all("refused the session (421" in f["error"] for f in failed)


def test_a_server_that_drips_a_byte_at_a_time_is_cut_at_the_message_deadline(shop: Path) -> None:
    with ScriptedServer(drip=0.2) as server:  # each reply takes seconds; no timeout trips
        smtp_config(shop, server.port, timeout=5, message_timeout=2, connections=1)
        (shop / "subscribers.yaml").write_text(SHOP_PROFILES.split("  - email: grace")[0])
        result = send_now(shop, "--json")
    assert result.exit_code == 1, result.output
    (failed,) = json.loads(result.stdout)["failed"]
    assert "took longer than 2 s in all (smtp.message_timeout)" in failed["error"]
    assert not failed["permanent"]
    with open_store(shop / "state") as store:
        (pending,) = Ledger(store).pending()  # kept for the next run
    assert pending.subscriber == "ada@example.org"


def test_validate_connect_logs_in_over_starttls_and_sends_nothing(tmp_path: Path) -> None:
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(authority.cert_pem.bytes())
    with SmtpServer(tls_context=context, credentials=("ada", "secret")) as server:
        config = validate_config(
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
        config = validate_config(
            tmp_path, host="127.0.0.1", port=server.port, security="ssl", timeout=2
        )
        result = invoke(config, "validate", "--connect")
    assert result.exit_code == 1
    assert f"127.0.0.1:{server.port}" in result.output
    assert "security: starttls" in result.output and "WRONG_VERSION_NUMBER" not in result.output


def test_a_port_that_never_answers_names_the_likely_causes(tmp_path: Path) -> None:
    shutil.copytree(SAMPLES, tmp_path / "digests")
    with SilentServer() as server:
        config = validate_config(
            tmp_path, host="127.0.0.1", port=server.port, security="none", timeout=1,
            max_attempts=1,
        )  # fmt: skip
        result = invoke(config, "send", "--now")
    assert result.exit_code == 1
    assert f"127.0.0.1:{server.port}" in result.output
    assert "did not answer within 1 s" in result.output
    assert "firewall" in result.output


def test_a_server_silent_after_the_message_is_a_reply_timeout_not_a_closed_connection(
    shop: Path,
) -> None:
    with ScriptedServer(replies={"DATA-END": ""}) as server:  # no reply to the final dot
        smtp_config(shop, server.port, timeout=1, connections=1)
        (shop / "subscribers.yaml").write_text(SHOP_PROFILES.split("  - email: grace")[0])
        result = send_now(shop, "--json")
    (failed,) = json.loads(result.stdout)["failed"]
    assert "closed the connection" not in failed["error"]
    assert "did not reply within 1 s after the message" in failed["error"], failed
    assert "same Message-ID" in failed["error"]  # what happens to it next
    assert not failed["permanent"]


def test_a_starttls_handshake_the_server_breaks_off_gets_a_hint(tmp_path: Path) -> None:
    replies = {"EHLO": "250-scripted\r\n250 STARTTLS", "STARTTLS": "220 go ahead"}
    with ScriptedServer(replies=replies, reset_after="STARTTLS") as server:
        config = validate_config(
            tmp_path, host="127.0.0.1", port=server.port, security="starttls", timeout=2
        )
        result = invoke(config, "validate", "--connect")
    assert result.exit_code == 1
    assert "ConnectionResetError" not in result.output
    assert "the TLS handshake after STARTTLS failed" in result.output, result.output
    assert "security: ssl" in result.output  # what to try


def test_the_greeting_names_the_configured_host_or_a_real_domain(shop: Path) -> None:
    other = shop.with_name(shop.name + "-other")  # (shop is the test's own folder)
    shutil.copytree(shop, other)
    with ScriptedServer() as server:
        smtp_config(shop, server.port, helo_name="mail.example.net", connections=1)
        assert send_now(shop).exit_code == 0
        assert server.lines[0] == "ehlo mail.example.net"
    fqdn = socket.getfqdn()
    with ScriptedServer() as server:
        smtp_config(other, server.port, connections=1)
        assert send_now(other).exit_code == 0
        assert server.lines[0] == f"ehlo {fqdn if '.' in fqdn else 'example.org'}"
        assert "[" not in server.lines[0]  # never an address literal


def test_a_greeting_name_that_is_no_domain_is_refused_with_its_line(tmp_path: Path) -> None:
    config = validate_config(tmp_path, host="mail", helo_name="'my host'")
    result = invoke(config, "validate")
    assert result.exit_code == 1
    assert "config.yaml:" in result.output and "'helo_name'" in result.output, result.output
    assert "is not a domain name" in result.output
