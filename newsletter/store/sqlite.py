"""The store's SQLite file in the state folder: WAL mode, the schema version in PRAGMA
user_version, created whole or not at all, and what each SQLite error means for it."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from newsletter.errors import StoreError
from newsletter.ledger.lock import folder_problem, make_private_folder
from newsletter.store.papers import Store
from newsletter.store.schema import MIGRATIONS, Migration, migrate

STORE_FILE = "newsletter.sqlite3"


class SqliteDatabase:
    """The store's SQLite file."""

    in_state_folder = True

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self.connection = connection
        self.path = path
        self.where = str(path)
        self.execute = connection.execute  # (bound once: the ledger calls these per message)
        self.executemany = connection.executemany

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()

    @contextmanager
    def transaction(self, relaxed: bool = False) -> Iterator[SqliteDatabase]:
        """All or nothing: commit on success, roll back on any exception; an SQLite error
        becomes a StoreError saying what is wrong (a full disk, a read-only file). Every
        commit is ``relaxed`` here: WAL mode with synchronous = NORMAL, which survives a
        crash of the program, not of the machine."""
        db = self.connection
        try:
            db.execute("BEGIN IMMEDIATE")
            yield self
            db.execute("COMMIT")
        except BaseException as exc:
            if db.in_transaction:  # (SQLite may have rolled back already: disk full)
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise store_problem(self.path, exc) from exc
            raise

    def json_merge(self, new: str, old: str) -> str:
        """SQL for the JSON object ``new`` with the keys of ``old`` put over it."""
        return f"json_patch({new}, {old})"

    def schema_version(self) -> int:
        """The schema version (0: no schema yet)."""
        return int(self.connection.execute("PRAGMA user_version").fetchone()[0])

    def set_schema_version(self, version: int) -> None:
        """Record the schema version (inside the migration's transaction)."""
        self.connection.execute(f"PRAGMA user_version = {int(version)}")

    def lock_migrations(self) -> None:
        """Nothing to do: BEGIN IMMEDIATE already keeps other writers out."""

    def ddl(self, script: str) -> str:
        """A migration in this engine's dialect (the migrations are written in SQLite's)."""
        return script

    def problem(self, exc: BaseException) -> StoreError | None:
        """What an SQLite error means for the store, or None for other exceptions."""
        return store_problem(self.path, exc) if isinstance(exc, sqlite3.Error) else None

    def integrity_problems(self) -> list[str]:
        """SQLite's ``PRAGMA quick_check``: damaged pages and indexes (a damaged file the
        send would refuse part-way)."""
        rows = [row[0] for row in self.connection.execute("PRAGMA quick_check(5)")]
        if rows == ["ok"]:
            return []
        return [_damaged(self.path, "; ".join(rows))]

    def shared(self) -> None:
        """One process's file: not shared."""
        return None


def open_store(state_dir: Path, migrations: Sequence[Migration] = MIGRATIONS) -> Store:
    """Open (creating and migrating as needed) the store in ``state_dir``; StoreError when
    the folder or the file cannot be used, saying why and what to do."""
    path = state_dir / STORE_FILE
    try:
        make_private_folder(state_dir)
        if not path.exists():
            _create(path, migrations)
        db = sqlite3.connect(path, isolation_level=None, timeout=30)
    except OSError as exc:
        raise StoreError(folder_problem(state_dir, exc)) from exc
    except sqlite3.Error as exc:
        raise store_problem(path, exc) from exc
    try:
        _configure(db)
        store = Store(SqliteDatabase(db, path))
        if store.schema_version == 0:
            raise StoreError(_not_a_store(path))
        migrate(store.db, migrations)
    except sqlite3.Error as exc:
        db.close()
        raise store_problem(path, exc) from exc
    except BaseException:
        db.close()
        raise
    return store


@contextmanager
def existing_store(state_dir: Path) -> Iterator[Store | None]:
    """The store in ``state_dir`` as it is, read-only (never created or migrated: for
    ``validate``); None when there is none yet; StoreError when it cannot be read."""
    path = state_dir / STORE_FILE
    if not path.exists():
        yield None
        return
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise store_problem(path, exc) from exc
    try:
        store = Store(SqliteDatabase(db, path))
        if store.schema_version == 0:
            raise StoreError(_not_a_store(path))
        yield store
    except sqlite3.Error as exc:
        raise store_problem(path, exc) from exc
    finally:
        db.close()


def _configure(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("PRAGMA foreign_keys = ON")


def _create(path: Path, migrations: Sequence[Migration]) -> None:
    """A new store, built under another name and linked into place whole: a file at ``path``
    is always a store with a schema, so a file without one can be refused (it is not ours, or
    it was emptied, and taking it for a new install would send everything to everyone)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.new")
    temporary.unlink(missing_ok=True)
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        db = sqlite3.connect(temporary, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode = DELETE")  # no -wal file to carry along
            migrate(SqliteDatabase(db, path), migrations)
        finally:
            db.close()
        with contextlib.suppress(FileExistsError):  # another process got there first
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _not_a_store(path: Path) -> str:
    size = path.stat().st_size
    what = "is empty" if size == 0 else f"has {size:,} bytes but no newsletter schema"
    return (
        f"{path} {what}: it is not a newsletter store (a new install has no file there at "
        "all). If it should hold your send history, restore it from a backup; otherwise move "
        "it aside and a new store is made. Sending from an empty store would send every paper "
        "again to everyone."
    )


def _damaged(path: Path, detail: str) -> str:
    return (
        f"{path} is damaged ({detail}): restore it from a backup, or recover what it holds "
        f"with: sqlite3 {path} .recover | sqlite3 recovered.sqlite3 (then move the "
        "recovered file in its place)"
    )


def _nearly_full(path: Path) -> bool:
    """Is the disk holding ``path`` (all but) full? A full disk shows as an I/O error when
    SQLite's shared-memory file cannot grow."""
    try:
        return shutil.disk_usage(path.parent).free < 1024 * 1024
    except OSError:
        return False


def store_problem(path: Path, exc: sqlite3.Error) -> StoreError:
    """A StoreError saying what an SQLite error means for the store at ``path``."""
    name = getattr(exc, "sqlite_errorname", "")
    if name == "SQLITE_FULL" or (name.startswith("SQLITE_IOERR") and _nearly_full(path)):
        message = (
            f"the disk holding {path} is full, so nothing more can be recorded: sending "
            "stopped; free some space and run again (what was sent is recorded)"
        )
    elif name.startswith("SQLITE_READONLY"):
        message = (
            f"{path} cannot be written (a read-only file, folder or disk): make "
            f"{path.parent} writable by this user"
        )
    elif name == "SQLITE_NOTADB":
        message = (
            f"{path} is not a database, so not a newsletter store: restore it from a backup, "
            "or move it aside to start afresh (every paper would then be sent again)"
        )
    elif name == "SQLITE_CORRUPT":
        message = _damaged(path, str(exc))
    elif name.startswith("SQLITE_IOERR") or name.startswith("SQLITE_CANTOPEN"):
        message = (
            f"cannot read or write {path} ({exc}): check the disk (full, read-only, failing, "
            "or a size limit)"
        )
    else:
        message = f"the store {path} failed: {exc}"
    return StoreError(message)
