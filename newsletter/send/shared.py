"""A run shared by workers on any number of hosts, through PostgreSQL: the sender plans it,
queues its chunks and works on them beside any newsletter worker (ChunkWorker claims a
chunk, sends it with the same Run as a single machine, records its report)."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from newsletter.cluster.queue import CHANNEL, Chunk, Queue, RunChunk, merge, worker_id
from newsletter.config.settings import Config, WorkerSettings
from newsletter.delivery.flow import StopSignal
from newsletter.errors import (
    BusyError,
    LeaseLost,
    NewsletterError,
    StoreError,
    StoreUnavailable,
)
from newsletter.ledger.ledger import Ledger
from newsletter.matching.matcher import vocabulary
from newsletter.models import Subscriber
from newsletter.profiles.cache import profiles_of
from newsletter.profiles.load import Profiles
from newsletter.render.renderer import Renderer
from newsletter.reports import SendReport, SentItem, SkippedItem
from newsletter.send.produce import CHUNK, Producer, Produces, RenderPool
from newsletter.send.sending import STOPPED_REASON
from newsletter.send.wiring import make_renderer
from newsletter.store import postgres
from newsletter.store.backend import open_store_for
from newsletter.store.papers import Store, shared_database
from newsletter.store.weather import Weather
from newsletter.world import World

log = logging.getLogger("newsletter.worker")


class SharedRun(Protocol):
    """What the coordination of a shared run and its chunk workers ask of the run
    (``send.run.Run``), declared here: the worker path calls the send code, never the
    reverse."""

    @property
    def config(self) -> Config: ...
    @property
    def world(self) -> World: ...
    @property
    def holder(self) -> str:
        """Who holds the lock, as another process sees it."""
        ...

    @property
    def stop(self) -> StopSignal | None: ...
    @property
    def retry_failed(self) -> bool: ...
    @property
    def id(self) -> str | None:
        """The run's id (None: a new one)."""
        ...

    def plan(
        self, store: Store, subscribers: Sequence[Subscriber], share: RunChunk
    ) -> tuple[SendReport, list[str]]:
        """The planning's skips, and the addresses to send to."""
        ...

    def chunk(
        self,
        store: Store,
        subscribers: Sequence[Subscriber],
        renderer: Renderer,
        share: RunChunk,
        retry_failed: bool,
        stop: StopSignal | None,
        producer: Produces | None = None,
    ) -> SendReport:
        """One chunk sent (its digests made by ``producer``); its report."""
        ...

    def renders_idle(self) -> bool:
        """Whether rendering workers take only CPU nothing else wants."""
        ...


@dataclass(frozen=True)
class Made:
    """What the sender has made already, for its chunk worker (making them again cost a
    5,000-subscriber send 0.7 s of 6, bench/workers.py): the renderer, the profile file
    as it read it (None: the worker reads it), and the rendering workers it started ahead
    (kept: the Producer's to start with)."""

    renderer: Renderer
    profiles: Profiles | None = None
    pool: RenderPool | None = None


