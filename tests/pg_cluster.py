"""A private PostgreSQL cluster for the tests: initdb into a temporary folder, a server on
127.0.0.1 and a free port, password authentication over TCP (as a real deployment has), and
everything removed afterwards. PostgreSQL refuses to run as root, so as root the server runs
as the ``postgres`` user (the distribution's package creates it)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.smtp_server import free_port

PASSWORD = "test-only-secret"
PASSWORD_ENV = "NEWSLETTER_STORE_PASSWORD"


def find_bindir() -> Path | None:
    """Where initdb and pg_ctl are (the newest installed version), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _version(path: str) -> int:
    part = Path(path).parent.parent.name
    return int(part) if part.isdigit() else 0


@dataclass
class Cluster:
    """A running private cluster; ``database()`` makes a fresh database for one test."""

    bindir: Path
    folder: Path
    port: int
    user: str | None  # whom the server runs as (None: this user)

    @classmethod
    def start(cls, bindir: Path, durable: bool = False) -> Cluster:
        """initdb and start a cluster in a new temporary folder; ``durable``: commits reach
        the disk, as in a deployment (the benchmark), rather than the tests' fast settings."""
        user = "postgres" if os.geteuid() == 0 else None
        folder = Path(tempfile.mkdtemp(prefix="newsletter-pg-"))
        cluster = cls(bindir, folder, free_port(), user)
        if user:
            entry = pwd.getpwnam(user)
            os.chown(folder, entry.pw_uid, entry.pw_gid)
        (folder / "password").write_text(PASSWORD + "\n")
        if user:
            os.chown(folder / "password", entry.pw_uid, entry.pw_gid)
        try:
            cluster._run(
                "initdb", "-D", str(folder / "data"), "-U", "postgres", "-E", "UTF8",
                "--locale=C.UTF-8", "--auth-local=trust", "--auth-host=scram-sha-256",
                f"--pwfile={folder / 'password'}",
            )  # fmt: skip
            options = (
                f"-c listen_addresses=127.0.0.1 -p {cluster.port} -k {folder} "
                "-c max_connections=200"
            )
            if not durable:
                options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            cluster._run(
                "pg_ctl", "-D", str(folder / "data"), "-l", str(folder / "log"), "-w",
                "-t", "60", "-o", options, "start",
            )  # fmt: skip
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return cluster

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(
            [str(self.bindir / program), *args],
            check=True,
            capture_output=True,
            user=self.user,
            cwd=self.folder,
        )

    def stop(self) -> None:
        """Stop the server and remove its folder."""
        try:
            self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def restart(self) -> None:
        """Restart the server (fast: sessions are cut), with the options it was started with
        (its log to the same file: the new server must not hold our pipes open)."""
        self._run(
            "pg_ctl", "-D", str(self.folder / "data"), "-l", str(self.folder / "log"),
            "-m", "fast", "-w", "-t", "60", "restart",
        )  # fmt: skip

    def cut_sessions(self, url: str) -> None:
        """Terminate every session of the database of ``url`` (as an operator or a failover
        would)."""
        name = url.rsplit("/", 1)[1]
        self.admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )

    def refuse(self, url: str, refusing: bool) -> None:
        """Refuse (or take again) connections to the database of ``url``; refusing also
        cuts its sessions."""
        name = url.rsplit("/", 1)[1]
        self.admin(f"ALTER DATABASE {name} ALLOW_CONNECTIONS {'false' if refusing else 'true'}")
        if refusing:
            self.cut_sessions(url)

    def url(self, database: str = "postgres") -> str:
        """The URL of ``database`` (no password: it comes from PASSWORD_ENV)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        """Run one statement as the superuser, outside any transaction."""
        import psycopg

        with psycopg.connect(self.url(), password=PASSWORD, autocommit=True) as connection:
            connection.execute(sql)

    def database(self) -> str:
        """A new empty database; its URL."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        self.admin(f"CREATE DATABASE {name}")
        return self.url(name)

    def drop(self, url: str) -> None:
        """Drop the database of ``url`` (connections to it are cut)."""
        name = url.rsplit("/", 1)[1]
        self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
