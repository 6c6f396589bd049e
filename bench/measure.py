"""Measuring helpers shared by the benchmarks: wall time and the summed peak memory of a
process tree (a pipeline with worker processes is judged by all its processes together),
and the folders the whole-pipeline runs write their outboxes into."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

# Creating files where many were deleted in the last few minutes is slow on ext4 without a
# journal (as on the 2-core VM): each new inode skips the "recently deleted" ones of its
# group, checking every one, and creating one more keeps the window open (up to 6 minutes).
# 20,000 empty files took 0.5 s in a quiet folder and 4 to 12 s beside a deleted outbox. So
# a run of bench/run.py keeps every outbox it writes until its end (SCRATCH), and reports
# what creating a file costs where it writes (create_cost).
CREATES = 2000
ROOT = Path(__file__).resolve().parent.parent


def child_env(**more: str) -> dict[str, str]:
    """The environment for a measured process: this checkout importable, and Python's
    bytecode cache on, as on a user's machine. (An environment with PYTHONDONTWRITEBYTECODE,
    as some sandboxes set, has every process compile the project's modules again: 0.15 s of
    each start, and multiprocessing passes it on to the workers, as -B.)"""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPATH": str(ROOT), **more}


@contextlib.contextmanager
def project_folder(keep_in: str | None) -> Iterator[Path]:
    """A new folder for one measured project: deleted afterwards, or, inside ``keep_in``,
    left for whoever made that to delete after the last measurement."""
    if keep_in is None:
        with tempfile.TemporaryDirectory() as folder:
            yield Path(folder)
    else:
        yield Path(tempfile.mkdtemp(dir=keep_in))


@contextlib.contextmanager
def scratch() -> Iterator[str]:
    """A folder for a whole benchmark run's projects, deleted at its end."""
    folder = tempfile.mkdtemp(prefix="newsletter-bench-")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def create_cost(folder: Path) -> float:
    """Microseconds to create one empty file in a new folder inside ``folder`` (the files
    stay: deleting them would slow the next measurement)."""
    target = Path(tempfile.mkdtemp(dir=folder, prefix="creates-"))
    start = time.perf_counter()
    for index in range(CREATES):
        os.close(os.open(target / str(index), os.O_WRONLY | os.O_CREAT, 0o600))
    return (time.perf_counter() - start) / CREATES * 1e6


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


def _parents() -> dict[int, int]:
    """Every process's parent, from /proc."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    found[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    return found


def tree(pid: int, skip: frozenset[int] = frozenset()) -> list[int]:
    """``pid`` and all its descendants, leaving out ``skip`` and theirs."""
    parents = _parents()
    members, frontier = [pid], [pid]
    while frontier:
        frontier = [p for p, parent in parents.items() if parent in frontier and p not in skip]
        members += frontier
    return members


@dataclass
class PeakMemory:
    """Samples the summed resident memory of a process tree every ``every`` seconds while
    running; ``peak_mb`` is the highest sum seen. ``skip`` leaves out helper processes
    (an SMTP sink) that are not part of what is measured."""

    pid: int = field(default_factory=os.getpid)
    every: float = 0.1
    skip: frozenset[int] = frozenset()
    peak_mb: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        """Take one sample now."""
        total = sum(rss_mb(p) for p in tree(self.pid, self.skip))
        self.peak_mb = max(self.peak_mb, total)

    def __enter__(self) -> PeakMemory:
        self.sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()


def timed(run: Callable[[], object]) -> tuple[float, object]:
    """Seconds taken by ``run()`` and its result."""
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


# The hypervisor may run other guests on this VM's cores: the time it takes is "steal" in
# /proc/stat. On the 2-core VM it came in bursts of up to 38% of the cores' time, slowing
# whichever run it hit by a third (BENCHMARKS.md), so a run it hit is measured again.
STEAL_MAX = 0.05  # of the cores' time taken during a run: above it, the run is measured again
ATTEMPTS = 3  # at most, per run; the least disturbed one is kept


def stolen_seconds() -> float:
    """CPU seconds the hypervisor has taken from this machine's cores since it booted (0
    where the system does not say)."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


@dataclass(frozen=True)
class Quiet:
    """A run measured while the host left the cores alone: its result, the share of the
    cores' time stolen during it, and how many attempts it took."""

    result: dict
    steal: float
    attempts: int


def quietly(
    run: Callable[[], dict],
    cores: int | None = None,
    stolen: Callable[[], float] = stolen_seconds,
    clock: Callable[[], float] = time.perf_counter,
) -> Quiet:
    """``run()``, made again (``ATTEMPTS`` in all at most) while more than ``STEAL_MAX`` of
    the cores' time was stolen during it; the least disturbed attempt."""
    cores = cores or len(os.sched_getaffinity(0))
    attempts: list[tuple[float, dict]] = []  # (share stolen, result)
    for _ in range(ATTEMPTS):
        stolen_before, start = stolen(), clock()
        result = run()
        attempts.append(((stolen() - stolen_before) / ((clock() - start) * cores), result))
        if attempts[-1][0] <= STEAL_MAX:
            break
    share, result = min(attempts, key=lambda attempt: attempt[0])
    return Quiet(result, share, len(attempts))
