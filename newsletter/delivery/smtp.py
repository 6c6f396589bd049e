"""Delivery to an SMTP server: certificates verified, STARTTLS required when configured,
each failure told apart (refused login, untrusted certificate, busy server, refused
recipient) with what to check."""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
from collections.abc import Mapping
from email.utils import parseaddr

from newsletter.config.settings import Config, SmtpSettings
from newsletter.delivery.transport import Connection, Outgoing, Transport, TransportKind
from newsletter.errors import DeliveryFailure as Failure
from newsletter.errors import FatalDeliveryError
from newsletter.files.yamlfile import load_yaml

AUTH_HINT = "use an app password or the provider's SMTP authorization code"


class SmtpTransport(Transport):
    """An SMTP server; certificates verified, STARTTLS required when configured."""

    rate_limited = True

    def __init__(self, settings: SmtpSettings, environ: Mapping[str, str], helo_name: str) -> None:
        self.settings = settings
        self.helo_name = helo_name
        self.parallel = settings.connections
        self.message_timeout = settings.message_timeout
        self.where = f"{settings.host}:{settings.effective_port}"
        self.password = (
            environ.get(settings.password_env or "", "") if settings.password_env else ""
        )
        if settings.username and settings.password_env and not self.password:
            raise FatalDeliveryError(
                f"${settings.password_env} is empty; export the SMTP password in that variable"
            )

    def tls_context(self) -> ssl.SSLContext:
        """Verifying context (smtplib verifies nothing by default), with ``ca_file`` if set."""
        cafile = str(self.settings.ca_file) if self.settings.ca_file else None
        return ssl.create_default_context(cafile=cafile)

    def connect(self) -> _SmtpConnection:
        """A connection that opens on first use (so that the whole conversation, greeting
        and login included, runs where the pool's watchdog can cut it)."""
        return _SmtpConnection(self)

    def new_client(self) -> smtplib.SMTP:
        """An smtplib client, not connected yet."""
        settings = self.settings
        name = self.helo_name
        client = (
            _SslClient(local_hostname=name, timeout=settings.timeout, context=self.tls_context())
            if settings.security == "ssl"
            else _Client(local_hostname=name, timeout=settings.timeout)
        )
        # The name TLS verifies the certificate against; smtplib sets it only when given the
        # host up front, which would connect at once.
        client._host = settings.host  # type: ignore[attr-defined]
        return client

    def open(self, client: smtplib.SMTP) -> None:
        """Connect ``client``: greeting, STARTTLS, login; FatalDeliveryError or Failure when
        it cannot."""
        settings = self.settings
        try:
            code, greeting = client.connect(settings.host, settings.effective_port)
            if code != 220:  # (smtplib checks this only when given the host up front)
                raise smtplib.SMTPConnectError(code, greeting)
            # Many small writes per message: do not let Nagle hold them back.
            client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if settings.security == "starttls":
                _greet(client, self.where)
                if not client.has_extn("starttls"):
                    client.close()
                    raise FatalDeliveryError(
                        f"{self.where} does not offer STARTTLS; refusing to send in plain text "
                        "(set smtp.security: ssl or none if that is really intended)"
                    )
                self._starttls(client)
            if settings.username:
                client.login(settings.username, self.password)
        except smtplib.SMTPAuthenticationError as exc:
            raise FatalDeliveryError(
                f"{self.where} refused the login for {settings.username!r} "
                f"({exc.smtp_code} {_text(exc.smtp_error)}); {AUTH_HINT}"
            ) from exc
        except ssl.SSLCertVerificationError as exc:
            raise FatalDeliveryError(
                f"{self.where}: the server's certificate is not trusted ({exc.verify_message}); "
                "set smtp.ca_file to your CA's certificate"
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            client.close()
            problem = self._connect_problem(exc)
            code = getattr(exc, "smtp_code", None)  # a refusing greeting (421 busy) has one
            raise Failure(
                f"cannot connect to {self.where}: {problem}", code, False, reconnect=True
            ) from exc

    def _starttls(self, client: smtplib.SMTP) -> None:
        """STARTTLS and EHLO again; a handshake the server breaks off says what to try."""
        try:
            client.starttls(context=self.tls_context())
        except ssl.SSLCertVerificationError:
            raise
        except (ssl.SSLError, OSError, smtplib.SMTPServerDisconnected) as exc:
            client.close()
            raise Failure(
                f"cannot connect to {self.where}: the TLS handshake after STARTTLS failed "
                f"({_describe(exc)}): if this port expects TLS from the start (usually 465), "
                "set security: ssl; if not, the server's TLS set-up is broken (tell its "
                "administrator) or something on the way interferes",
                None,
                False,
                reconnect=True,
            ) from exc
        client.ehlo()

    def describe(self) -> str:
        """What a successful ``connect`` did, for ``validate --connect``."""
        settings = self.settings
        security = {"ssl": "TLS", "starttls": "STARTTLS", "none": "no encryption"}
        login = f"logged in as {settings.username!r}" if settings.username else "no login"
        return f"{self.where}: connected, {security[settings.security]}, {login}"

    def _connect_problem(self, exc: BaseException) -> str:
        """What went wrong while connecting, and what to check."""
        settings, port = self.settings, self.settings.effective_port
        if isinstance(exc, ssl.SSLError) and settings.security == "ssl":
            return (
                f"the TLS handshake failed: the server does not start with TLS on port {port}; "
                "use security: starttls (usually port 587) or security: none (port 25)"
            )
        if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):
            # (smtplib turns a timeout while reading the greeting into "disconnected")
            tls = (
                ""
                if settings.security == "ssl"
                else ("if this port expects TLS from the start (465), set security: ssl; ")
            )
            return (
                f"the server did not answer within {settings.timeout} s: {tls}check the host "
                "and port, and that no firewall blocks the connection"
            )
        if isinstance(exc, ConnectionRefusedError):
            return f"the connection was refused: nothing listens on port {port}; check the port"
        if isinstance(exc, socket.gaierror):
            return f"cannot find the host {settings.host!r} ({exc.strerror}); check smtp.host"
        if isinstance(exc, smtplib.SMTPConnectError):
            return (
                f"the server refused the session ({exc.smtp_code} {_text(exc.smtp_error)}); "
                "it is busy or limits connections: the message is tried again later"
            )
        return _describe(exc)


