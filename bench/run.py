"""Every benchmark in one run: each stage beside its naive reference and its physical limit,
the 100,000-subscriber match+render target, and the whole pipeline's scaling curves.

Run:  pip install -e '.[bench]' && python bench/run.py [--quick] [--out bench/results.json]

The workers' figures (bench/workers.py) need PostgreSQL's server programs; without them the
report says they were not measured.

Writes bench/results.json and, with matplotlib, bench/pipeline-subscribers.png and
bench/pipeline-papers.png; prints the table of figures and ratios (bench/report.py).
Each measurement runs in a fresh Python process, so no cache or memory of one stage
colours the next. --quick stops the curves at 10,000 subscribers and shrinks the stages
(a check that everything runs, in about two minutes; not the figures BENCHMARKS.md quotes).

Full run on a 2-core machine: about 50-65 minutes, --delivery alone about 45-60 (the throughput
rounds take about 4 minutes at 10,000 and 12 at 100,000; the SMTP send with its 5 pairs
about 19: the aiosmtpd sink, in Python, shares the two cores with the pipeline),
--throughput (those rounds only) about 16. A run the host disturbs (steal, measure.quietly)
is made again, which can add a third.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from measure import STEAL_MAX, Quiet, child_env, quietly, scratch  # noqa: E402

# Stage name -> (module, keyword arguments for a full run, for a quick run).
STAGES = {
    "ingest": ("ingest", {"cards": 10_000, "repeat": 5}, {"cards": 2_000, "repeat": 2}),
    "match": ("match", {"subscribers": 10_000, "papers": 1_000}, {"subscribers": 2_000}),
    "render": ("render", {"emails": 2_000, "naive": 100}, {"emails": 500, "naive": 30}),
    "outbox": ("outbox", {"count": 2_000}, {"count": 300}),
    # The send over SMTP at 20,000 subscribers, the first size (its ~0.6 s of
    # start-up before the first message weighs twice as much at 10,000: BENCHMARKS.md).
    "send": (
        "send",
        {"subscribers": 20_000, "messages": 2_000, "pairs_of": 5},
        {"subscribers": 2_000, "messages": 300},
    ),
    "scale": ("scale", {"subscribers": 100_000, "papers": 1_000}, {"subscribers": 10_000}),
    "ledger": ("ledger", {"messages": 5_000}, {"messages": 1_000}),
    "dkim": ("signing", {"messages": 300}, {"messages": 100}),
}
WORKERS = ({"subscribers": 5_000}, {"subscribers": 1_000, "rounds": 1})  # issue 17: full, quick
# issues 16 and 41: the whole pipeline against match+render alone (issue 41: at 10,000, where
# the send's start-up weighs twice what it weighs at 20,000, and at 100,000)
THROUGHPUT = (10_000, 100_000)
ROUNDS = {10_000: 5, 100_000: 2}  # of cold and warm runs at each size (run_throughput)
SUBSCRIBERS = (1_000, 10_000, 100_000)
PAPERS = (100, 1_000, 10_000)
BASE_SUBSCRIBERS, BASE_PAPERS = 10_000, 1_000  # the papers sweep's fixed subscribers; and back
SINKS = ("outbox", "smtp")
MESSAGE_ROOM = 80_000  # bytes of disk an outbox takes a digest, with room to spare


def in_child(call: str, tree: Path = HERE.parent, **kwargs: object) -> dict:
    """``call`` ("module.function" of ``tree``'s bench/) with ``kwargs`` in a fresh
    interpreter importing ``tree`` (default: this checkout); its JSON result."""
    module, function = call.split(".")
    code = (
        f"import json, sys; sys.path[:0] = [{str(tree / 'bench')!r}, {str(tree)!r}]\n"
        f"from {module} import {function}\n"
        f"print(json.dumps({function}(**json.loads(sys.argv[1]))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(kwargs)],
        capture_output=True,
        text=True,
        cwd=tree,
        env=child_env(PYTHONPATH=str(tree)),
    )
    if done.returncode != 0:
        raise SystemExit(f"{call}({kwargs}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine() -> dict:
    """What the figures were measured on."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import yaml

    return {
        "cpu": model,
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(memory, 1),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "libyaml": bool(yaml.__with_libyaml__),
    }


def run_stages(quick: bool) -> dict:
    results = {}
    for name, (module, full, short) in STAGES.items():
        kwargs = {**full, **short} if quick else full
        print(f"  {name} {kwargs} ...", flush=True)
        results[name] = in_child(f"{module}.measure", **kwargs)
    return results


def room_for(keep: str, subscribers: int) -> str:
    """``keep`` (the run's scratch folder), emptied first when the disk has no room left for
    another outbox of ``subscribers`` digests (the next figure may then be slowed: see
    measure.py)."""
    if shutil.disk_usage(keep).free < subscribers * MESSAGE_ROOM + 2**31:
        print("    (disk nearly full: the earlier outboxes are deleted first)", flush=True)
        for entry in Path(keep).iterdir():
            shutil.rmtree(entry, ignore_errors=True)
    return keep


def run_curves(quick: bool, keep: str) -> list[dict]:
    """The whole pipeline (and match+render alone) against subscribers and against papers."""
    subscribers = [n for n in SUBSCRIBERS if not quick or n <= 10_000]
    papers = [m for m in PAPERS if not quick or m <= 1_000]
    points = [(n, BASE_PAPERS) for n in subscribers]
    points += [(BASE_SUBSCRIBERS, m) for m in papers if m != BASE_PAPERS]
    curves = []
    for n, m in points:
        for sink in SINKS:
            print(f"  pipeline {n:,} x {m:,} -> {sink} ...", flush=True)
            result = in_child(
                "pipeline.measure", subscribers=n, papers=m, where=sink, keep_in=room_for(keep, n)
            )
            curves.append({"series": sink, "subscribers": n, "papers": m, **result})
        print(f"  match+render {n:,} x {m:,} ...", flush=True)
        result = in_child("scale.measure", subscribers=n, papers=m)
        curves.append(
            {
                "series": "match+render",
                "subscribers": n,
                "papers": m,
                "seconds": result["seconds"],
                "peak_mb": result["peak_mb"],
                "sent": result["emails"],
            }
        )
    return curves


def run_throughput(quick: bool, keep: str) -> list[dict]:
    """Issue 16's ratios: at each size, match+render alone and the whole pipeline to the
    outbox in turn, the profile file read and checked (cold) or as a later run finds it
    cached (warm): alone, cold, alone, warm, alone, and so on for ``ROUNDS`` rounds. Each
    pipeline run is timed against the mean of the alone runs on either side of it (this VM's
    speed drifts by a fifth within minutes, and the drift between neighbours is what stays
    in the ratio); a size's ratio is the median of its runs'. A run during which the host
    took more than ``STEAL_MAX`` of the cores' time is measured again (measure.quietly).
    Each outbox is kept in ``keep`` until the end of the run (measure.py says why)."""
    rows = []
    for n in (5_000,) if quick else THROUGHPUT:
        rounds = 1 if quick else ROUNDS[n]
        print(f"  throughput {n:,} x {BASE_PAPERS:,}, {rounds} round(s) ...", flush=True)
        alone = [_alone(n)]
        runs: dict[str, list[Quiet]] = {"cold": [], "warm": []}
        for _ in range(rounds):
            for kind in ("cold", "warm"):
                run = quietly(functools.partial(_pipeline, n, kind == "warm", keep))
                alone.append(_alone(n))
                run.result["reference"] = (
                    alone[-2].result["seconds"] + alone[-1].result["seconds"]
                ) / 2
                runs[kind].append(run)
        rows.append(_throughput_row(n, alone, runs))
    return rows


def _pipeline(subscribers: int, warm: bool, keep: str) -> dict:
    """The whole pipeline to the outbox, in a fresh process, its project kept in ``keep``."""
    return in_child(
        "pipeline.measure",
        subscribers=subscribers,
        papers=BASE_PAPERS,
        where="outbox",
        warm=warm,
        keep_in=room_for(keep, subscribers),
    )


def _alone(subscribers: int) -> Quiet:
    """match+render alone, in a fresh process (its result's "seconds")."""
    return quietly(
        functools.partial(in_child, "scale.measure", subscribers=subscribers, papers=BASE_PAPERS)
    )


def _throughput_row(n: int, alone: list[Quiet], runs: dict[str, list[Quiet]]) -> dict:
    """A size's row of figures: every alone run, and per kind (cold, warm) each run's
    seconds and ratio, their medians, and the highest peak memory and file-creation cost;
    the host's steal during each kept run, and how many runs were measured again."""
    seconds = [quiet.result["seconds"] for quiet in alone]
    row: dict = {"subscribers": n, "papers": BASE_PAPERS, "match+render": statistics.mean(seconds)}
    row["match+render_runs"] = seconds
    row["match+render_steal"] = [quiet.steal for quiet in alone]
    kept = [*alone, *runs["cold"], *runs["warm"]]
    row["steal_max"] = STEAL_MAX
    row["measured_again"] = sum(quiet.attempts - 1 for quiet in kept)
    for kind, quiets in runs.items():
        measured = [quiet.result for quiet in quiets]
        ratios = [run["reference"] / run["seconds"] for run in measured]
        row[kind] = statistics.median(run["seconds"] for run in measured)
        row[f"{kind}_runs"] = [run["seconds"] for run in measured]
        row[f"{kind}_steal"] = [quiet.steal for quiet in quiets]
        row[f"ratios_{kind}"] = ratios
        row[f"ratio_{kind}"] = statistics.median(ratios)
        row[f"{kind}_create_us"] = max(run["create_us"] for run in measured)
        row[f"{kind}_peak_mb"] = max(run["peak_mb"] for run in measured)
    return row


def linearity(curves: list[dict]) -> dict:
    """Per series: the cost per subscriber at the largest size over that at the next one down
    (1,000 papers). 1 = linear; below 1, fixed start-up costs still show at the smaller size;
    above 1, cost grows faster than the list."""
    out = {}
    for series in (*SINKS, "match+render"):
        points = sorted(
            (c["subscribers"], c["seconds"])
            for c in curves
            if c["series"] == series and c["papers"] == BASE_PAPERS
        )
        if len(points) >= 2:
            (n1, t1), (n2, t2) = points[-2:]
            out[series] = (t2 / n2) / (t1 / n1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a check, not figures")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="default: bench/results.json, with --delivery bench/results-delivery.json",
    )
    parser.add_argument("--no-curves", action="store_true", help="stages only")
    parser.add_argument(
        "--delivery", action="store_true", help="issue 16 only: ledger, send, dkim, throughput"
    )
    parser.add_argument(
        "--throughput", action="store_true", help="issue 41 only: the throughput rounds"
    )
    args = parser.parse_args()
    args.delivery = args.delivery or args.throughput  # (neither workers nor curves)
    if args.out is None:  # (a --delivery run must not replace the full run's figures)
        name = "throughput" if args.throughput else "delivery" if args.delivery else ""
        args.out = HERE / (f"results-{name}.json" if name else "results.json")
    kept = () if args.throughput else ("ledger", "send", "dkim") if args.delivery else STAGES
    for name in [n for n in STAGES if n not in kept]:
        del STAGES[name]
    started = time.perf_counter()
    results: dict = {
        "command": "python bench/run.py"
        + (" --quick" if args.quick else "")
        + (" --throughput" if args.throughput else " --delivery" if args.delivery else ""),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
    }
    print("stages:", flush=True)
    results["stages"] = run_stages(args.quick)
    with scratch() as keep:
        print("throughput:", flush=True)
        results["throughput"] = run_throughput(args.quick, keep)
        if not args.delivery:
            print("workers (PostgreSQL):", flush=True)
            results["workers"] = in_child("workers.measure", **WORKERS[args.quick])
        if not args.no_curves and not args.delivery:
            print("curves:", flush=True)
            results["curves"] = run_curves(args.quick, keep)
            results["linearity"] = linearity(results["curves"])
    results["minutes"] = (time.perf_counter() - started) / 60
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    from report import plot, table

    print(table(results))
    for path in plot(results, args.out.parent):
        print(f"plot: {path}")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