def coordinate(
    run: SharedRun, store: Store, subscribers: Sequence[Subscriber], made: Made | None = None
) -> SendReport:
    """Carry out ``run`` as a shared run: finish the runs an earlier sender left (it died,
    or was stopped), plan this one, queue its chunks, work on them beside any workers, and
    return once all are done, with every chunk's report merged."""
    db = shared_database(store)
    if not db.try_lock(postgres.SEND_LOCK):
        raise BusyError(
            f"another send, or the scheduler of `newsletter run`, is sending from {store.where}"
            "; wait for it to finish (newsletter workers shows its progress) and run again"
        )
    try:
        queue = Queue(store)
        worker = ChunkWorker(store, run, worker_id(run.holder), made)
        weather = worker.weather
        skipped, addresses = SendReport((), (), ()), []
        lost: StoreUnavailable | None = None
        try:
            reports, earlier = _finish_earlier(queue, worker, store)
            as_of = run.world.now()
            run_id = run.id or uuid.uuid4().hex
            share = RunChunk(run_id, as_of, _no_fence)
            skipped, addresses = weather.run(lambda: run.plan(store, subscribers, share))
            if addresses and not worker.stopping:
                size = run.config.workers.chunk_size
                chunks = [addresses[i : i + size] for i in range(0, len(addresses), size)]
                weather.run(
                    lambda: queue.open_run(run_id, as_of, run.holder, run.retry_failed, chunks)
                )
                worker.work([run_id])
                reports += weather.run(lambda: queue.reports(run_id))
        except StoreUnavailable as exc:  # (away past store_retry: report what this one did)
            lost, reports, earlier = exc, [*worker.finished, *worker.cut_short], set()
        finally:
            worker.leave()
        report = _sent_before(merge(skipped, [*reports, *worker.handed_back]), earlier)
        if lost is not None:
            left = _left(report, addresses, STORE_LOST_REASON)
            return replace(left, store_lost=str(lost))
        if worker.stopping:
            return replace(_left(report, addresses, STOPPED_REASON), stopped=True)
        return report
    finally:
        with contextlib.suppress(StoreError):  # (a connection gone for good frees it)
            db.unlock(postgres.SEND_LOCK)


STORE_LOST_REASON = (
    "not sent yet: the database went away before their chunk was done (the next send, or "
    "a worker, sends it; nobody gets a copy)"
)


def _left(report: SendReport, addresses: list[str], reason: str) -> SendReport:
    """A run ended (a signal, the database gone) before its chunks were done: a skip for
    each planned subscriber no chunk served (their chunks stay queued for the next send or
    a worker)."""
    listed = {item.subscriber.casefold() for item in (*report.sent, *report.failed)}
    listed |= {item.subscriber.casefold() for item in report.skipped}
    left = [SkippedItem(a, reason) for a in addresses if a.casefold() not in listed]
    return replace(report, skipped=report.skipped + tuple(left))


def _finish_earlier(
    queue: Queue, worker: ChunkWorker, store: Store
) -> tuple[list[SendReport], set[str]]:
    """Work the runs left unfinished (their sender died or was stopped; the lock says none
    is coordinating them now) to the end: the reports of the chunks done meanwhile, and
    who (casefolded) those runs had sent to before."""
    weather = worker.weather
    since = weather.run(queue.clock)
    runs = weather.run(queue.unfinished)
    earlier = weather.run(lambda: Ledger(store).sent_in_runs(runs))
    for run_id in runs:
        log.info("finishing run %s, left unfinished by an earlier send", run_id[:8])
    worker.work(runs)
    reports = weather.run(lambda: [r for run in runs for r in queue.reports(run, since)])
    return reports, earlier


def _sent_before(report: SendReport, earlier: set[str]) -> SendReport:
    """The report of a send that finished interrupted runs: what those runs had sent
    before is not "sent" by this one, but skipped, saying so, and counted."""
    if not earlier:
        return report

    def before(item: SentItem | SkippedItem) -> bool:
        return item.subscriber.casefold() in earlier

    moved = [
        SkippedItem(item.subscriber, SENT_BEFORE_REASON) for item in report.sent if before(item)
    ]
    skipped = [
        SkippedItem(s.subscriber, SENT_BEFORE_REASON) if before(s) else s for s in report.skipped
    ]
    return replace(
        report,
        sent=tuple(item for item in report.sent if not before(item)),
        skipped=(*skipped, *moved),
        sent_earlier=len(moved) + sum(1 for s in report.skipped if before(s)),
    )


SENT_BEFORE_REASON = (
    "sent by the interrupted send whose run this one finished (nothing more for them now)"
)


def _closed(store: Store | None) -> None:
    """Close ``store`` if there is one, whatever state its connection is in; None."""
    if store is not None:
        with contextlib.suppress(Exception):
            store.close()


