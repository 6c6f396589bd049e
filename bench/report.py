"""Turn bench/results.json into a Markdown table and PNG plots.

Run:  python bench/report.py [bench/results.json]   (bench/run.py calls it at the end)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SERIES_LABELS = {
    "outbox": "whole pipeline -> Maildir outbox",
    "smtp": "whole pipeline -> aiosmtpd sink",
    "match+render": "match + render to bytes only",
}


def stage_rows(stages: dict) -> list[tuple[str, str, str, str, str]]:
    """(stage, ours, naive reference, physical limit, ratios) for each stage run."""
    rows = []
    if "ingest" in stages:
        ingest = stages["ingest"]
        rate = ingest["cards_per_s"]
        rows.append(
            (
                f"ingest: parse ({ingest['cards']:,} cards)",
                f"{rate['parse']:,.0f} cards/s",
                "—",
                f"{rate['floor-split']:,.0f} cards/s (split lines only)",
                f"limit/ours {rate['floor-split'] / rate['parse']:.2f}; "
                f"target 100,000/s: {rate['parse'] / 100_000:.2f}x",
            )
        )
        floor = 1 / (1 / rate["parse"] + 1 / rate["floor-insert"])
        rows.append(
            (
                "ingest: parse + store",
                f"{rate['parse+store']:,.0f} cards/s",
                "—",
                f"{floor:,.0f} cards/s (parse + bare INSERTs)",
                f"limit/ours {floor / rate['parse+store']:.2f}; "
                f"target 20,000/s: {rate['parse+store'] / 20_000:.2f}x",
            )
        )
        for reader, floor_name, label in (
            ("json", "floor-json", "json.loads"),
            ("rss", "floor-feed", "feedparser.parse"),
        ):
            if f"parse-{reader}" in rate:  # (results from before the JSON and RSS readers)
                ours = rate[f"parse-{reader}"]
                rows.append(
                    (
                        f"ingest: {reader.upper()} reader / + store",
                        f"{ours:,.0f} / {rate[f'store-{reader}']:,.0f} cards/s",
                        "—",
                        f"{rate[floor_name]:,.0f} cards/s ({label} only)",
                        f"limit/ours {rate[floor_name] / ours:.2f}; "
                        f"text reader/ours {rate['parse'] / ours:.2f}",
                    )
                )
    if "match" in stages:
        match = stages["match"]
        seconds = match["seconds"]
        rows.append(
            (
                f"match ({match['subscribers']:,} subscribers x {match['papers']:,} papers)",
                f"{seconds['compiled']:.2f} s",
                f"{seconds['naive (scaled)']:,.0f} s (a regex per keyword, per paper)",
                "—",
                f"naive/ours {seconds['naive (scaled)'] / seconds['compiled']:,.0f}x; "
                f"2N x 2M / N x M {seconds['compiled 2Nx2M'] / seconds['compiled']:.2f}",
            )
        )
    if "render" in stages:
        render = stages["render"]["emails_per_s"]
        naive = render["naive (premailer per email)"]
        rows.append(
            (
                "render to message bytes (1 core)",
                f"{render['renderer']:,.0f} emails/s",
                f"{naive:,.0f} emails/s (premailer per email)",
                "—",
                f"ours/naive {render['renderer'] / naive:.1f}x",
            )
        )
    if "outbox" in stages:
        outbox = stages["outbox"]["msgs_per_s"]
        limit = outbox["limit (bare writes)"]
        rows.append(
            (
                "deliver to Maildir outbox",
                f"{outbox['outbox transport']:,.0f} msgs/s",
                "—",
                f"{limit:,.0f} msgs/s (write, fsync, rename)",
                f"ours/limit {outbox['outbox transport'] / limit:.2f}",
            )
        )
    if "send" in stages:
        for name, run in stages["send"]["runs"].items():
            rows.append(
                (
                    f"`newsletter send` over SMTP ({name}, {run['sent']:,} subscribers)",
                    f"{run['c']:,.0f} msgs/s",
                    f"{run['b']:,.0f} msgs/s (a connection per message)",
                    f"{run['a']:,.0f} msgs/s (pre-rendered, one connection)",
                    f"ours/limit {run['c'] / run['a']:.2f}; limit/naive {run['a'] / run['b']:.2f}",
                )
            )
    if "ledger" in stages:
        ledger = stages["ledger"]
        per = ledger["us_per_message"]
        rows.append(
            (
                f"ledger: record a digest pending, then sent ({ledger['messages']:,})",
                f"{per['ours']:,.0f} us/message",
                f"{per['before']:,.0f} us/message (bytes stored, 2 commits a message)",
                f"{per['limit']:,.0f} us/message (bare SQLite, one transaction)",
                f"ours/limit {per['ours'] / per['limit']:.2f}; before/ours "
                f"{per['before'] / per['ours']:.1f}x"
                + (
                    f"; a row a paper/ours {per['per-paper'] / per['ours']:.2f}"
                    if "per-paper" in per
                    else ""
                ),
            )
        )
    if "send" in stages:
        for name, run in stages["send"]["runs"].items():
            if "a2" in run:
                warm = run.get("c_warm")
                rows.append(
                    (
                        f"SMTP: `newsletter send` / the sink's limit ({name})",
                        f"{run['c']:,.0f} msgs/s" + (f" cold, {warm:,.0f} warm" if warm else ""),
                        "—",
                        f"{run['a2']:,.0f} msgs/s (pre-rendered, the same 2 connections)",
                        f"ours/limit {run['c'] / run['a2']:.2f}"
                        + (f" cold, {warm / run['a2']:.2f} warm" if warm else "")
                        + " (target 0.80)",
                    )
                )
    if "send" in stages and "pairs" in stages["send"]:
        for name, run in stages["send"]["pairs"]["runs"].items():
            rows.append(
                (
                    f"SMTP: the same, interleaved pairs ({name}, warm, median of "
                    f"{len(run['ratios'])})",
                    "—",
                    "—",
                    "each send against the limit just before and after it",
                    f"ours/limit {run['median']:.2f} ("
                    + ", ".join(f"{r:.2f}" for r in run["ratios"])
                    + ") (target 0.80)"
                    + (
                        f"; host steal {steal_summary(run['steal'], run['measured_again'])}"
                        if run.get("steal")
                        else ""
                    ),
                )
            )
    if "dkim" in stages:
        ms = stages["dkim"]["ms_per_message"]
        rows.append(
            (
                f"DKIM: sign a {stages['dkim']['size'] // 1000} KB digest (2048-bit RSA)",
                f"{ms['ours']:.2f} ms/message",
                f"{ms['dkimpy']:.2f} ms/message (dkimpy.sign, RSA in Python)",
                f"{ms['limit']:.2f} ms/message (OpenSSL RSA + body SHA-256)",
                f"dkimpy/ours {ms['dkimpy'] / ms['ours']:.1f}x; ours/limit "
                f"{ms['ours'] / ms['limit']:.2f}",
            )
        )
    if "scale" in stages:
        scale = stages["scale"]
        rows.append(
            (
                f"match + render, {scale['subscribers']:,} x {scale['papers']:,}, "
                f"{scale['workers']} workers",
                f"{scale['seconds']:.1f} s, peak {scale['peak_mb']:.0f} MB",
                "—",
                "—",
                f"time/60 s {scale['seconds'] / 60:.2f}; "
                f"memory/500 MB {scale['peak_mb'] / 500:.2f}",
            )
        )
    return rows


def table(results: dict) -> str:
    """The figures as Markdown tables."""
    lines = [
        "| stage | ours | naive reference | physical limit | ratios |",
        "|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in stage_rows(results.get("stages", {}))]
    throughput = results.get("throughput")
    if throughput:
        lines += [
            "",
            "| subscribers x papers | match+render alone, each run in turn (mean) "
            "| pipeline to outbox, cold / warm (median) "
            "| ratio cold / warm (target 0.80; median) | each run's ratio, cold; warm "
            "| peak memory cold / warm | creating a file there, cold / warm "
            "| host steal, most in a kept run |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for t in throughput:
            lines.append(
                f"| {t['subscribers']:,} x {t['papers']:,} | {_alone(t)} | "
                f"{t['cold']:.1f} s / {t['warm']:.1f} s | "
                f"{t['ratio_cold']:.2f} / {t['ratio_warm']:.2f} | {_each_ratio(t)} | "
                f"{t['cold_peak_mb']:.0f} / {t['warm_peak_mb']:.0f} MB | "
                f"{t.get('cold_create_us', 0):.0f} / {t.get('warm_create_us', 0):.0f} us |"
                + " "
                + steal_summary(
                    [
                        *t.get("match+render_steal", []),
                        *t.get("cold_steal", []),
                        *t.get("warm_steal", []),
                    ],
                    t.get("measured_again"),
                )
                + " |"
            )
    curves = results.get("curves")
    if curves:
        lines += [
            "",
            "| series | subscribers | papers | seconds | messages/s | peak memory |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for c in curves:
            rate = c["sent"] / c["seconds"] if c["seconds"] else 0
            lines.append(
                f"| {SERIES_LABELS[c['series']]} | {c['subscribers']:,} | {c['papers']:,} | "
                f"{c['seconds']:.1f} | {rate:,.0f} | {c['peak_mb']:.0f} MB |"
            )
    if results.get("workers"):
        lines += ["", *workers_table(results["workers"])]
    linearity = results.get("linearity")
    if linearity:
        sizes = sorted({c["subscribers"] for c in curves or [] if c["papers"] == 1_000})[-2:]
        between = f"{sizes[-1]:,} over that at {sizes[0]:,}" if len(sizes) == 2 else "the two sizes"
        lines += ["", f"Cost per subscriber at {between} (1 = linear):", ""]
        lines += [f"- {SERIES_LABELS[name]}: {value:.2f}" for name, value in linearity.items()]
    return "\n".join(lines)


def workers_table(w: dict) -> list[str]:
    """bench/workers.py's figures: the send on SQLite, by 1 and by 2 workers on PostgreSQL,
    and what the database did per message."""
    if "skipped" in w:
        return [f"Workers: not measured ({w['skipped']})."]
    lines = [
        f"| {w['subscribers']:,} subscribers x {w['papers']:,} papers, chunks of "
        f"{w['chunk_size']} | messages/s | seconds | transactions | rows written | rows read "
        "| WAL bytes | database growth, bytes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ("sqlite", "1 worker", "2 workers"):
        row = w[name]
        cells = [f"{row['per_second']:,.0f}", f"{row['seconds']:.1f}"]
        if "wal_per_message" in row:
            cells += [
                f"{row['transactions_per_message']:.2f}",
                f"{row['rows_written_per_message']:.1f}",
                f"{row['rows_read_per_message']:,.0f}",
                f"{row['wal_per_message']:,.0f}",
                f"{row['size_per_message']:,.0f}",
            ]
        else:
            cells += ["—"] * 5
        label = "SQLite store (one machine)" if name == "sqlite" else f"PostgreSQL, {name}"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"2 workers / 1 worker: **{w['ratio_2_to_1']:.2f}x** on {w['cores']} cores "
        "(per message: the PostgreSQL rows).",
    ]
    if "ingest_wal_per_paper" in w["1 worker"]:
        lines.append(
            f"Ingesting the papers before (not in the rows above): "
            f"{w['1 worker']['ingest_wal_per_paper']:,.0f} bytes of WAL a paper."
        )
    if "ratio_postgres_to_sqlite" in w:
        rounds = ", ".join(f"{r:.2f}" for r in w["ratios_postgres_to_sqlite"])
        lines.append(
            f"PostgreSQL 1 worker / SQLite: **{w['ratio_postgres_to_sqlite']:.2f}x** "
            f"(median of rounds {rounds})."
        )
    return lines


def plot(results: dict, folder: Path) -> list[Path]:
    """PNG plots of the curves (and the stages' ratios); none without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plots")
        return []
    written = []
    curves = results.get("curves", [])
    subscriber_points = [c for c in curves if c["papers"] == 1_000]
    paper_points = [c for c in curves if c["subscribers"] == 10_000]
    for name, points, axis, label in (
        (
            "pipeline-subscribers.png",
            subscriber_points,
            "subscribers",
            "subscribers (1,000 papers)",
        ),
        ("pipeline-papers.png", paper_points, "papers", "papers (10,000 subscribers)"),
    ):
        if len({c[axis] for c in points}) < 2:
            continue
        figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
        for series, style in (("outbox", "o-"), ("smtp", "s-"), ("match+render", "^--")):
            chosen = sorted((c for c in points if c["series"] == series), key=lambda c: c[axis])
            xs = [c[axis] for c in chosen]
            left.plot(xs, [c["seconds"] for c in chosen], style, label=SERIES_LABELS[series])
            right.plot(xs, [c["peak_mb"] for c in chosen], style, label=SERIES_LABELS[series])
        if axis == "subscribers":
            low = min(c[axis] for c in points)
            high = max(c[axis] for c in points)
            start = min(c["seconds"] for c in points if c[axis] == high) * low / high
            left.plot([low, high], [start, start * high / low], ":", color="grey", label="linear")
            right.axhline(500, color="red", linestyle=":", label="500 MB target")
        for ax, title in ((left, "wall time (s)"), (right, "peak memory, all processes (MB)")):
            ax.set_xscale("log")
            ax.set_xlabel(label)
            ax.set_title(title)
            ax.grid(True, which="both", alpha=0.3)
        left.set_yscale("log")
        right.set_ylim(bottom=0)
        left.legend(fontsize=8)
        figure.suptitle(f"newsletter, {_machine_line(results)}", fontsize=9)
        figure.tight_layout()
        path = folder / name
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    return written


def steal_summary(shares: list[float] | None, again: int | None) -> str:
    """The most of the cores' time the host took during a kept run, and how many runs were
    measured again because it took more (older results did not measure it: "—")."""
    if not shares:
        return "—"
    return f"{max(shares):.0%} at most ({again or 0} runs measured again)"


def _each_ratio(row: dict) -> str:
    """Each pipeline run's ratio to the alone runs on either side of it (older results hold
    one of each kind: "—")."""
    if "ratios_cold" not in row:
        return "—"
    cold, warm = (", ".join(f"{r:.2f}" for r in row[f"ratios_{k}"]) for k in ("cold", "warm"))
    return f"{cold}; {warm}"


def _alone(row: dict) -> str:
    """match+render alone: every run, in turn with the pipeline's, and their mean (older
    results hold one run)."""
    runs = row.get("match+render_runs")
    if not runs:
        return f"{row['match+render']:.1f} s"
    return " / ".join(f"{r:.1f}" for r in runs) + f" s ({row['match+render']:.1f} s)"


def _machine_line(results: dict) -> str:
    m = results.get("machine", {})
    return f"{m.get('cores', '?')} cores, {m.get('cpu', '?')}, Python {m.get('python', '?')}"


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results.json"
    results = json.loads(path.read_text())
    print(table(results))
    for written in plot(results, path.parent):
        print(f"plot: {written}")


if __name__ == "__main__":
    main()
