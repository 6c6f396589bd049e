"""Scale benchmark: N subscribers x M papers through match and render to final message
bytes, on every core, with the peak memory of all processes together.

Run:  python bench/scale.py [--subscribers 100000] [--papers 1000] [--workers 2]

Subscribers and papers come from bench/match.py (20 keywords each from a 2,000-term
vocabulary; dense: every subscriber fills 10 slots). Memory is sampled from /proc every
0.1 s over the parent and its worker processes (resident sizes summed: shared library pages
count once per process, so this errs high). Targets (issue 7): 100,000 x 1,000 in under
60 s on 2 cores, under 500 MB.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from match import NOW, build
from measure import PeakMemory, rss_mb
from render import load_config_for_bench

from newsletter.send.produce import RenderOrder, default_workers, produce
from newsletter.send.wiring import make_renderer

TARGET_SECONDS = 60
TARGET_MB = 500


def measure(subscribers: int = 100_000, papers: int = 1_000, workers: int | None = None) -> dict:
    """Produce every email (bytes counted, then dropped) and measure time, memory, CPU."""
    workers = workers or default_workers()
    subs, items = build(subscribers, papers)
    config = load_config_for_bench()
    before = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    parent_mb = rss_mb(os.getpid())
    emails = size = 0
    start = time.perf_counter()
    with PeakMemory() as memory:
        order = RenderOrder(subs, items, config.matching, make_renderer(config, {}), NOW, {})
        for item in produce(order, workers=workers):
            if item.email:
                emails += 1
                size += len(item.email.data)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = [
        (a.ru_utime + a.ru_stime) - (b.ru_utime + b.ru_stime)
        for a, b in zip(after, before, strict=True)
    ]
    return {
        "subscribers": subscribers,
        "papers": papers,
        "workers": workers,
        "seconds": seconds,
        "emails": emails,
        "message_bytes": size,
        "peak_mb": memory.peak_mb,
        "parent_before_mb": parent_mb,
        "cpu_seconds": {"parent": cpu[0], "workers": cpu[1]},
        "ratios": {
            f"time / target ({TARGET_SECONDS} s)": seconds / TARGET_SECONDS,
            f"peak memory / target ({TARGET_MB} MB)": memory.peak_mb / TARGET_MB,
        },
        "met": seconds < TARGET_SECONDS and memory.peak_mb < TARGET_MB,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--papers", type=int, default=1_000)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    result = measure(args.subscribers, args.papers, args.workers)
    print(
        f"{args.subscribers:,} subscribers x {args.papers:,} papers, {result['workers']} workers: "
        f"{result['seconds']:.1f} s, {result['emails']:,} emails "
        f"({result['message_bytes'] / 1e9:.1f} GB of message bytes)"
    )
    print(
        f"  peak memory, all processes: {result['peak_mb']:.0f} MB "
        f"(parent before producing: {result['parent_before_mb']:.0f} MB)"
    )
    cpu = result["cpu_seconds"]
    print(f"  CPU: workers {cpu['workers']:.1f} s, parent {cpu['parent']:.1f} s")
    for name, value in result["ratios"].items():
        print(f"  {name:<30} {value:5.2f}")
    print("targets met" if result["met"] else "TARGETS MISSED")
    sys.exit(0 if result["met"] else 1)


if __name__ == "__main__":
    main()
