"""``newsletter migrate-store``: copy the SQLite store into PostgreSQL, whole.

Every table (papers, digests, the ledger, the suppression list, events, feedback, fetch
validators) is copied in one transaction with COPY, into a database that holds no newsletter
data yet; the identity sequences are moved past the copied ids; then each table's rows are
counted on both sides. The SQLite file is left as it was: the switch is one line of the
config (``store:``), and going back is the same line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from newsletter.config.settings import Config
from newsletter.errors import StoreError
from newsletter.ledger.lock import state_lock
from newsletter.reports import MigrationReport, TableCopy
from newsletter.store.backend import STORE_ENV, open_store_for
from newsletter.store.papers import Store, shared_database
from newsletter.store.postgres import is_postgres_url
from newsletter.store.sqlite import STORE_FILE, open_store

# In an order the foreign keys accept; the ids of the last two come from identity columns.
TABLES = (
    "digests",
    "papers",
    "sightings",
    "deliveries",
    "subscribers",
    "fetches",
    "suppressions",
    "bounce_reports",
    "failed_messages",
    "signups",
    "link_keys",
    "subscriber_events",
    "feedback",
)
IDENTITIES = ("subscriber_events", "feedback")
# Not copied: the tables of shared runs, which only PostgreSQL's workers fill.
NOT_COPIED = ("send_runs", "send_chunks", "workers", "slot_runs")


def migrate_store(config: Config, environ: Mapping[str, str], target_url: str) -> MigrationReport:
    """Copy the SQLite store of ``config`` into the PostgreSQL database ``target_url``
    (empty of newsletter data), and verify the counts; StoreError when it cannot."""
    if not is_postgres_url(target_url):
        raise StoreError(f"--to {target_url!r}: give a PostgreSQL URL (postgresql://user@host/db)")
    if not (config.state_dir / STORE_FILE).exists():
        raise StoreError(
            f"there is no SQLite store to copy: {config.state_dir / STORE_FILE} does not exist "
            "(check state_dir in the config)"
        )
    environ = {key: value for key, value in environ.items() if key != STORE_ENV}  # (--to wins)
    with (
        state_lock(config.state_dir, "migrate-store"),
        open_store(config.state_dir) as source,
        open_store_for(replace(config, store=target_url), environ) as target,  # (the schema)
    ):
        _refuse_unless_empty(target)
        with target.transaction():
            for table in TABLES:
                _copy(source, target, table)
            for table in IDENTITIES:
                _move_identity(target, table)
        tables = tuple(TableCopy(t, _count(source, t), _count(target, t)) for t in TABLES)
        where = target.where
    wrong = [t for t in tables if t.source != t.target]
    if wrong:
        counts = ", ".join(f"{t.table} {t.source} → {t.target}" for t in wrong)
        raise StoreError(f"the copy in {where} does not match the SQLite store: {counts}")
    return MigrationReport(str(config.state_dir), where, tables)


def _refuse_unless_empty(target: Store) -> None:
    papers, deliveries, suppressions = (
        _count(target, table) for table in ("papers", "deliveries", "suppressions")
    )
    if papers or deliveries or suppressions:
        raise StoreError(
            f"{target.where} already holds newsletter data ({papers:,} papers, {deliveries:,} "
            f"digests, {suppressions:,} suppressions): migrate-store copies into a database "
            "with none, so that nothing is mixed up or sent twice; create a new database "
            "(createdb) and run again"
        )


def _copy(source: Store, target: Store, table: str) -> None:
    cursor = source.db.execute(f"SELECT * FROM {table}")
    columns = [column[0] for column in cursor.description]
    shared_database(target).copy_rows(table, columns, cursor)


def _move_identity(target: Store, table: str) -> None:
    """Let the next id of ``table`` follow the copied ones."""
    target.db.execute(
        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), coalesce(max(id), 0) + 1, "
        f"false) FROM {table}"
    )


def _count(store: Store, table: str) -> int:
    return int(store.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
