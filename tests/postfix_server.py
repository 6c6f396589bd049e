"""A private Debian Postfix on loopback, in a temporary folder: a real MTA that refuses
unknown local recipients at RCPT (``smtpd_reject_unlisted_recipient``), relays the domains
it is given to test SMTP servers, retries what they defer and writes real DSNs (delay
notices and failures), which it sends to the envelope sender's domain, routed to another
test server. It must be started as root (Postfix's master drops to ``mail_owner``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.smtp_server import free_port

POSTFIX = shutil.which("postfix") or (
    "/usr/sbin/postfix" if Path("/usr/sbin/postfix").exists() else None
)
POSTCONF = shutil.which("postconf", path="/usr/sbin:/usr/bin") or "postconf"
# The package's own copy (the one in /etc exists only once the package is configured).
MASTER_CF = Path("/usr/share/postfix/master.cf.dist")


def missing_reason() -> str | None:
    """Why a private Postfix cannot run here, or None when it can."""
    if POSTFIX is None or not MASTER_CF.exists():
        return "Debian's postfix is not installed (apt-get install postfix; .ci/run does)"
    if os.geteuid() != 0:
        return "a private Postfix must be started as root (its master drops privileges)"
    return None


class PostfixServer:
    """Postfix listening on 127.0.0.1:``port``; ``local`` is its own domain (any recipient
    there but ``local_users`` is unknown), ``routes`` maps domains to ``host:port``."""

    def __init__(
        self,
        local: str = "lab.example.net",
        routes: dict[str, int] | None = None,
        queue_lifetime: str = "6s",
    ) -> None:
        # Its own folder under the system's temporary one: Postfix's user must walk into it,
        # and pytest's folders are private to root.
        self.folder = folder = Path(tempfile.mkdtemp(prefix="newsletter-postfix-"))
        self.port = free_port()
        self.local = local
        self.config = folder / "etc"
        self.log = folder / "maillog"
        routes = routes or {}
        transport = ", ".join(f"{d}=smtp:[127.0.0.1]:{p}" for d, p in routes.items())
        self.settings = {
            "compatibility_level": "3.6",
            "queue_directory": str(folder / "queue"),
            "data_directory": str(folder / "data"),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": local,
            "mydomain": local,
            "myorigin": local,
            "mydestination": local,
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "relay_domains": ", ".join(routes) or "",
            "transport_maps": f"inline:{{ {transport} }}" if routes else "",
            "smtpd_reject_unlisted_recipient": "yes",
            "local_recipient_maps": "inline:{ postmaster=postmaster }",
            "alias_maps": "",
            "alias_database": "",
            "smtp_dns_support_level": "disabled",
            "smtp_tls_security_level": "none",
            "smtpd_tls_security_level": "none",
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "1s",
            "delay_warning_time": "1s",
            "maximal_queue_lifetime": queue_lifetime,
            "bounce_queue_lifetime": queue_lifetime,
            "smtp_connect_timeout": "5s",
            "maillog_file": str(self.log),
            "maillog_file_prefixes": str(folder),
            "biff": "no",
        }

    def __enter__(self) -> PostfixServer:
        self.config.mkdir(parents=True)
        (self.folder / "queue").mkdir()
        (self.folder / "data").mkdir()
        shutil.chown(self.folder / "data", "postfix")
        self.folder.chmod(0o755)  # (Postfix's own user walks into the queue)
        (self.config / "main.cf").write_text(
            "".join(f"{key} = {value}\n" for key, value in self.settings.items())
        )
        master = MASTER_CF.read_text().replace(
            "smtp      inet  n       -       y       -       -       smtpd",
            f"127.0.0.1:{self.port} inet n - n - - smtpd",
        )
        (self.config / "master.cf").write_text(master)
        self._postconf("-F", "*/unix/chroot = n")  # (no copies of /etc inside the queue)
        self._postfix("start")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._listening():
                return self
            time.sleep(0.1)
        self.__exit__()
        raise RuntimeError(f"postfix did not start on port {self.port}: {self.maillog()}")

    def __exit__(self, *exc: object) -> None:
        subprocess.run([str(POSTFIX), "-c", str(self.config), "abort"], capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)

    def maillog(self) -> str:
        """What Postfix logged so far."""
        return self.log.read_text() if self.log.exists() else ""

    def _postfix(self, action: str) -> None:
        done = subprocess.run(
            [str(POSTFIX), "-c", str(self.config), action], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"postfix {action} failed: {done.stderr}{self.maillog()}")

    def _postconf(self, *args: str) -> None:
        subprocess.run([POSTCONF, "-c", str(self.config), *args], check=True, capture_output=True)

    def _listening(self) -> bool:
        import socket

        with socket.socket() as probe:
            probe.settimeout(0.2)
            return probe.connect_ex(("127.0.0.1", self.port)) == 0
