"""The parallel production stage: the same result as the sequential one, the same errors,
and a prompt stop when a worker fails."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from newsletter.delivery.outbox import OutboxTransport, file_name
from newsletter.errors import TemplateError
from newsletter.models import History
from newsletter.send.produce import (
    AHEAD_MAX,
    KEPT_PARALLEL_FROM,
    PARALLEL_FROM,
    Producer,
    RenderOrder,
    RenderPool,
    produce,
    start_workers,
)
from newsletter.send.wiring import make_renderer
from tests.helpers import NOW, SAMPLES, child_env, command, invoke, wait_for
from tests.render_helpers import ada, fixed_papers, project_config

# Passes start-up (it compiles), fails while rendering a digest with two papers or more.
LATE_MISTAKE = "{% if digest.papers|length > 1 %}{{ digest.no_such_field }}{% endif %}\n"


def order_for(config, subscribers, history=None) -> RenderOrder:
    renderer = make_renderer(config, {})
    return RenderOrder(subscribers, fixed_papers(), config.matching, renderer, NOW, history or {})


def test_parallel_production_equals_sequential(tmp_path: Path) -> None:
    config = project_config(tmp_path)
    count = PARALLEL_FROM + 50
    subscribers = [
        replace(ada(), email=f"reader{i}@example.org", max_papers=1 + i % 3) for i in range(count)
    ]
    # Some have received a paper already; some match nothing at all.
    history = {
        f"reader{i}@example.org": History(None, frozenset({"t-compress"}))
        for i in range(0, count, 7)
    }
    subscribers[5] = replace(subscribers[5], keywords=subscribers[5].exclude)

    def outcome(workers: int) -> dict[str, tuple]:
        return {
            item.subscriber: (
                item.email.message_id if item.email else None,
                item.email.paper_ids if item.email else None,
                item.reason,
            )
            for item in produce(order_for(config, subscribers, history), workers)
        }

    sequential = outcome(1)
    assert len(sequential) == count
    assert sequential["reader5@example.org"][0] is None
    assert "t-compress" not in sequential["reader0@example.org"][1]
    assert outcome(2) == sequential


@pytest.mark.parametrize("workers", [1, 2])
def test_with_a_spool_the_workers_write_the_messages_and_pass_on_no_bytes(
    tmp_path: Path, workers: int
) -> None:
    config = project_config(tmp_path)
    subscribers = [replace(ada(), email=f"r{i}@example.org") for i in range(PARALLEL_FROM + 10)]
    order = order_for(config, subscribers)
    spool = OutboxTransport(tmp_path / "outbox").spool()
    plain = {item.subscriber: item.email for item in produce(order, workers=1) if item.email}
    handles = len(os.listdir("/proc/self/fd"))
    spooled = list(produce(replace(order, spool=spool), workers=workers))
    if workers == 1:  # (in this process: each batch settled, its files synced and closed)
        assert len(os.listdir("/proc/self/fd")) == handles
    assert len(spooled) == len(subscribers) == len(plain)
    for item in spooled:
        email, expected = item.email, plain[item.subscriber]
        assert email is not None and expected is not None
        assert email.staged and email.data == b"" and email.message_id == expected.message_id
        written = (tmp_path / "outbox" / "tmp" / file_name(email.message_id)).read_bytes()
        assert written == b"Return-Path: <digest@example.org>\r\n" + expected.data


@pytest.mark.parametrize("workers", [1, 2])
def test_a_worker_error_keeps_its_class_and_names_the_template(tmp_path: Path, workers) -> None:
    """A template mistake that only shows when rendering surfaces in the caller as the same
    TemplateError with or without workers, naming the file and line."""
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "digest.txt.j2").write_text("Hello\n" + LATE_MISTAKE)
    config = project_config(tmp_path)
    subscribers = [replace(ada(), email=f"r{i}@example.org") for i in range(PARALLEL_FROM + 10)]
    with pytest.raises(TemplateError, match=r"templates/digest\.txt\.j2:2: .*no_such_field"):
        for _ in produce(order_for(config, subscribers), workers=workers):
            pass


def mistaken_project(folder: Path, readers: int) -> Path:
    """A project whose text template fails while rendering, with ``readers`` subscribers."""
    (folder / "templates").mkdir(parents=True)
    (folder / "templates" / "digest.txt.j2").write_text(LATE_MISTAKE)
    (folder / "digests").mkdir()
    (folder / "digests" / "mar-10.txt").write_bytes((SAMPLES / "mar-10-daily.txt").read_bytes())
    entries = "".join(
        f"  - email: r{i}@example.org\n    keywords: [pruning, distillation]\n"
        for i in range(readers)
    )
    (folder / "subscribers.yaml").write_text("subscribers:\n" + entries)
    (folder / "config.yaml").write_text("sender: Digest <digest@example.org>\n")
    return folder / "config.yaml"


@pytest.mark.parametrize("readers", [20, PARALLEL_FROM + 600])
def test_a_template_mistake_exits_2_below_and_above_the_parallel_threshold(
    tmp_path: Path, readers: int
) -> None:
    result = invoke(mistaken_project(tmp_path, readers), "send", "--now")
    assert result.exit_code == 2, result.output
    assert "digest.txt.j2:1: template error:" in result.stderr
    assert "no_such_field" in result.stderr


@pytest.mark.slow
def test_a_failing_worker_never_leaves_send_hanging(tmp_path: Path) -> None:
    """2,600 subscribers, a template that fails mid-run, output captured by pipes: each run
    exits 2 within the deadline (it used to hang forever in 2 of 3 runs)."""
    config = mistaken_project(tmp_path, PARALLEL_FROM + 600)
    for attempt in range(4):
        shutil.rmtree(tmp_path / "state", ignore_errors=True)
        started = time.monotonic()
        done = subprocess.run(
            [*command(config), "send", "--now"],
            capture_output=True,
            text=True,
            env=child_env(),
            timeout=60,
        )
        assert done.returncode == 2, (attempt, done.stderr)
        assert "no_such_field" in done.stderr
        assert time.monotonic() - started < 60


class _Unpicklable:
    """A spool that cannot travel to a worker."""

    def __init__(self) -> None:
        self.lock = threading.Lock()


def test_an_order_that_cannot_reach_the_workers_fails_at_once(tmp_path: Path) -> None:
    config = project_config(tmp_path)
    subscribers = [replace(ada(), email=f"r{i}@example.org") for i in range(PARALLEL_FROM + 10)]
    order = replace(order_for(config, subscribers), spool=_Unpicklable())  # type: ignore[arg-type]
    with RenderPool(2) as pool:
        with pytest.raises(TypeError, match="pickle"):
            next(produce(order, pool=pool))
        assert pool.stopped and not any(p.is_alive() for p in pool.processes)


def test_workers_started_ahead_render_the_same_as_workers_started_then(tmp_path: Path) -> None:
    config = project_config(tmp_path)
    subscribers = [replace(ada(), email=f"r{i}@example.org") for i in range(PARALLEL_FROM + 10)]
    order = order_for(config, subscribers)
    pool = start_workers(len(subscribers), workers=2)
    assert pool is not None and start_workers(PARALLEL_FROM - 1, workers=2) is None

    def digests(items) -> dict[str, str]:  # (workers interleave: by subscriber, hashed)
        return {i.subscriber: hashlib.sha256(i.email.data).hexdigest() for i in items}

    ahead = digests(produce(order, pool=pool))
    assert len(ahead) == len(subscribers) and ahead == digests(produce(order, workers=2))
    assert pool.stopped and not any(p.is_alive() for p in pool.processes)


def pid_and_square(number: int) -> tuple[int, int]:
    """(Worked out in a worker, or in the caller: map_ahead's test.)"""
    if number < 0:
        raise TemplateError(f"cannot square {number}")
    return os.getpid(), number * number


def test_work_handed_ahead_comes_back_in_order_and_leaves_the_workers_ready(
    tmp_path: Path,
) -> None:
    """The workers take the first AHEAD_MAX at once, while they are still starting up; the
    caller works out the next itself. Then the same workers render as usual."""
    config = project_config(tmp_path)
    subscribers = [replace(ada(), email=f"r{i}@example.org") for i in range(PARALLEL_FROM + 10)]
    order = order_for(config, subscribers)
    with RenderPool(2) as pool:
        found = list(pool.map_ahead(pid_and_square, range(AHEAD_MAX + 30)))
        assert [square for _, square in found] == [n * n for n in range(AHEAD_MAX + 30)]
        where = {pid for pid, _ in found}
        assert os.getpid() in where and where & {p.pid for p in pool.processes}
        rendered = {item.subscriber for item in produce(order, pool=pool)}
    assert rendered == {s.email for s in subscribers}


def test_an_error_in_work_handed_ahead_reaches_the_caller_and_stops_the_workers() -> None:
    with RenderPool(2) as pool:
        with pytest.raises(TemplateError, match="cannot square -3"):
            list(pool.map_ahead(pid_and_square, [1, 2, -3, 4]))
        assert pool.stopped and not any(p.is_alive() for p in pool.processes)


def worker_policy(_: int) -> tuple[int, int]:
    """(Worked out in a worker, or in the caller: its pid and scheduling policy.)"""
    return os.getpid(), os.sched_getscheduler(0)


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
@pytest.mark.parametrize("idle", [True, False])
def test_idle_workers_take_only_idle_cpu_and_render_the_same(tmp_path: Path, idle) -> None:
    """During a send over SMTP the rendering workers run as SCHED_IDLE (the run's threads
    answer the server first); they produce the same digests."""
    config = project_config(tmp_path)
    subscribers = [replace(ada(), email=f"r{i}@example.org") for i in range(PARALLEL_FROM + 10)]
    order = order_for(config, subscribers)

    def digests(items) -> dict[str, str]:
        return {i.subscriber: hashlib.sha256(i.email.data).hexdigest() for i in items}

    with RenderPool(2, idle=idle) as pool:
        workers = {p.pid for p in pool.processes}
        found = list(pool.map_ahead(worker_policy, range(AHEAD_MAX)))
        policies = {policy for pid, policy in found if pid in workers}
        produced = digests(produce(order, pool=pool))
    assert policies == {os.SCHED_IDLE if idle else os.SCHED_OTHER}
    assert produced == digests(produce(order, workers=2))
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # (the caller's own stays as it was)


def hashed(items) -> dict[str, str]:
    """Digests by subscriber, hashed (workers interleave)."""
    return {i.subscriber: hashlib.sha256(i.email.data).hexdigest() for i in items if i.email}


def test_a_producer_keeps_its_workers_from_one_order_to_the_next(tmp_path: Path) -> None:
    """A chunk worker's orders, one after another, on the same workers (each keeping the
    papers' scan); the same digests as produced alone. An order cut short stops them, and
    the next starts new ones."""
    config = project_config(tmp_path)
    subscribers = [replace(ada(), email=f"r{i}@example.org") for i in range(3 * KEPT_PARALLEL_FROM)]
    chunks = [subscribers[i : i + KEPT_PARALLEL_FROM] for i in range(0, len(subscribers), 100)]
    producer = Producer(workers=2)
    try:
        pids = []
        for chunk in chunks:
            order = order_for(config, chunk)
            assert hashed(producer.produce(order)) == hashed(produce(order, workers=1))
            assert producer.pool is not None and not producer.pool.stopped
            pids.append([p.pid for p in producer.pool.processes])
        assert pids[0] == pids[1] == pids[2]
        cut = producer.produce(order_for(config, chunks[0]))
        next(cut)
        cut.close()
        assert producer.pool.stopped and not any(p.is_alive() for p in producer.pool.processes)
        order = order_for(config, chunks[1])
        assert hashed(producer.produce(order)) == hashed(produce(order, workers=1))
        assert [p.pid for p in producer.pool.processes] != pids[0]
    finally:
        producer.stop()
    assert not any(p.is_alive() for p in producer.pool.processes)


def test_a_short_order_is_produced_here_on_the_kept_scans(tmp_path: Path) -> None:
    config = project_config(tmp_path)
    producer = Producer(workers=2)
    for start in (0, 10):
        chunk = [replace(ada(), email=f"r{i}@example.org") for i in range(start, start + 10)]
        order = order_for(config, chunk)
        assert hashed(producer.produce(order)) == hashed(produce(order, workers=1))
    assert producer.pool is None and producer.scans.scanned == 1


def test_ctrl_c_reaching_the_rendering_workers_leaves_them_to_the_sender(tmp_path: Path) -> None:
    """A terminal's Ctrl-C goes to the whole process group: the sender stops gracefully,
    and its workers must not die under it."""
    config = project_config(tmp_path)
    subscribers = [replace(ada(), email=f"r{i}@example.org") for i in range(PARALLEL_FROM + 10)]
    order = order_for(config, subscribers)
    with RenderPool(2) as pool:
        list(pool.map_ahead(pid_and_square, range(2 * AHEAD_MAX)))  # (started up)
        for process in pool.processes:
            os.kill(process.pid, signal.SIGINT)
        # (a worker that took it dies, and production fails: "a rendering worker died")
        assert len(hashed(produce(order, pool=pool))) == len(subscribers)


KILLED_SENDER = """
import os, signal, sys
from newsletter.send.produce import RenderPool

def square(n):
    return n * n

if __name__ == "__main__":
    pool = RenderPool(2)
    list(pool.map_ahead(square, range(40)))
    print(" ".join(str(p.pid) for p in pool.processes), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_rendering_workers_end_when_their_sender_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "sender.py"
    script.write_text(KILLED_SENDER)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=child_env(), timeout=60
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    pids = [int(pid) for pid in done.stdout.split()]
    assert len(pids) == 2

    def gone(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"

    assert wait_for(lambda: all(gone(pid) for pid in pids), 20)
