"""A private Dovecot IMAP server on loopback, in a temporary folder: one account, its
mail in a Maildir of the folder, plain logins on a loopback port (a real server: the
protocol, the flags and the folders as a provider's). Started as root it drops to
``nobody`` for the mail and to Dovecot's own users for the rest; as another user it runs
as that user."""

from __future__ import annotations

import getpass
import grp
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.smtp_server import free_port

DOVECOT = shutil.which("dovecot", path="/usr/sbin:/usr/bin:/sbin") or None


def missing_reason() -> str | None:
    """Why a private Dovecot cannot run here, or None when it can."""
    if DOVECOT is None:
        return "Dovecot is not installed (apt-get install dovecot-imapd; .ci/run does)"
    return None


class ImapServer:
    """Dovecot listening on 127.0.0.1:``port`` with the account ``user``/``password``."""

    def __init__(self, user: str = "bounces", password: str = "imap-secret-0") -> None:
        # Its own folder under the system's temporary one: Dovecot's users must walk into
        # it, and pytest's folders are private to root.
        self.folder = folder = Path(tempfile.mkdtemp(prefix="newsletter-dovecot-"))
        folder.chmod(0o755)
        self.port = free_port()
        self.user, self.password = user, password
        self.home = folder / "home" / user
        self.config = folder / "dovecot.conf"
        self.log = folder / "dovecot.log"
        self.process: subprocess.Popen[bytes] | None = None
        root = os.geteuid() == 0
        mail_user = "nobody" if root else getpass.getuser()
        uid = pwd.getpwnam(mail_user).pw_uid
        gid = pwd.getpwnam(mail_user).pw_gid
        self.home.mkdir(parents=True)
        for path in (self.home, self.home.parent):
            os.chown(path, uid, gid) if root else None
        (folder / "users").write_text(f"{user}:{{PLAIN}}{password}::::::\n")
        internal = "dovecot" if root else mail_user
        login = "dovenull" if root else mail_user
        self.config.write_text(
            _CONFIG.format(
                folder=folder,
                port=self.port,
                uid=uid,
                gid=gid,
                internal=internal,
                login=login,
                group=grp.getgrgid(gid).gr_name,
            )
        )

    def start(self) -> ImapServer:
        """Start Dovecot and wait until it answers."""
        assert DOVECOT is not None
        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self._said()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(100).startswith(b"* OK"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"dovecot did not answer on {self.port}: {self._said()}")

    def stop(self) -> None:
        """Stop Dovecot and remove its folder."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _said(self) -> str:
        log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        return log or "(no log)"

    def __enter__(self) -> ImapServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {folder}/run
state_dir = {folder}/state
log_path = {folder}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
default_internal_user = {internal}
default_internal_group = {group}
default_login_user = {login}
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {folder}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={folder}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""