def stuffed(data: bytes) -> bytes:
    """``data`` as DATA sends it (RFC 5321 4.5.2): a dot doubled at the start of each line,
    the whole ended by CRLF . CRLF; as smtplib sends it, built with ``bytes.replace``."""
    if b"\n." in data:
        data = data.replace(b"\n.", b"\n..")
    if data[:1] == b".":
        data = b"." + data
    return data + (b".\r\n" if data[-2:] == b"\r\n" else b"\r\n.\r\n")


class _Client(smtplib.SMTP):
    """smtplib's client, its DATA stuffed by ``stuffed``: smtplib's regular expression for
    the dots (``(?m)^\\.``) took 63 us of a 16 KB digest with the GIL held, as much as the
    rest of the client's work, and the connections' threads share the GIL with the run
    (bench/send.py; BENCHMARKS.md). The bytes on the wire are the same."""

    def data(self, msg: bytes) -> tuple[int, bytes]:  # type: ignore[override]
        """DATA: ``msg`` (bytes with CRLF line ends, as ``render`` makes them; ``sendmail``
        encodes a text message before it calls this) sent dot-stuffed; the server's reply
        (SMTPDataError unless 354 came first)."""
        self.putcmd("data")
        code, reply = self.getreply()
        if code != 354:
            raise smtplib.SMTPDataError(code, reply)
        self.send(stuffed(msg))
        try:
            return self.getreply()
        except smtplib.SMTPServerDisconnected as exc:
            if isinstance(exc.__context__, TimeoutError):
                raise NoReplyAfterData(self.timeout) from exc
            raise


class NoReplyAfterData(smtplib.SMTPServerDisconnected):
    """The whole message went out and no reply came within the socket timeout: the server
    may have taken it (smtplib calls this "Connection unexpectedly closed: timed out")."""

    def __init__(self, timeout: float) -> None:
        super().__init__(
            f"the server did not reply within {timeout:g} s after the message (end of DATA); "
            "it may have taken it: the digest stays pending and the next run sends it again "
            "with the same Message-ID, so a copy, if any, is the same message"
        )


class _SslClient(smtplib.SMTP_SSL):
    """``_Client`` over TLS from the start (security: ssl)."""

    data = _Client.data


def _greet(client: smtplib.SMTP, where: str) -> None:
    """EHLO; a server that refuses it (421: busy, shutting down) is not one that lacks
    STARTTLS: that is a transient failure with its code."""
    code, reply = client.ehlo()
    if code != 250:
        client.close()
        raise Failure(
            f"cannot connect to {where}: the server refused EHLO ({code} {_text(reply)}); "
            "the message is tried again later",
            code,
            permanent=False,
            reconnect=True,
        )


