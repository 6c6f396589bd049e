"""Whole-pipeline benchmark: `newsletter send` on a generated project, in a fresh process,
from digest file and subscribers.yaml to every message delivered and recorded.

Run:  python bench/pipeline.py [--subscribers 10000] [--papers 1000] [--sink outbox|smtp]

The project comes from bench/workload.py. With --sink smtp the messages go to an aiosmtpd
sink in its own process on loopback (plain SMTP; its memory is not counted); with outbox,
into the Maildir outbox. Prints wall time, messages/s and the summed peak memory of the
command and its worker processes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from measure import PeakMemory, child_env, create_cost, project_folder
from sink import Sink
from workload import write_project


def run_send(config: Path, skip: frozenset[int] = frozenset()) -> dict[str, float]:
    """`newsletter send` for the project of ``config``, in a child process: seconds, messages
    sent and the peak memory of the child and its workers."""
    command = [
        sys.executable,
        "-m",
        "newsletter",
        "--config",
        str(config),
        "send",
        "--now",
        "--json",
    ]
    env = child_env()
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.PIPE, env=env)
        with PeakMemory(child.pid, skip=skip) as memory:
            _, errors = child.communicate()
        seconds = time.perf_counter() - start
        if child.returncode != 0:
            raise RuntimeError(f"newsletter send failed: {errors.decode()[-2000:]}")
        out.seek(0)
        report = json.load(out)
    return {"seconds": seconds, "sent": len(report["sent"]), "peak_mb": memory.peak_mb}


def warm_up(config: Path) -> None:
    """What an earlier run leaves that this one may use: the state folder, with the profile
    file's cache (``newsletter validate`` loads the profiles; nothing is ingested or sent)."""
    (config.parent / "state").mkdir(mode=0o700)
    command = [sys.executable, "-m", "newsletter", "--config", str(config), "validate"]
    env = child_env()
    subprocess.run(command, check=True, env=env, capture_output=True)


def measure(
    subscribers: int, papers: int, where: str, warm: bool = False, keep_in: str | None = None
) -> dict[str, float]:
    """One whole-pipeline run on a fresh project, to ``where`` ("outbox" or "smtp"); with
    ``warm``, as a later run with the profile file unchanged since the last one. With
    ``keep_in``, the project is made there and kept (measure.project_folder); the result
    then also says what creating a file costs there, just before the run."""
    with project_folder(keep_in) as folder:
        creates = {} if keep_in is None else {"create_us": create_cost(folder)}
        if where == "outbox":
            config = write_project(folder, subscribers, papers)
            if warm:
                warm_up(config)
            return {**run_send(config), **creates}
        with Sink() as smtp:
            config = write_project(folder, subscribers, papers, smtp_port=smtp.port)
            result = run_send(config, skip=frozenset({smtp.process.pid}))
        if smtp.accepted != result["sent"]:
            raise RuntimeError(f"sink accepted {smtp.accepted}, send reported {result['sent']}")
        return {**result, **creates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--papers", type=int, default=1_000)
    parser.add_argument("--sink", choices=["outbox", "smtp"], default="outbox")
    parser.add_argument("--warm", action="store_true", help="the profile cache of a last run")
    args = parser.parse_args()
    result = measure(args.subscribers, args.papers, args.sink, args.warm)
    print(
        f"{args.subscribers:,} subscribers x {args.papers:,} papers to {args.sink}: "
        f"{result['seconds']:.1f} s, {result['sent'] / result['seconds']:,.0f} msgs/s, "
        f"peak memory {result['peak_mb']:.0f} MB ({result['sent']:,} sent)"
    )


if __name__ == "__main__":
    main()
