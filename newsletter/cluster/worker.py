"""Sends shared by workers on any number of hosts, through PostgreSQL (``store:
postgresql://...``).

A send run (``newsletter send``, or a run of the scheduler) decides who is served, cuts
their addresses into chunks and records them as jobs of the run (``send_runs``,
``send_chunks``). Any ``newsletter worker``, and the sending process itself, claims a chunk
with ``SELECT ... FOR UPDATE SKIP LOCKED`` for a lease it renews every quarter of its length,
matches, renders and delivers it with the same ``send.run.Run`` as a single machine, and
records the chunk's report. A worker that dies stops renewing; once its lease runs out
another worker claims the chunk and does it again: digests accepted in it are not sent
again (the ledger records each digest's run, and a unique index allows one digest per
subscriber and run), pending ones go again with the same Message-ID. Lease times are the
database server's clock, so the hosts' clocks do not matter. ``send`` returns once every
chunk of its run is done, so one machine needs no worker at all.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from newsletter.cluster.queue import Queue, worker_id
from newsletter.config.settings import Config
from newsletter.errors import ConfigError
from newsletter.reports import WorkerStatus
from newsletter.send.shared import ChunkWorker
from newsletter.store.backend import is_shared_store, open_store_for

if TYPE_CHECKING:
    from newsletter.world import World

log = logging.getLogger("newsletter.worker")


def serve_worker(config: Config, world: World, stop: threading.Event) -> None:
    """``newsletter worker``: claim and send chunks of any run until ``stop``."""
    from newsletter.send.run import Run

    if not is_shared_store(config, world.environ):
        raise ConfigError(
            "workers share sends through PostgreSQL: set 'store: postgresql://...' in the "
            "config (and move the SQLite store there with newsletter migrate-store)"
        )
    name = worker_id("worker")
    with open_store_for(config, world.environ) as store:
        worker = ChunkWorker(store, Run(config, world, holder="worker", stop=stop), name)
        log.info("worker %s: waiting for chunks in %s", name, store.where)
        try:
            worker.work()
        finally:
            worker.leave()
    log.info("worker %s: stopped", name)


def live_workers(config: Config, world: World) -> list[WorkerStatus]:
    """The live workers (none on SQLite)."""
    with open_store_for(config, world.environ) as store:
        if store.db.shared() is None:
            return []
        return Queue(store).live()
