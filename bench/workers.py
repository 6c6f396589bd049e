"""Workers benchmark: one send shared by 1 and by 2 workers on one PostgreSQL, side by side,
with what the database does per message.

Run:  pip install -e '.[bench]' && python bench/workers.py [--subscribers 5000] [--chunk 200]
      [--rounds 3]

Needs PostgreSQL's server programs (the distribution's ``postgresql`` package: initdb,
pg_ctl). A private cluster in a temporary folder, on 127.0.0.1, with durable settings (fsync
and synchronous commit on, as a deployment has; the tests turn them off).

  sqlite      `newsletter send --now` on the SQLite store: one machine, match+render in
              parallel on every core (the reference)
  1 worker    `newsletter send --now` on PostgreSQL alone: the sender works its own chunks
  2 workers   the same with one `newsletter worker` started (and waiting) beforehand
Each from a fresh project and database, into the Maildir outbox (bench/workload.py's project:
generated papers and profiles). Per message, from pg_stat_database, the WAL position and the
database size: transactions, rows written and read, WAL bytes and database growth. The
papers are ingested before each send (``newsletter ingest``, on both stores, untimed), so the
figures are what each message costs; what the papers cost is given apart, per paper (with
the schema's creation: a fresh database).

The three alternate for ``--rounds`` rounds (a busy machine moves one run by 20%); each row
is the round of median speed, and the ratio of PostgreSQL's 1 worker to SQLite is given for
every round and as the median.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import child_env
from report import workers_table
from workload import write_project

from tests.pg_cluster import PASSWORD, PASSWORD_ENV, Cluster, find_bindir

ROOT = Path(__file__).resolve().parent.parent

_STATS = """
SELECT xact_commit + xact_rollback, tup_inserted + tup_updated + tup_deleted,
    tup_returned + tup_fetched, pg_current_wal_lsn()::text,
    pg_database_size(current_database())
FROM pg_stat_database WHERE datname = current_database()
"""


def database_stats(url: str) -> dict[str, object]:
    """The database's counters now (a fresh connection: a fresh statistics snapshot)."""
    import psycopg

    with psycopg.connect(url, password=PASSWORD, autocommit=True) as connection:
        row = connection.execute(_STATS).fetchone()
    keys = ("transactions", "rows_written", "rows_read", "wal", "size")
    return dict(zip(keys, row, strict=True))


def wal_bytes(url: str, start: str, end: str) -> int:
    import psycopg

    with psycopg.connect(url, password=PASSWORD, autocommit=True) as connection:
        return int(connection.execute("SELECT pg_wal_lsn_diff(%s, %s)", (end, start)).fetchone()[0])


def newsletter(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "newsletter", "--config", str(config), *args]


def run_send(config: Path, env: dict[str, str], helpers: int) -> dict[str, float]:
    """`newsletter send --now` with ``helpers`` workers already waiting; seconds, messages."""
    logs = [config.parent / f"worker{n}.log" for n in range(helpers)]
    workers = [
        subprocess.Popen(newsletter(config, "worker"), stderr=log.open("w"), env=env)
        for log in logs
    ]
    try:
        deadline = time.monotonic() + 60
        while not all("waiting for chunks" in log.read_text() for log in logs):
            if time.monotonic() > deadline:
                raise SystemExit("a worker did not start:\n" + logs[0].read_text()[-2000:])
            time.sleep(0.05)
        start = time.perf_counter()
        done = subprocess.run(
            newsletter(config, "send", "--now", "--json"), capture_output=True, env=env
        )
        seconds = time.perf_counter() - start
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=60)
    if done.returncode != 0:
        raise SystemExit(f"newsletter send failed:\n{done.stderr.decode()[-3000:]}")
    sent = len(json.loads(done.stdout)["sent"])
    return {"seconds": seconds, "sent": sent, "per_second": sent / seconds}


