"""A real SMTP server on loopback (aiosmtpd) that records what it accepts, with knobs for
the failures delivery must survive."""

from __future__ import annotations

import asyncio
import email
import socket
import ssl
import struct
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
    refuse_data: dict[str, str] = field(default_factory=dict)  # rcpt -> reply after DATA
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
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            self.datas += 1
            if self.drop_at is not None and self.datas == self.drop_at:
                self.drop_at = None
                server.transport.close()
                return "421 dropped"
            for rcpt in envelope.rcpt_tos:
                if rcpt in self.refuse_data:
                    return self.refuse_data[rcpt]
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


class _RawServer:
    """A TCP server on loopback that hands each client to ``_handle``."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(8)
        self.port = self.socket.getsockname()[1]
        self.clients: list[socket.socket] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def connections(self) -> int:
        """How many clients have connected so far."""
        return len(self.clients)

    def _accept(self) -> None:
        self.socket.settimeout(0.1)
        while not self.stopping.is_set():
            try:
                client, _ = self.socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.clients.append(client)
            self._handle(client)

    def _handle(self, client: socket.socket) -> None:
        """Keep the client and say nothing."""

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join()
        for client in self.clients:
            client.close()
        self.socket.close()


class SilentServer(_RawServer):
    """Accepts TCP connections and never says a word (for timeouts)."""


class ScriptedServer(_RawServer):
    """A raw SMTP server that misbehaves on purpose: it greets with ``greeting``, answers each
    command from ``replies`` (by verb; "250 OK" otherwise) and sends every reply
    ``drip`` seconds per byte (a server that never trips a socket timeout). An empty reply
    is silence; after its reply to ``reset_after``, it resets the connection (RST)."""

    def __init__(
        self,
        greeting: str = "220 scripted",
        replies: dict[str, str] | None = None,
        drip=0.0,
        reset_after: str | None = None,
    ) -> None:
        super().__init__()
        self.greeting = greeting
        self.replies = {"DATA": "354 go ahead", **(replies or {})}
        self.drip = drip
        self.reset_after = reset_after
        self.commands: list[str] = []
        self.lines: list[str] = []  # each command as it came

    def _handle(self, client: socket.socket) -> None:
        threading.Thread(target=self._converse, args=(client,), daemon=True).start()

    def _say(self, client: socket.socket, line: str) -> None:
        if not line:
            self.stopping.wait()  # silence until the server stops
            return
        data = (line + "\r\n").encode()
        if not self.drip:
            client.sendall(data)
            return
        for byte in data:
            if self.stopping.wait(self.drip):
                return
            client.sendall(bytes([byte]))

    def _converse(self, client: socket.socket) -> None:
        with client, client.makefile("rb") as lines:
            try:
                self._say(client, self.greeting)
                for raw in lines:
                    command = raw.decode(errors="replace").strip()
                    verb = command.split(" ", 1)[0].upper()
                    self.commands.append(verb)
                    self.lines.append(command)
                    if verb == "DATA":
                        self._say(client, self.replies["DATA"])
                        if not self.replies["DATA"].startswith("354"):
                            continue  # (refused: no message follows)
                        for body in lines:
                            if body in (b".\r\n", b".\n"):
                                break
                        self._say(client, self.replies.get("DATA-END", "250 accepted"))
                        continue
                    self._say(client, self.replies.get(verb, "250 OK"))
                    if verb == "QUIT":
                        return
                    if verb == self.reset_after:
                        linger = struct.pack("ii", 1, 0)  # close with RST, not FIN
                        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                        return
            except OSError:
                return
