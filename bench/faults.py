"""Fault suite: SIGKILL `newsletter send` at random points of a 2,000-subscriber run to an
aiosmtpd sink, then let the next send recover, and count what the subscribers got.

Run:  python bench/faults.py [--kills 20] [--subscribers 2000] [--papers 200] [--seed 13]

Each trial starts from the same fresh project (bench/workload.py, two SMTP connections; a
daily cron with a day's grace, so that every subscriber is due once and a run that serves
someone leaves them not due), kills `send` after a random delay drawn over the length of an
uninterrupted run (so kills land in the ingest, in the matching and rendering, and in the
delivery), then runs `send` again to the end: the recovery a cron line would make. Across
trials it prints, against an uninterrupted reference run:

- subscribers with no digest (must be 0);
- subscribers with two *different* digests (must be 0);
- same-id duplicates (a digest handed over again after a kill that came between the server's
  250 and the ledger's record: at most one per connection per kill).

Exits 1 when any bound is broken.
"""

from __future__ import annotations

import argparse
import collections
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiosmtpd.controller import Controller
from measure import child_env
from workload import write_project

ROOT = Path(__file__).resolve().parent.parent
CONNECTIONS = 2  # bench/workload.py's smtp.connections
_MESSAGE_ID = re.compile(rb"^Message-ID: (\S+)", re.MULTILINE | re.IGNORECASE)


class Recorder:
    """aiosmtpd handler: (recipient, Message-ID) of every accepted message."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.accepted: list[tuple[str, bytes]] = []

    async def handle_DATA(self, server, session, envelope):
        found = _MESSAGE_ID.search(envelope.content)
        with self.lock:
            for recipient in envelope.rcpt_tos:
                self.accepted.append((recipient, found.group(1) if found else b""))
        return "250 OK"

    def take(self) -> list[tuple[str, bytes]]:
        with self.lock:
            taken, self.accepted = self.accepted, []
        return taken


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def send(config: Path, kill_after: float | None = None) -> float:
    """`newsletter send` (by the schedule) in a child; SIGKILLed after ``kill_after`` s if
    given (and still running). The seconds it ran."""
    command = [sys.executable, "-m", "newsletter", "--config", str(config), "send"]
    env = child_env()
    start = time.perf_counter()
    child = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT
    )
    try:
        child.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGKILL)
        child.wait()
    else:
        if child.returncode not in (0,) and kill_after is None:
            raise RuntimeError(f"send failed: {child.stderr.read().decode()[-2000:]}")
    child.stderr.close()
    return time.perf_counter() - start


def tally(accepted: list[tuple[str, bytes]]) -> dict[str, dict[bytes, int]]:
    """Per recipient: each Message-ID and how many copies arrived."""
    got: dict[str, dict[bytes, int]] = collections.defaultdict(collections.Counter)
    for recipient, message_id in accepted:
        got[recipient][message_id] += 1
    return got


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--subscribers", type=int, default=2_000)
    parser.add_argument("--papers", type=int, default=200)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    recorder = Recorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with tempfile.TemporaryDirectory() as folder:
            pristine = Path(folder) / "pristine"
            config = write_project(pristine, args.subscribers, args.papers, smtp_port=port)
            # Due once, now: the last daily fire was at most a day ago, within the grace.
            with config.open("a") as handle:
                handle.write("schedule:\n  cron: '0 0 * * *'\n  misfire_grace_time: 90000\n")
            reference = Path(folder) / "reference"
            shutil.copytree(pristine, reference)
            length = send(reference / "config.yaml")
            expected = set(tally(recorder.take()))
            print(
                f"reference run: {length:.1f} s, {len(expected):,} of {args.subscribers:,} "
                "subscribers get a digest"
            )
            totals: collections.Counter[str] = collections.Counter()
            worst = 0  # the most same-id duplicates one kill caused
            for trial in range(args.kills):
                project = Path(folder) / f"trial{trial}"
                shutil.copytree(pristine, project)
                at = rng.uniform(0.0, length)
                send(project / "config.yaml", kill_after=at)
                before = len(recorder.accepted)
                send(project / "config.yaml")  # recovery: to the end
                got = tally(recorder.take())
                missing = len(expected - set(got))
                different = sum(1 for ids in got.values() if len(ids) > 1)
                copies = sum(n - 1 for ids in got.values() for n in ids.values())
                totals.update(missing=missing, different=different, copies=copies)
                worst = max(worst, copies)
                print(
                    f"kill {trial + 1:2}: at {at:5.2f} s ({before:,} accepted by then): "
                    f"no digest {missing}, two different {different}, same-id duplicates "
                    f"{copies}"
                )
                shutil.rmtree(project)
    finally:
        controller.stop()
    print(
        f"\n{args.kills} kills: subscribers with no digest {totals['missing']} (must be 0), "
        f"with two different digests {totals['different']} (must be 0), same-id duplicates "
        f"{totals['copies']} in all, at most {worst} in one kill (must be at most "
        f"{CONNECTIONS}, one per connection)"
    )
    broken = totals["missing"] or totals["different"] or worst > CONNECTIONS
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
