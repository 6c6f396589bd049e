"""Which ``newsletter run`` schedules, when several share a PostgreSQL store.

Any number of ``newsletter run`` instances may run, on any hosts, for availability. One
leads: it holds an advisory lock on a connection of its own and runs the schedule (its runs
are shared with the workers, see ``workers``). The others follow: each works on chunks like
``newsletter worker`` and tries every ``workers.leader_poll`` seconds to take the lock.

The lock lives as long as the leader's database session. When the leader's process dies,
its socket closes and the server ends the session at once; when its host or the network
dies, the TCP keepalives this module sets on the session end it within about half a minute.
A follower then leads within one poll, runs a catch-up run (it finishes the runs its
predecessor left, then serves whoever is due) and builds the jobs.

A fire of a slot starts one run whichever instance leads: the run claims ``(slot, fire)`` in
``slot_runs`` first, and only while its session holds the lock, so a leader that lost its
session and does not know it yet cannot start a run its successor starts too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from newsletter.config.settings import Config
from newsletter.errors import NewsletterError
from newsletter.store import postgres
from newsletter.store.backend import open_store_for
from newsletter.store.papers import Store, shared_database

if TYPE_CHECKING:
    from newsletter.world import World

log = logging.getLogger("newsletter.run")

# The server ends the leader's session once its host stops answering: probes after 10 s
# of silence, every 5 s, 3 of them unanswered (about 25 s in all).
_KEEPALIVES = {
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
}

ALREADY = "another instance of newsletter run already started it"
NOT_LEADING = "this instance no longer leads the schedule"

_CLAIM_SLOT = f"""
INSERT INTO slot_runs (slot, fire, run) SELECT ?, ?, ?
WHERE {postgres.HOLDS_LOCK}
ON CONFLICT DO NOTHING
"""


class Leadership:
    """The scheduling role: the advisory lock, on a connection kept for it."""

    def __init__(self, config: Config, environ: Mapping[str, str], name: str) -> None:
        self.config = config
        self.environ = environ
        self.name = name  # how other instances see this one (application_name)
        self.store: Store | None = None
        self.leading = False

    def contend(self) -> bool:
        """Lead if no instance does; True while this one leads. A lost connection (the
        role went with it) is reported once and tried again at the next call."""
        try:
            store = self._connected()
            if self.leading:
                self.leading = shared_database(store).holds(postgres.LEADER_LOCK)
            else:
                self.leading = shared_database(store).try_lock(postgres.LEADER_LOCK)
        except Exception as exc:
            problem = self._problem(exc)
            log.error("the scheduling role's connection failed: %s", problem)
            self.close()
        return self.leading

    def claim(self, slot: str, fire: datetime, run: str) -> str | None:
        """Claim the run of ``slot`` at ``fire``; None when this instance starts it, else
        why it must not (already started, or the role was lost)."""
        try:
            store = self._connected()
            cursor = store.db.execute(
                _CLAIM_SLOT, (slot, fire.isoformat(), run, postgres.LEADER_LOCK)
            )
            if cursor.rowcount == 1:
                return None
            if not shared_database(store).holds(postgres.LEADER_LOCK):
                self.leading = False
                return NOT_LEADING
        except Exception as exc:
            problem = self._problem(exc)
            self.close()
            return f"the scheduling role's connection failed: {problem}"
        return ALREADY

    def close(self) -> None:
        """Give up the role (and the connection holding it). The lock is let go of first:
        the server frees a closed session's locks only once its backend has exited, and a
        successor polling meanwhile would find the role still taken."""
        leading, self.leading = self.leading, False
        if self.store is not None:
            store, self.store = self.store, None
            try:
                if leading:
                    shared_database(store).unlock(postgres.LEADER_LOCK)
                store.close()
            except Exception:  # (a connection already broken)
                log.debug("closing the scheduling role's connection", exc_info=True)

    def _connected(self) -> Store:
        if self.store is None:
            self.store = open_store_for(self.config, self.environ)
            for name, value in (*_KEEPALIVES.items(), ("application_name", self.name)):
                self.store.db.execute("SELECT set_config(?, ?, false)", (name, value))
        return self.store

    def _problem(self, exc: Exception) -> NewsletterError:
        if isinstance(exc, NewsletterError):
            return exc
        problem = self.store.db.problem(exc) if self.store is not None else None
        if problem is None:
            raise exc
        return problem


class Follower:
    """What a following instance does meanwhile: the worker loop (``newsletter worker``),
    in a thread of its own, started again after a failure."""

    RETRY_SECONDS = 5.0

    def __init__(self, config: Config, world: World) -> None:
        self.config = config
        self.world = world
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._work, name="follower", daemon=True)
        self.thread.start()

    def halt(self, timeout: float | None = None) -> None:
        """Stop working (the chunk in hand is handed back) and wait for the thread."""
        self.stop.set()
        self.thread.join(timeout)

    def _work(self) -> None:
        from newsletter.cluster.worker import serve_worker

        while not self.stop.is_set():
            try:
                serve_worker(self.config, self.world, self.stop)
            except NewsletterError as exc:
                log.error("working on chunks failed: %s; trying again", exc)
            except Exception:  # (a thread that dies silently would stop the work unseen)
                log.exception("working on chunks failed; trying again")
            self.stop.wait(self.RETRY_SECONDS)
