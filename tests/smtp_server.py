"""A real SMTP server on loopback (aiosmtpd) that records what it accepts, with knobs for
the failures delivery must survive."""

from __future__ import annotations

import email
import socket
import ssl
import threading
from dataclasses import dataclass, field
from email import policy

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Sink:
    """The handler: accepted messages, plus refusal rules."""

    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    refuse: dict[str, tuple[int, str, int]] = field(
        default_factory=dict
    )  # rcpt -> code, text, times
    drop_at: int | None = None  # close the connection without a reply on this DATA, once
    delay: float = 0.0  # seconds to think before accepting each message
    lock: threading.Lock = field(default_factory=threading.Lock)
    datas: int = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            rule = self.refuse.get(address)
            if rule and rule[2] != 0:
                code, text, times = rule
                self.refuse[address] = (code, text, times - 1)
                return f"{code} {text}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.datas += 1
            if self.drop_at is not None and self.datas == self.drop_at:
                self.drop_at = None
                server.transport.close()
                return "421 dropped"
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"

    def parsed(self) -> list[email.message.EmailMessage]:
        with self.lock:
            return [email.message_from_bytes(m[2], policy=policy.default) for m in self.messages]

    def recipients(self) -> list[str]:
        with self.lock:
            return [rcpt for _, rcpts, _ in self.messages for rcpt in rcpts]


class SmtpServer:
    """Start/stop an aiosmtpd server on 127.0.0.1 with the given options."""

    def __init__(
        self,
        sink: Sink | None = None,
        tls_context: ssl.SSLContext | None = None,
        credentials: tuple[str, str] | None = None,
        smtputf8: bool = True,
    ) -> None:
        self.sink = sink or Sink()
        self.port = free_port()
        options: dict[str, object] = {"enable_SMTPUTF8": smtputf8}
        if tls_context is not None:
            options.update(tls_context=tls_context, require_starttls=True)
        if credentials is not None:
            options.update(
                authenticator=_Authenticator(*credentials),
                auth_required=True,
                auth_require_tls=tls_context is not None,
            )
        self.controller = Controller(
            self.sink, hostname="127.0.0.1", port=self.port, server_hostname="localhost", **options
        )

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


class _Authenticator:
    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user.encode(), password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        good = isinstance(auth_data, LoginPassword) and (
            auth_data.login == self.user and auth_data.password == self.password
        )
        return AuthResult(success=good, handled=False)


class SilentServer:
    """Accepts TCP connections and never says a word (for timeouts)."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(8)
        self.port = self.socket.getsockname()[1]
        self.clients: list[socket.socket] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        self.socket.settimeout(0.1)
        while not self.stopping.is_set():
            try:
                client, _ = self.socket.accept()
                self.clients.append(client)
            except TimeoutError:
                continue
            except OSError:
                return

    def __enter__(self) -> SilentServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join()
        for client in self.clients:
            client.close()
        self.socket.close()
