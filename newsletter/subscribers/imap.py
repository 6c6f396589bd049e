"""The bounce mailbox on an IMAP server (``bounce.imap``): its unseen messages, each marked
seen once acted on, as a Maildir's are (imaplib does the protocol; the certificate is
verified, as for SMTP)."""

from __future__ import annotations

import contextlib
import imaplib
import socket
import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from newsletter.config.settings import ImapSettings
from newsletter.errors import ConfigError, MailboxError


class ImapMailbox:
    """One folder of one IMAP account, read for its unseen messages."""

    def __init__(self, settings: ImapSettings, environ: Mapping[str, str]) -> None:
        if not settings.host or not settings.username or not settings.password_env:
            raise ConfigError("bounce.imap needs 'host', 'username' and 'password_env'")
        password = environ.get(settings.password_env, "")
        if not password:
            raise ConfigError(
                f"bounce.imap.password_env is {settings.password_env} but ${settings.password_env}"
                " is empty: set it to the password of the bounce mailbox"
            )
        self.settings = settings
        self.password = password
        self.host = settings.host
        self.port = settings.effective_port
        self.where = f"imap://{settings.username}@{self.host}:{self.port}/{settings.folder}"

    def messages(self) -> Iterator[tuple[str, bytes]]:
        """(where, bytes) of each unseen message; each is marked seen once the reader asks
        for the next (a message whose decision failed is read again next time)."""
        with self._session() as imap:
            for uid in self._unseen(imap):
                data = self._fetched(imap, uid)
                if data is None:
                    continue  # (expunged meanwhile by another reader)
                yield f"{self.where};UID={uid}", data
                self._checked(imap.uid("STORE", uid, "+FLAGS", "(\\Seen)"), "mark it seen")

    @contextmanager
    def _session(self) -> Iterator[imaplib.IMAP4]:
        imap = self._connected()
        try:
            self._login(imap)
            status, answer = imap.select(_quoted(self.settings.folder))
            if status != "OK":
                raise MailboxError(
                    f"{self.where}: the server has no folder {self.settings.folder!r} "
                    f"({_said(answer)}): fix bounce.imap.folder"
                )
            yield imap
        except (OSError, imaplib.IMAP4.error, EOFError) as exc:
            raise MailboxError(f"{self.where}: {_described(exc)}") from exc
        finally:
            with contextlib.suppress(OSError, imaplib.IMAP4.error, EOFError):
                imap.logout()  # (a connection gone already has nothing to close)

    def _connected(self) -> imaplib.IMAP4:
        settings, timeout = self.settings, self.settings.timeout
        try:
            if settings.security == "ssl":
                return imaplib.IMAP4_SSL(
                    self.host, self.port, ssl_context=self._context(), timeout=timeout
                )
            imap = imaplib.IMAP4(self.host, self.port, timeout=timeout)
            if settings.security == "starttls":
                imap.starttls(self._context())
            return imap
        except ssl.SSLCertVerificationError as exc:
            raise MailboxError(
                f"{self.where}: its certificate is not trusted ({exc.verify_message}): set "
                "bounce.imap.ca_file to your CA's certificate"
            ) from exc
        except (OSError, imaplib.IMAP4.error, EOFError) as exc:
            raise MailboxError(f"{self.where}: {_described(exc)}") from exc

    def _context(self) -> ssl.SSLContext:
        cafile = str(self.settings.ca_file) if self.settings.ca_file else None
        return ssl.create_default_context(cafile=cafile)

    def _login(self, imap: imaplib.IMAP4) -> None:
        try:
            imap.login(self.settings.username or "", self.password)
        except imaplib.IMAP4.error as exc:
            raise MailboxError(
                f"{self.where}: the server refused the login ({_said([exc.args[0]])}): check "
                f"bounce.imap.username and ${self.settings.password_env}"
            ) from exc

    def _unseen(self, imap: imaplib.IMAP4) -> list[str]:
        answer = self._checked(imap.uid("SEARCH", "UNSEEN"), "search it")
        return [uid.decode("ascii") for uid in (answer[0] or b"").split()]

    def _fetched(self, imap: imaplib.IMAP4, uid: str) -> bytes | None:
        answer = self._checked(imap.uid("FETCH", uid, "(BODY.PEEK[])"), "fetch a message")
        for part in answer:
            if isinstance(part, tuple) and len(part) == 2:
                return bytes(part[1])
        return None

    def _checked(self, reply: tuple[str, list], what: str) -> list:
        status, answer = reply
        if status != "OK":
            raise MailboxError(f"{self.where}: the server would not {what} ({_said(answer)})")
        return answer


def _quoted(folder: str) -> str:
    """A folder name as an IMAP string (names with spaces are common: "Bounce mail")."""
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _said(answer: list) -> str:
    """The server's words, as text."""
    words = [a.decode("utf-8", "replace") if isinstance(a, bytes) else str(a) for a in answer]
    return " ".join(w for w in words if w).strip() or "no reason given"


def _described(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "the server did not answer in time (bounce.imap.timeout)"
    if isinstance(exc, ConnectionRefusedError):
        return "nothing listens there: check bounce.imap.host and port"
    if isinstance(exc, socket.gaierror):
        return "no such host: check bounce.imap.host"
    if isinstance(exc, ssl.SSLError):
        return (
            f"the TLS handshake failed ({exc.reason or exc}): check bounce.imap.security and port"
        )
    return f"{type(exc).__name__}: {exc}"