def _no_fence(db: Any) -> None:
    """Planning records no digest: nothing to fence."""


class ChunkWorker:
    """Claims chunks and sends them: for one run (``send``) or any (``newsletter worker``).

    ``base`` gives what each chunk's Run takes from its caller (stop event, transport, retry
    policy, progress callback)."""

    def __init__(self, store: Store, base: SharedRun, name: str, made: Made | None = None) -> None:
        self.config = base.config
        self.world = base.world
        # (once, not a chunk)
        self.renderer = made.renderer if made else make_renderer(self.config, self.world.environ)
        self.store = store
        self.base = base
        self.name = name
        self.queue = Queue(store)
        self.settings: WorkerSettings = self.config.workers
        self.handed_back: list[SendReport] = []  # what chunks handed back had sent
        self.finished: list[SendReport] = []  # the chunks this worker recorded done
        self.cut_short: list[SendReport] = []  # what claims the database's loss cut had done
        # its rendering workers and the papers' scans, kept from one chunk to the next
        pool = made.pool if made else None
        self.producer = Producer(idle=base.renders_idle(), pool=pool)
        self._loaded: tuple[object, Profiles, dict[str, Subscriber]] | None = None
        if made is not None and made.profiles is not None:  # (as the sender read it)
            self._keep(_stamp(self.config.subscribers), made.profiles)
        self.queue.join(name)  # (listed by `newsletter workers` from here on)
        shared_database(store).listen(CHANNEL)
        world = self.world
        self.weather = Weather(
            shared_database(store), self.config.store_retry, world.monotonic, world.sleep
        )

    @property
    def stopping(self) -> bool:
        return self.base.stop is not None and self.base.stop.is_set()

    def work(self, runs: Sequence[str] | None = None) -> None:
        """Claim and send chunks of ``runs`` until each is done, in turn (None: of any run,
        until stopped)."""
        for run in runs if runs is not None else [None]:
            while not self.stopping and self.weather.run(lambda run=run: self._step(run)):
                pass

    def _step(self, run: str | None) -> bool:
        """Claim and send one chunk (of ``run``, if given), or idle; whether to go on.
        After a lost connection the chunk in hand is claimed again (it is this worker's)
        and done again: what was accepted is not sent again, what was pending goes as it
        was."""
        chunk = self.queue.claim(self.name, self.settings.lease, run, most=CHUNK)
        if chunk is not None:
            self.send(chunk)
        elif run is not None and self.queue.left(run) == 0:
            return False
        else:
            self._idle()
        return True

    def leave(self) -> None:
        """No longer listed as live (``newsletter workers``); the rendering workers end."""
        self.producer.stop()
        with contextlib.suppress(StoreError):  # (a connection gone for good: it left)
            self.queue.leave(self.name)

    def _idle(self) -> None:
        """Until a run opens or ends (a notification), or ``poll`` seconds pass (a lease
        may have run out meanwhile)."""
        shared_database(self.store).wait(self.settings.poll)

    def send(self, chunk: Chunk) -> None:
        """Send one claimed chunk under a renewed lease, then record it done."""
        profiles, known = self._profiles()
        chosen = [known[a.casefold()] for a in chunk.subscribers if a.casefold() in known]
        missing = [a for a in chunk.subscribers if a.casefold() not in known]
        lost = threading.Event()
        halt = AnyEvent(self.base.stop, lost)
        share = RunChunk(chunk.run, chunk.as_of, self.queue.fence(self.name, chunk))
        with self._lease(chunk, lost):
            try:
                report = self.base.chunk(
                    self.store,
                    chosen,
                    self.renderer,
                    share,
                    chunk.retry_failed,
                    halt,
                    self.producer,
                )
            except NewsletterError as exc:
                if isinstance(exc, StoreUnavailable) and isinstance(exc.done, SendReport):
                    self.cut_short.append(exc.done)
                if not (lost.is_set() or isinstance(exc, LeaseLost)):
                    self._give_back(chunk)
                    raise
                log.warning("chunk %s: %s; left to the worker that took it over", chunk.label, exc)
                return
            except BaseException:
                self._give_back(chunk)
                raise
        if halt.is_set():  # stopping, or the lease lost: the rest is for another worker
            self.queue.release(self.name, chunk)
            self.handed_back.append(report)
            sent = len(report.sent)
            log.info("chunk %s: handed back (%d sent before stopping)", chunk.label, sent)
            return
        report = _with_missing(report, missing, profiles.path.name)
        if not self.queue.finish(self.name, chunk, report):
            log.warning("chunk %s was taken over before it was recorded done", chunk.label)
            return
        self.finished.append(report)
        log.info(
            "chunk %s: %d sent, %d skipped, %d failed%s",
            chunk.label,
            len(report.sent),
            len(report.skipped),
            len(report.failed),
            f" (claim {chunk.claims}: done again after a worker stopped)"
            if chunk.claims > 1
            else "",
        )

    def _profiles(self) -> tuple[Profiles, dict[str, Subscriber]]:
        """The profile file and its subscribers by address, loaded again only when the
        file changed (a chunk after another would otherwise load it each time)."""
        stamp = _stamp(self.config.subscribers)
        if self._loaded is None or self._loaded[0] != stamp or stamp is None:
            self._keep(stamp, profiles_of(self.config))
        assert self._loaded is not None
        return self._loaded[1], self._loaded[2]

    def _keep(self, stamp: object, profiles: Profiles) -> None:
        known = {s.email.casefold(): s for s in profiles.subscribers}
        self._loaded = (stamp, profiles, known)
        self.producer.vocabulary = vocabulary(profiles.subscribers)

    def _give_back(self, chunk: Chunk) -> None:
        """After a failure: hand ``chunk`` back at once rather than when its lease ends (if
        the database still answers; if not, the lease ends)."""
        try:
            self.queue.release(self.name, chunk)
        except Exception:
            log.debug("handing chunk %s back failed", chunk.label, exc_info=True)

    @contextmanager
    def _lease(self, chunk: Chunk, lost: threading.Event) -> Iterator[None]:
        """Renew the lease on ``chunk`` every quarter of its length, on a connection of its
        own, until the block ends; set ``lost`` once another worker may have taken it."""
        done = threading.Event()
        lease = self.settings.lease

        def renew() -> None:
            own: Store | None = None
            try:
                while not done.wait(lease / 4):
                    try:
                        own = own or open_store_for(self.config, self.world.environ)
                        if not Queue(own).renew(self.name, chunk, lease):
                            lost.set()
                            return
                    except StoreError as exc:  # (the chunk's own steps ride it out)
                        log.debug("renewing the lease on %s: %s", chunk.label, exc)
                        own = _closed(own)
            finally:
                _closed(own)

        thread = threading.Thread(target=renew, name=f"lease {chunk.label}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What tells a changed file (None: there is none)."""
    stat = path.stat() if path.exists() else None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino) if stat else None


class AnyEvent:
    """Set when any of its events is: a worker's stop, or the loss of a chunk's lease."""

    def __init__(self, *events: StopSignal | None) -> None:
        self.events = [event for event in events if event is not None]

    def is_set(self) -> bool:
        """Is any of the events set?"""
        return any(event.is_set() for event in self.events)


def _with_missing(report: SendReport, missing: list[str], file: str) -> SendReport:
    """Add a skip for each address of the chunk this worker's profile file lacks."""
    if not missing:
        return report
    reason = (
        f"not in {file} on {socket.gethostname()}: every host must have the same profile "
        "file (deploy it with the config)"
    )
    skipped = report.skipped + tuple(SkippedItem(address, reason) for address in missing)
    return replace(report, skipped=skipped)
