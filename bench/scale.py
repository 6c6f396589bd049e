"""Scale benchmark: N subscribers x M papers through match and render to final message
bytes, on every core, with the peak memory of all processes together.

Run:  python bench/scale.py [--subscribers 100000] [--papers 1000] [--workers 2]

Subscribers and papers come from bench/match.py (20 keywords each from a 2,000-term
vocabulary; dense: every subscriber fills 10 slots). Memory is sampled from /proc every
0.2 s over the parent and its worker processes. Targets (issue 7): 100,000 x 1,000 in under
60 s on 2 cores, under 500 MB.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from match import NOW, build

from newsletter.config import load_config
from newsletter.produce import Order, produce


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if stat.read().rsplit(")", 1)[1].split()[1] == str(pid):
                        found.append(int(entry))
            except OSError:
                continue
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--papers", type=int, default=1_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    subscribers, papers = build(args.subscribers, args.papers)
    folder = Path(tempfile.mkdtemp())
    (folder / "config.yaml").write_text("sender: Research digest <digest@example.org>\n")
    config = load_config(folder / "config.yaml")
    peak, stop, me = [0.0], threading.Event(), os.getpid()

    def sample() -> None:
        while not stop.wait(0.2):
            peak[0] = max(peak[0], rss_mb(me) + sum(rss_mb(c) for c in children(me)))

    threading.Thread(target=sample, daemon=True).start()
    before = rss_mb(me)
    start = time.perf_counter()
    emails = size = 0
    order = Order(subscribers, papers, config, NOW, {}, {})
    for item in produce(order, workers=args.workers):
        if item.email:
            emails += 1
            size += len(item.email.data)
    seconds = time.perf_counter() - start
    stop.set()
    print(
        f"{args.subscribers:,} subscribers x {args.papers:,} papers, {args.workers} workers: "
        f"{seconds:.1f} s, {emails:,} emails ({size / 1e9:.1f} GB of message bytes)"
    )
    print(
        f"  peak memory, all processes: {peak[0]:.0f} MB (parent before producing: {before:.0f} MB)"
    )
    print(f"  time / target (60 s)     {seconds / 60:5.2f}")
    print(f"  memory / target (500 MB) {peak[0] / 500:5.2f}")


if __name__ == "__main__":
    main()
