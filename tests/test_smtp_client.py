"""The SMTP client's DATA: dots stuffed with ``bytes.replace`` (smtplib's regular expression
held the GIL 63 us a digest), the same bytes on the wire as smtplib's own."""

from __future__ import annotations

import re
import ssl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.config.settings import SmtpSettings
from newsletter.delivery.smtp import SmtpTransport, stuffed
from newsletter.delivery.transport import Outgoing
from newsletter.errors import DeliveryFailure
from newsletter.models import Envelope
from tests.smtp_server import ScriptedServer, SmtpServer


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
    return SmtpTransport(SmtpSettings(**(options | settings)), {})


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

    from tests.smtp_server import Sink, free_port

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