class _SmtpConnection(Connection):
    def __init__(self, transport: SmtpTransport) -> None:
        self.transport = transport
        self.where = transport.where
        self.client = transport.new_client()
        self.opened = False

    def open(self) -> _SmtpConnection:
        """Connect, if not yet connected."""
        if not self.opened:
            self.transport.open(self.client)
            self.opened = True
        return self

    def send(self, outgoing: Outgoing) -> None:
        self.open()
        envelope = outgoing.envelope
        options = ["SMTPUTF8"] if envelope.smtputf8 else []
        if envelope.smtputf8 and not self._supports("smtputf8"):
            raise Failure(
                f"{self.where} does not offer SMTPUTF8, so it cannot take the non-ASCII address "
                f"{envelope.recipient}",
                None,
                permanent=True,
            )
        try:
            refused = self.client.sendmail(
                envelope.sender, [envelope.recipient], outgoing.data, mail_options=options
            )
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()))
            raise Failure(f"{code} {_text(reply)}", code, permanent=code >= 500) from exc
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
            raise Failure(
                f"{exc.smtp_code} {_text(exc.smtp_error)}", exc.smtp_code, exc.smtp_code >= 500
            ) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise Failure(
                f"{self.where} cannot take this address ({exc}); it needs SMTPUTF8",
                None,
                permanent=True,
            ) from exc
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPResponseException, OSError) as exc:
            raise Failure(_describe(exc), None, permanent=False, reconnect=True) from exc
        if refused:
            code, reply = next(iter(refused.values()))
            raise Failure(f"{code} {_text(reply)}", code, permanent=code >= 500)

    def abort(self) -> None:
        sock = self.client.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # the blocked read or write returns at once

    def _supports(self, extension: str) -> bool:
        try:
            self.client.ehlo_or_helo_if_needed()
        except (smtplib.SMTPException, OSError) as exc:
            raise Failure(_describe(exc), None, permanent=False, reconnect=True) from exc
        return self.client.has_extn(extension)

    def close(self) -> None:
        if not self.opened:
            self.client.close()
            return
        try:
            self.client.quit()
        except (smtplib.SMTPException, OSError):
            self.client.close()


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, NoReplyAfterData):
        return str(exc)
    if isinstance(exc, TimeoutError | socket.timeout) or isinstance(exc.__context__, TimeoutError):
        return "timed out waiting for the server's reply"
    if isinstance(exc, ConnectionResetError) or isinstance(exc.__context__, ConnectionResetError):
        return "the server reset the connection"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return f"the server closed the connection ({exc})"
    return f"{type(exc).__name__}: {exc}"


def _make(config: Config, environ: Mapping[str, str]) -> SmtpTransport:
    return SmtpTransport(config.smtp, environ, helo_name(config))


def helo_name(config: Config) -> str:
    """The name EHLO gives: ``smtp.helo_name``, else this host's FQDN when it has a dot,
    else the sender's domain (smtplib would say ``[127.0.0.1]`` on a host whose name
    resolves to localhost)."""
    if config.smtp.helo_name:
        return config.smtp.helo_name
    fqdn = socket.getfqdn()
    if "." in fqdn and not fqdn.startswith("localhost"):
        return fqdn
    return parseaddr(config.render.sender)[1].rpartition("@")[2] or "localhost.localdomain"


def _setup_problems(config: Config, environ: Mapping[str, str]) -> list[str]:
    """A password variable named in the config but not set here."""
    smtp = config.smtp
    if not smtp.password_env or environ.get(smtp.password_env):
        return []
    where = load_yaml(config.path).where(("smtp", "password_env"))
    return [
        f"{where}: ${smtp.password_env} is not set: export the SMTP password in that "
        "variable for every send (and for newsletter run)"
    ]


def try_connection(config: Config, environ: Mapping[str, str]) -> str:
    """Connect to the configured SMTP server (TLS and login included; nothing is sent) and
    say what happened; a DeliveryError says what failed and what to check."""
    transport = SmtpTransport(config.smtp, environ, helo_name(config))
    transport.connect().open().close()
    return transport.describe()


KIND = TransportKind(
    "smtp",
    _make,
    rate_limited=True,
    waits_on_server=True,
    section="smtp",
    section_hint="host, ...",
    setup_problems=_setup_problems,
    try_connection=try_connection,
)