def measure_postgres(
    cluster: Cluster, subscribers: int, papers: int, chunk: int, helpers: int
) -> dict[str, float]:
    """One shared send on a fresh database and project, with the database's cost."""
    url = cluster.database()
    try:
        with tempfile.TemporaryDirectory() as folder:
            config = write_project(Path(folder), subscribers, papers)
            config.write_text(config.read_text() + f"workers:\n  chunk_size: {chunk}\n")
            env = child_env(NEWSLETTER_STORE=url, **{PASSWORD_ENV: PASSWORD})
            subprocess.run(newsletter(config, "validate"), check=True, env=env, capture_output=True)
            fresh = database_stats(url)
            ingest(config, env)
            before = database_stats(url)
            result = run_send(config, env, helpers)
            after = database_stats(url)
        result["ingest_wal_per_paper"] = wal_bytes(url, fresh["wal"], before["wal"]) / papers  # type: ignore[arg-type]
        sent = max(result["sent"], 1)
        for key in ("transactions", "rows_written", "rows_read", "size"):
            result[f"{key}_per_message"] = (after[key] - before[key]) / sent  # type: ignore[operator]
        result["wal_per_message"] = wal_bytes(url, before["wal"], after["wal"]) / sent  # type: ignore[arg-type]
        return result
    finally:
        cluster.drop(url)


def measure_sqlite(subscribers: int, papers: int) -> dict[str, float]:
    """The same send on the SQLite store (the single-machine reference)."""
    with tempfile.TemporaryDirectory() as folder:
        config = write_project(Path(folder), subscribers, papers)
        env = child_env()
        env.pop("NEWSLETTER_STORE", None)
        ingest(config, env)
        return run_send(config, env, 0)


def ingest(config: Path, env: dict[str, str]) -> None:
    """The project's papers into its store (and the store's schema, when it is new)."""
    subprocess.run(newsletter(config, "ingest"), check=True, env=env, capture_output=True)


def measure(
    subscribers: int = 5_000, papers: int = 1_000, chunk: int = 200, rounds: int = 3
) -> dict:
    """The three sends side by side, alternating for ``rounds`` rounds; the ratios of
    PostgreSQL's 1 worker to SQLite and of 2 workers to 1."""
    bindir = find_bindir()
    if bindir is None:
        return {"skipped": "no PostgreSQL server programs (initdb): install package postgresql"}
    cluster = Cluster.start(bindir, durable=True)
    runs: dict[str, list[dict[str, float]]] = {"sqlite": [], "1 worker": [], "2 workers": []}
    try:
        for _ in range(rounds):
            runs["sqlite"].append(measure_sqlite(subscribers, papers))
            for helpers, name in ((0, "1 worker"), (1, "2 workers")):
                runs[name].append(measure_postgres(cluster, subscribers, papers, chunk, helpers))
    finally:
        cluster.stop()
    results: dict = {"subscribers": subscribers, "papers": papers, "chunk_size": chunk}
    results |= {name: _median_run(found) for name, found in runs.items()}
    one, two = results["1 worker"]["per_second"], results["2 workers"]["per_second"]
    results["ratio_2_to_1"] = two / one
    per_round = [
        pg["per_second"] / lite["per_second"]
        for pg, lite in zip(runs["1 worker"], runs["sqlite"], strict=True)
    ]
    results["ratios_postgres_to_sqlite"] = per_round
    results["ratio_postgres_to_sqlite"] = sorted(per_round)[len(per_round) // 2]
    results["cores"] = len(os.sched_getaffinity(0))
    return results


def _median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run of median speed."""
    return sorted(runs, key=lambda run: run["per_second"])[len(runs) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=5_000)
    parser.add_argument("--papers", type=int, default=1_000)
    parser.add_argument("--chunk", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    found = measure(args.subscribers, args.papers, args.chunk, args.rounds)
    print("\n".join(workers_table(found)))


if __name__ == "__main__":
    main()
