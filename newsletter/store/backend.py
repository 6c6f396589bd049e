"""Which store a config names, decided once: the SQLite file of the state folder, or PostgreSQL
(store: postgresql://... or $NEWSLETTER_STORE)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from newsletter.config.checks import store_url_problem
from newsletter.config.settings import Config
from newsletter.errors import ConfigError
from newsletter.store import postgres
from newsletter.store.papers import Store
from newsletter.store.schema import MIGRATIONS, Migration, check_version, migrate
from newsletter.store.sqlite import existing_store, open_store

STORE_ENV = "NEWSLETTER_STORE"


SQLITE = "sqlite"  # the ``store`` setting naming the state folder's SQLite file


def store_url(config: Config, environ: Mapping[str, str]) -> str:
    """Where the store is: 'sqlite' or a PostgreSQL URL ($NEWSLETTER_STORE over the config);
    ConfigError for a value that names no store."""
    url = environ.get(STORE_ENV) or config.store
    problem = store_url_problem(url)
    if problem:
        raise ConfigError(f"${STORE_ENV}: {problem}" if environ.get(STORE_ENV) else problem)
    return url


def is_shared_store(config: Config, environ: Mapping[str, str]) -> bool:
    """Whether the configured store is one several hosts share (PostgreSQL), before it is
    opened: a run is then cut into chunks for workers, and the schedule has a leader."""
    return store_url(config, environ) != SQLITE


@contextmanager
def existing_store_for(config: Config, environ: Mapping[str, str]) -> Iterator[Store | None]:
    """The store ``config`` names as it is, neither created nor migrated (for ``validate``):
    None when there is none yet; StoreError when it cannot be opened or is newer than this
    program."""
    url = store_url(config, environ)
    if url == SQLITE:
        with existing_store(config.state_dir) as store:
            if store is not None:
                check_version(store.db.where, store.schema_version, MIGRATIONS)
            yield store
        return
    db = postgres.connect(url, environ.get(config.store_password_env))
    try:
        store = Store(db)
        check_version(db.where, store.schema_version, MIGRATIONS)
        yield store
    finally:
        db.close()


def open_store_for(
    config: Config,
    environ: Mapping[str, str],
    migrations: Sequence[Migration] = MIGRATIONS,
) -> Store:
    """The store ``config`` names: the SQLite file of its state folder, or PostgreSQL
    (``store: postgresql://...`` or $NEWSLETTER_STORE; the password from the variable
    ``store_password_env`` names)."""
    url = store_url(config, environ)
    if url == SQLITE:
        return open_store(config.state_dir, migrations)
    db = postgres.connect(url, environ.get(config.store_password_env))
    try:
        store = Store(db)
        migrate(db, migrations)
    except BaseException as exc:
        db.close()
        problem = db.problem(exc)
        if problem is not None:
            raise problem from exc
        raise
    return store
