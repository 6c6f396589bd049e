"""``newsletter run``: the long-running sender, on APScheduler 3 with an in-memory job store.

Jobs are built from the config and profiles: one per shared slot (see ``slots``), or one
global job for ``schedule.cron``. Before each run, and every few seconds, the files are
checked: a valid edit takes effect at once, an invalid one is logged with its line numbers
and the last good version keeps running. Each run fetches the configured sources (as
``newsletter fetch``), ingests new digests and sends the due subscribers with the same
``send.run.Run`` as ``newsletter send`` (same ledger, same lock, same rule for who is due: the
jobs only decide when to look).

On a PostgreSQL store several instances may run, on any hosts: one leads the schedule, the
others work on the chunks of its runs and take over when it goes (see ``leader``).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger

from newsletter.cluster.leader import Follower, Leadership
from newsletter.cluster.queue import worker_id
from newsletter.cluster.worker import live_workers
from newsletter.config.load import load_config
from newsletter.config.settings import Config
from newsletter.errors import BusyError, ConfigError, NewsletterError
from newsletter.profiles.cache import profiles_of
from newsletter.profiles.load import Profiles
from newsletter.reports import SendReport
from newsletter.schedule.slots import Slot, group_by_slot, next_fire
from newsletter.send.run import Run
from newsletter.sources.service import fetch_sources, source_status
from newsletter.store.backend import is_shared_store
from newsletter.subscribers.bounces import configured_bounces, has_imap
from newsletter.world import World

WATCH_SECONDS = 2.0
STOP_SECONDS = 10.0
AFTER_CAP = "after-cap"  # the job that runs again once a cap of smtp.rate lets more go
CATCH_UP = "catch-up"  # the run an instance makes when it starts leading the schedule


class SlotTrigger(BaseTrigger):
    """An APScheduler trigger for a slot (see ``slots.next_fire``)."""

    def __init__(self, slot: Slot) -> None:
        self.slot = slot

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        if previous_fire_time is None:
            return next_fire(self.slot, now - timedelta(microseconds=1))
        return next_fire(self.slot, previous_fire_time)

    def __str__(self) -> str:
        return f"slot[{self.slot.label}]"


@dataclass(frozen=True)
class Loaded:
    """The last good configuration and profiles, and the file times they came from."""

    config: Config
    profiles: Profiles
    stamps: tuple[float, ...]


class Daemon:
    """The scheduler process; ``serve`` runs until SIGTERM or SIGINT."""

    def __init__(self, config_path: Path, world: World, log: logging.Logger | None = None) -> None:
        self.config_path = config_path
        self.world = world
        self.log = log or logging.getLogger("newsletter.run")
        self.stop = threading.Event()
        self.loaded: Loaded | None = None
        self.rejected: tuple[float, ...] | None = None  # stamps of an invalid edit, logged once
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(max_workers=1)},
        )
        # reloads come from the watch job and from runs; changes of role from their thread
        self.lock = threading.RLock()
        self.leadership: Leadership | None = None  # PostgreSQL: the scheduling role
        self.follower: Follower | None = None  # while another instance leads

    # -- configuration --------------------------------------------------------------------
    def _stamps(self, config: Config | None) -> tuple[float, ...]:
        paths = [self.config_path] + ([config.subscribers] if config else [])
        return tuple(path.stat().st_mtime if path.exists() else -1.0 for path in paths)

    def reload(self, force: bool = False) -> bool:
        """Load the files if they changed (``force``: even if they look unchanged); True
        when a new good version took effect."""
        with self.lock:
            current = self.loaded.config if self.loaded else None
            stamps = self._stamps(current)
            if self.loaded and stamps == self.loaded.stamps and not force:
                return False
            try:
                config = load_config(self.config_path)
                profiles = profiles_of(config)
            except ConfigError as exc:
                if self.loaded is None:
                    raise
                if stamps != self.rejected:
                    self.rejected = stamps
                    for problem in exc.problems:
                        self.log.error("invalid edit: %s", problem)
                    self.log.error("keeping the last good configuration and profiles")
                return False
            self.loaded = Loaded(config, profiles, self._stamps(config))
            self.rejected = None
            return True

    # -- jobs -----------------------------------------------------------------------------
    def schedule_jobs(self) -> None:
        """(Re)build the send jobs from the loaded configuration."""
        with self.lock:
            self._schedule_jobs()

    def _schedule_jobs(self) -> None:
        assert self.loaded is not None
        config = self.loaded.config
        following = self.leadership is not None and not self.leadership.leading
        for job in self.scheduler.get_jobs():
            if job.id != "watch" and (following or job.id not in (AFTER_CAP, CATCH_UP)):
                job.remove()
        if following:
            return
        defaults = {
            "coalesce": True,  # after a sleep: one catch-up run, not one per missed slot
            "misfire_grace_time": config.schedule.misfire_grace_time,
            "max_instances": 1,
        }
        if config.sources and config.fetch.every:
            self.scheduler.add_job(
                self.fetch_job, "interval", minutes=config.fetch.every, id="fetch", **defaults
            )
            self.log.info("scheduled: fetching every %d minutes", config.fetch.every)
        if config.bounce.maildir is not None or has_imap(config):
            self.scheduler.add_job(
                self.bounce_job, "interval", minutes=config.bounce.every, id="bounces", **defaults
            )
            where = [str(config.bounce.maildir)] if config.bounce.maildir else []
            where += [f"imap://{config.bounce.imap.host}"] if has_imap(config) else []
            self.log.info(
                "scheduled: reading bounces in %s every %d minutes",
                " and ".join(where),
                config.bounce.every,
            )
        trigger = config.schedule.trigger()
        if trigger is not None:
            self.scheduler.add_job(self.run_due, trigger, args=[None], id="cron", **defaults)
            self.log.info("scheduled: cron %r (%s)", config.schedule.cron, config.schedule.timezone)
            return
        for slot, subscribers in group_by_slot(self.loaded.profiles.subscribers).items():
            self.scheduler.add_job(
                self.run_due, SlotTrigger(slot), args=[slot], id=slot.label, **defaults
            )
            self.log.info("scheduled: %s for %d subscribers", slot.label, len(subscribers))

    def watch(self, force: bool = False) -> None:
        """Every few seconds (and on SIGHUP, ``force``): take valid edits into account
        without a restart."""
        with self.lock:
            before = self.loaded.config if self.loaded else None
            if not self.reload(force):
                return
            self.log.info("configuration or profiles changed; schedule rebuilt")
            self.schedule_jobs()
            if self.follower is not None and self.loaded and self.loaded.config != before:
                self.follower.halt()  # (a worker takes its config when it starts)
                self.follower = Follower(self.loaded.config, self.world)

    def run_due(self, slot: Slot | None, catch_up: bool = False) -> None:
        """One scheduled run: ingest, then send whoever is due (by the rule ``send`` uses:
        normally the slot's subscribers, plus anyone a missed run left due); one log line,
        and one per rejected file. ``catch_up``: the run of an instance that starts leading."""
        self.watch()
        assert self.loaded is not None
        config, subscribers = self.loaded.config, self.loaded.profiles.subscribers
        label = CATCH_UP if catch_up else slot.label if slot else "cron"
        run_id = uuid.uuid4().hex
        if not catch_up and not self._claim(config, slot, label, run_id):
            return
        started = time.monotonic()
        self.fetch(config)
        try:
            run = Run(config, self.world, holder="run", stop=self.stop, id=run_id)
            report = run.send(subscribers)
        except BusyError as exc:
            self.log.warning("run %s skipped: %s", label, exc)
            return
        except NewsletterError as exc:
            self.log.error("run %s failed: %s", label, exc)
            return
        if report.store_lost:
            self.log.error("run %s ended early: %s", label, report.store_lost)
        ingested = report.ingest
        for file in ingested.rejected:
            self.log.error("%s: rejected: %s", file.path, file.error)
        if report.capped is not None:
            self.after_cap(slot, report)
        receiving = sum(1 for s in subscribers if s.receives)
        self.log.info(
            "run %s: %d due, %d files ingested (%d new papers), %d rejected, %d warnings, "
            "%d sent, %d skipped, %d failed, %.2f s%s",
            label,
            receiving - report.not_due,
            ingested.count("ingested"),
            ingested.new_papers,
            ingested.count("rejected"),
            sum(len(f.warnings) for f in ingested.files),
            len(report.sent),
            len(report.skipped) - report.not_due,
            len(report.failed),
            time.monotonic() - started,
            self._workers(config),
        )

    def _claim(self, config: Config, slot: Slot | None, label: str, run_id: str) -> bool:
        """On PostgreSQL: may this instance start the run of this fire of the slot (or
        cron)? Once per fire, whichever instance leads; a line saying why not."""
        if self.leadership is None:
            return True
        fire = config.schedule.timetable().fire_of(slot, self.world.now())
        if fire is None:
            return True
        refused = self.leadership.claim(label, fire, run_id)
        if refused is not None:
            self.log.warning(
                "run %s of %s skipped: %s", label, f"{fire:%Y-%m-%d %H:%M:%S}", refused
            )
        return refused is None

    def _workers(self, config: Config) -> str:
        """The log line's count of live workers (PostgreSQL)."""
        if self.leadership is None:
            return ""
        try:
            count = len(live_workers(config, self.world))
        except NewsletterError as exc:
            return f", workers unknown ({exc})"
        return f", {count} worker{'s' if count != 1 else ''}"

    def after_cap(self, slot: Slot | None, report: SendReport) -> None:
        """A cap of smtp.rate stopped the run: run again once it lets more go."""
        assert report.capped is not None
        when = report.capped.resets_at
        self.scheduler.add_job(
            self.run_due, "date", run_date=when, args=[slot], id=AFTER_CAP, replace_existing=True
        )
        self.log.warning(
            "%d due subscribers held back: %s is reached; running again at %s",
            report.held,
            report.capped.describe(),
            f"{when:%Y-%m-%d %H:%M %Z}",
        )

    def fetch_job(self) -> None:
        """The interval fetch (``fetch.every``), between send runs."""
        self.watch()
        assert self.loaded is not None
        self.fetch(self.loaded.config)

    def bounce_job(self) -> None:
        """Read new bounce, complaint and unsubscribe messages of ``bounce.maildir`` and
        ``bounce.imap``."""
        self.watch()
        assert self.loaded is not None
        try:
            decisions = configured_bounces(self.loaded.config, self.world)
        except NewsletterError as exc:
            self.log.error("reading bounces failed: %s", exc)
            return
        if decisions:  # (each one is logged by process_bounces, as "newsletter.bounces")
            self.log.info("read bounce and unsubscribe mail: %d decisions", len(decisions))

    def fetch(self, config: Config) -> None:
        """Fetch the configured sources (before each run); a line per request, problems as
        errors; a failure never stops the run."""
        if not config.sources:
            return
        try:
            report = fetch_sources(config, self.world)
        except NewsletterError as exc:
            self.log.error("fetch failed: %s", exc)
            return
        for result in report.results:
            if result.status == "failed":
                self.log.error("fetch %s: %s", result.source, result.error)
            else:
                self.log.info(
                    "fetch %s: %s (%d papers)", result.source, result.status, result.papers
                )
        for status in source_status(config, self.world):
            if status.stale:
                since = f"{status.newest_paper:%Y-%m-%d}" if status.newest_paper else "ever"
                self.log.warning(
                    "source %s is stale: no new papers since %s (see newsletter sources)",
                    status.name,
                    since,
                )

    # -- the scheduling role (PostgreSQL) ---------------------------------------------------
    def contend(self) -> None:
        """Lead the schedule if no instance does (then catch up and build the jobs), or
        follow: work on chunks, and try again at the next call."""
        assert self.leadership is not None and self.loaded is not None
        with self.lock:
            was = self.leadership.leading
            leading = self.leadership.contend()
            if leading and not was:
                self._lead()
            elif not leading and (was or self.follower is None):
                self._follow(lost=was)

    def _lead(self) -> None:
        assert self.leadership is not None
        if self.follower is not None:
            self.follower.halt()
            self.follower = None
        self.log.info(
            "leading the schedule as %s: a catch-up run, then the jobs", self.leadership.name
        )
        self.schedule_jobs()
        self.scheduler.add_job(
            self.run_due,
            args=[None],
            kwargs={"catch_up": True},
            id=CATCH_UP,
            replace_existing=True,
        )

    def _follow(self, lost: bool) -> None:
        assert self.loaded is not None
        if lost:
            self.log.error("lost the scheduling role; following until this instance can lead")
        else:
            self.log.info(
                "following: another instance leads the schedule; working on its chunks and "
                "taking over if it goes"
            )
        self.schedule_jobs()
        self.follower = Follower(self.loaded.config, self.world)

    def _contend_loop(self, every: float) -> None:
        while not self.stop.wait(every):
            try:
                self.contend()
            except Exception:  # (the role must stay contested whatever happens once)
                self.log.exception("contending for the scheduling role failed")

    # -- the process ----------------------------------------------------------------------
    def serve(self) -> int:
        """Run until SIGTERM/SIGINT (SIGHUP reloads the files); finish the message in
        flight; exit code 0."""
        self.reload()  # a ConfigError here means there is no good version to run at all
        hangup = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stop.set())
        signal.signal(signal.SIGHUP, lambda *_: hangup.set())
        self.scheduler.start()
        self.scheduler.add_job(self.watch, "interval", seconds=WATCH_SECONDS, id="watch")
        assert self.loaded is not None
        config = self.loaded.config
        if is_shared_store(config, self.world.environ):
            self.leadership = Leadership(config, self.world.environ, worker_id("run"))
            self.contend()
            every = config.workers.leader_poll
            threading.Thread(target=self._contend_loop, args=[every], daemon=True).start()
        else:
            self.schedule_jobs()
        self.log.info("running; SIGTERM or Ctrl-C stops, SIGHUP reloads the files")
        while not self.stop.wait(0.2):
            if hangup.is_set():  # handled here: a signal handler must not take locks
                hangup.clear()
                self.log.info("SIGHUP: reading the configuration and profiles again")
                self.watch(force=True)
        self.log.info("stopping: finishing the message in flight")
        stopper = threading.Thread(target=self.scheduler.shutdown, kwargs={"wait": True})
        stopper.start()
        if self.follower is not None:
            self.follower.halt(STOP_SECONDS)
        stopper.join(STOP_SECONDS)
        if self.leadership is not None:
            self.leadership.close()
        self.log.info("stopped" if not stopper.is_alive() else "stopped (a run was cut short)")
        return 0
