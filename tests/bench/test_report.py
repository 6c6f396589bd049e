"""bench/run.py's derived figures: the linearity ratio and the report table."""

from __future__ import annotations

import sys

from tests.helpers import ROOT

sys.path.insert(0, str(ROOT / "bench"))

from measure import ATTEMPTS, STEAL_MAX, Quiet, quietly
from report import table
from run import _throughput_row, linearity


def point(series: str, subscribers: int, seconds: float, papers: int = 1_000) -> dict:
    return {
        "series": series,
        "subscribers": subscribers,
        "papers": papers,
        "seconds": seconds,
        "sent": subscribers,
        "peak_mb": 100.0,
    }


def test_linearity_compares_cost_per_subscriber_at_the_two_largest_sizes() -> None:
    curves = [
        point("outbox", 1_000, 2.0),
        point("outbox", 10_000, 10.0),
        point("outbox", 100_000, 150.0),  # 1.5 ms a subscriber against 1.0: superlinear
        point("outbox", 10_000, 99.0, papers=10_000),  # another sweep: ignored
        point("smtp", 10_000, 20.0),
        point("smtp", 100_000, 200.0),
    ]
    ratios = linearity(curves)
    assert ratios["outbox"] == 1.5
    assert ratios["smtp"] == 1.0
    assert "match+render" not in ratios  # no points, no claim


def test_table_reports_ratios_and_curves() -> None:
    results = {
        "stages": {
            "render": {"emails_per_s": {"renderer": 3000.0, "naive (premailer per email)": 100.0}},
            "outbox": {"msgs_per_s": {"outbox transport": 900.0, "limit (bare writes)": 1000.0}},
        },
        "curves": [point("smtp", 10_000, 20.0), point("smtp", 100_000, 200.0)],
        "linearity": {"smtp": 1.0},
    }
    text = table(results)
    assert "| render to message bytes (1 core) | 3,000 emails/s |" in text
    assert "ours/naive 30.0x" in text and "ours/limit 0.90" in text
    assert "| whole pipeline -> aiosmtpd sink | 100,000 | 1,000 | 200.0 | 500 | 100 MB |" in text
    assert "Cost per subscriber at 100,000 over that at 10,000 (1 = linear):" in text


def test_the_workers_table_gives_the_ratio_and_the_database_cost_per_message() -> None:
    pg = {"per_second": 300.0, "seconds": 10.0, "transactions_per_message": 0.2}
    pg |= {"rows_written_per_message": 17.0, "rows_read_per_message": 100.0}
    pg |= {
        "wal_per_message": 10_300.0,
        "size_per_message": 8_000.0,
        "ingest_wal_per_paper": 3_100.0,
    }
    results = {
        "workers": {
            "subscribers": 5_000,
            "papers": 1_000,
            "chunk_size": 200,
            "cores": 2,
            "sqlite": {"per_second": 450.0, "seconds": 11.1},
            "1 worker": pg,
            "2 workers": {**pg, "per_second": 420.0},
            "ratio_2_to_1": 1.4,
            "ratios_postgres_to_sqlite": [0.61, 0.67, 0.7],
            "ratio_postgres_to_sqlite": 0.67,
        }
    }
    text = table(results)
    assert "| PostgreSQL, 2 workers | 420 | 10.0 | 0.20 | 17.0 | 100 | 10,300 | 8,000 |" in text
    assert "| SQLite store (one machine) | 450 | 11.1 | — |" in text
    assert "2 workers / 1 worker: **1.40x** on 2 cores" in text
    assert "PostgreSQL 1 worker / SQLite: **0.67x** (median of rounds 0.61, 0.67, 0.70)" in text
    assert "Ingesting the papers before (not in the rows above): 3,100 bytes of WAL a paper" in text
    assert "not measured (no initdb)" in table({"workers": {"skipped": "no initdb"}})


def test_the_throughput_table_shows_every_reference_run_and_each_ratio() -> None:
    row = {
        "subscribers": 20_000,
        "papers": 1_000,
        "match+render": 12.5,
        "match+render_runs": [12.0, 13.0, 12.5],
        "warm": 14.0,
        "cold": 17.0,
        "ratio_warm": 12.75 / 14.0,
        "ratio_cold": 12.5 / 17.0,
        "ratios_cold": [12.5 / 17.0],
        "ratios_warm": [12.75 / 14.0],
        "warm_peak_mb": 300.0,
        "cold_peak_mb": 310.0,
        "warm_create_us": 30.0,
        "cold_create_us": 40.0,
    }
    text = table({"throughput": [row]})
    assert (
        "| 20,000 x 1,000 | 12.0 / 13.0 / 12.5 s (12.5 s) | 17.0 s / 14.0 s | 0.74 / 0.91 "
        "| 0.74; 0.91 |"
    ) in text
    older = {k: v for k, v in row.items() if k not in ("match+render_runs", "ratios_cold")}
    assert "| 20,000 x 1,000 | 12.5 s | 17.0 s / 14.0 s | 0.74 / 0.91 | — |" in table(
        {"throughput": [older]}
    )


def test_each_throughput_run_is_timed_against_the_alone_runs_beside_it() -> None:
    runs = {
        kind: [
            Quiet({"seconds": s, "reference": r, "create_us": 9.0, "peak_mb": m}, steal, tries)
            for s, r, m, steal, tries in rows
        ]
        for kind, rows in {
            "cold": [
                (20.0, 16.0, 300.0, 0.01, 1),
                (18.0, 17.0, 310.0, 0.0, 2),
                (25.0, 20.0, 305.0, 0.0, 1),
            ],
            "warm": [
                (17.0, 16.5, 290.0, 0.02, 1),
                (16.0, 16.0, 280.0, 0.0, 1),
                (30.0, 18.0, 285.0, 0.0, 1),
            ],
        }.items()
    }
    alone = [Quiet({"seconds": s}, 0.0, 1) for s in (15.0, 17.0, 16.0, 16.0, 16.0, 17.0)]
    alone.append(Quiet({"seconds": 18.0}, 0.07, 3))
    row = _throughput_row(20_000, alone, runs)
    assert row["ratios_cold"] == [0.8, 17.0 / 18.0, 0.8]
    assert row["ratio_cold"] == 0.8 and row["cold"] == 20.0
    assert row["ratio_warm"] == 16.5 / 17.0 and row["warm_peak_mb"] == 290.0
    assert row["match+render"] == 115.0 / 7
    assert row["cold_steal"] == [0.01, 0.0, 0.0] and row["match+render_steal"][-1] == 0.07
    assert row["measured_again"] == 3  # one cold run twice, the last alone run three times
    assert "| 7% at most (3 runs measured again) |" in table({"throughput": [row]})


class Host:
    """A fake host for ``quietly``: each run takes 10 s, during which the host takes the next
    of ``shares`` of two cores' time."""

    def __init__(self, shares: list[float]) -> None:
        self.shares = iter(shares)
        self.stolen = self.now = 0.0
        self.runs = 0

    def run(self) -> dict:
        self.runs += 1
        self.stolen += next(self.shares) * 2 * 10.0
        self.now += 10.0
        return {"attempt": self.runs}

    def measure(self) -> Quiet:
        return quietly(self.run, cores=2, stolen=lambda: self.stolen, clock=lambda: self.now)


def test_a_run_the_host_took_the_cores_from_is_measured_again() -> None:
    host = Host([0.30, 0.01, 0.0])
    kept = host.measure()
    assert host.runs == 2 and kept.attempts == 2 and kept.result == {"attempt": 2}
    assert abs(kept.steal - 0.01) < 1e-9
    quiet = Host([STEAL_MAX, 0.0])
    assert quiet.measure().attempts == 1 and quiet.runs == 1  # (at the limit: kept)


def test_a_host_busy_throughout_keeps_the_least_disturbed_attempt() -> None:
    host = Host([0.2, 0.1, 0.3, 0.0])
    kept = host.measure()
    assert host.runs == ATTEMPTS and kept.attempts == ATTEMPTS
    assert kept.result == {"attempt": 2} and abs(kept.steal - 0.1) < 1e-9


def test_the_smtp_pairs_give_their_median_and_each_ratio() -> None:
    pairs = {"runs": {"plain": {"ratios": [0.81, 0.74, 0.86], "median": 0.81, "limits": []}}}
    text = table({"stages": {"send": {"runs": {}, "pairs": pairs}}})
    row = next(line for line in text.splitlines() if "interleaved pairs (plain" in line)
    assert "median of 3" in row and "ours/limit 0.81 (0.81, 0.74, 0.86)" in row
