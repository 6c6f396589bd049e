"""The ``newsletter`` command: parses options, makes one library call, prints.

Each command returns its exit status (0, or 1 when some of the work failed); a library error
is turned into a message and its class's ``exit_code`` in one place
(``_MappedErrorsGroup``). Exit codes:
0 success, 1 some work failed (a file rejected, a delivery failed), 2 usage or configuration
errors, 128 + the signal's number when a stop signal ended a send (130 Ctrl-C, 143 SIGTERM).
Tracebacks only with ``--debug``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from newsletter import __version__
from newsletter.cluster.worker import live_workers, serve_worker
from newsletter.config.load import config_path, load_config
from newsletter.config.settings import Config
from newsletter.delivery.refusals import MAILBOX, POLICY, POLICY_HINT
from newsletter.errors import EXIT_FAILED, NewsletterError
from newsletter.matching.keywords import UNSAFE_CHARACTER
from newsletter.models import NewProfile, Paper, RenderedEmail
from newsletter.profiles.cache import profiles_of
from newsletter.profiles.load import Profiles
from newsletter.render.views import byline
from newsletter.reports import (
    FetchResult,
    FileReport,
    IngestReport,
    PreviewKind,
    SendReport,
    SourceStatus,
)
from newsletter.schedule.listing import next_sends
from newsletter.send.checkup import validate
from newsletter.send.preview import preview, send_test_copy
from newsletter.send.run import FromProfileFile, Run
from newsletter.send.sending import STOPPED_REASON
from newsletter.send.shared import STORE_LOST_REASON
from newsletter.send.wiring import try_connection
from newsletter.sources.service import fetch_sources, source_status
from newsletter.store.service import ingest_files, stored_papers
from newsletter.subscribers.service import (
    HOWS,
    resubscribe,
    subscribe,
    subscriber_history,
    subscriber_statuses,
    unsubscribe,
)
from newsletter.subscribers.signup import pending_signups
from newsletter.world import World

EXIT_OK = 0


def _echo_json(value: object) -> None:
    """Print ``value`` as ``--json`` does: objects indented, each item of a list on a line
    of its own (json's indenting encoder is pure Python: a send report of 100,000 digests
    took 1.4 s to encode, this 0.35 s; and a line per item suits grep)."""
    click.echo(_json_text(value))


def _json_text(value: object, indent: str = "") -> str:
    if isinstance(value, dict) and value:
        inner = indent + "  "
        members = (f"{inner}{_compact(key)}: {_json_text(v, inner)}" for key, v in value.items())
        return "{\n" + ",\n".join(members) + f"\n{indent}}}"
    if isinstance(value, list) and value:
        inner = indent + "  "
        return "[\n" + ",\n".join(inner + _compact(item) for item in value) + f"\n{indent}]"
    return _compact(value)


_COMPACT = json.JSONEncoder(ensure_ascii=False).encode  # (json.dumps makes one a call)


def _compact(value: object) -> str:
    return _COMPACT(value)


@dataclass
class Session:
    """Per-invocation state shared by the subcommands."""

    world: World
    config_option: str | None
    debug: bool

    def config(self) -> Config:
        """Load the configuration chosen by --config / $NEWSLETTER_CONFIG / ./config.yaml."""
        return load_config(config_path(self.config_option, self.world.environ))

    def profiles(self, config: Config) -> Profiles:
        """Load the profile file the configuration names."""
        return profiles_of(config)


class _MappedErrorsGroup(click.Group):
    """Maps a command's returned status, and library errors, to messages and exit codes;
    tracebacks only with --debug."""

    def invoke(self, ctx: click.Context):  # type: ignore[no-untyped-def]
        try:
            status = super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, BrokenPipeError):
            raise
        except NewsletterError as exc:
            self._fail(ctx, exc)
        except Exception as exc:
            if _debug(ctx):
                raise
            click.echo(
                f"newsletter: internal error: {type(exc).__name__}: {exc} "
                "(run again with --debug for the traceback, and please report it)",
                err=True,
            )
            ctx.exit(EXIT_FAILED)
        if status:
            ctx.exit(status)

    @staticmethod
    def _fail(ctx: click.Context, exc: NewsletterError) -> None:
        if _debug(ctx):
            raise exc
        for line in str(exc).splitlines():
            click.echo(f"newsletter: error: {line}", err=True)
        ctx.exit(exc.exit_code)


def _debug(ctx: click.Context) -> bool:
    session = ctx.find_object(Session)
    return bool(session and session.debug)


@click.group(cls=_MappedErrorsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_option",
    metavar="PATH",
    help="Config file (default: $NEWSLETTER_CONFIG, else ./config.yaml).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(__version__, prog_name="newsletter")
@click.pass_context
def cli(ctx: click.Context, config_option: str | None, debug: bool) -> None:
    """Personalized research-paper email digests from daily paper listings."""
    world = ctx.obj if isinstance(ctx.obj, World) else World()
    ctx.obj = Session(world, config_option, debug)


@cli.command("ingest")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--listing-date",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="The listing's date (YYYY-MM-DD), instead of resolving the file's year-less date.",
)
@click.pass_obj
def ingest_command(session: Session, paths: tuple[Path, ...], listing_date: datetime | None) -> int:
    """Read digest files into the store (default: new files in the digests folder)."""
    day = listing_date.date() if listing_date else None
    report = ingest_files(session.config(), session.world, paths, day)
    _print_ingest_report(report)
    return EXIT_FAILED if report.rejected else EXIT_OK


def _print_ingest_report(report: IngestReport) -> None:
    for file in report.files:
        click.echo(f"{_display_path(file.path)}: {_file_summary(file)}")
        _print_warnings(file)
    click.echo(
        f"{_plural(len(report.files), 'file')}: {report.count('ingested')} ingested, "
        f"{report.count('skipped')} already ingested, {report.count('rejected')} rejected; "
        f"{_plural(report.new_papers, 'new paper')}"
    )


def _print_warnings(file: FileReport) -> None:
    name = _display_path(file.path)
    for warning in file.warnings:
        where = f"{name}:{warning.line}" if warning.line else name
        click.echo(f"{where}: warning: {warning.message}", err=True)


def _file_summary(file: FileReport) -> str:
    if file.status == "skipped":
        return "skipped (already ingested)"
    if file.status == "rejected":
        return f"rejected: {file.error}"
    assert file.listing_date is not None
    return (
        f"{_plural(file.cards, 'card')}, {_plural(file.new_papers, 'new paper')}, "
        f"{_plural(len(file.warnings), 'warning')} (listing of {file.listing_date.isoformat()})"
    )


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _display_path(path: str) -> str:
    """``path`` relative to the working folder when it lies inside it."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return path
    return path if relative.startswith("..") else relative


@cli.command("fetch")
@click.option("--source", "names", multiple=True, metavar="NAME", help="Only this source.")
@click.option(
    "--date",
    "day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="The listing date to fetch (default: the source's recent days, UTC: today and "
    "yesterday for hf_daily, the last 4 days for arxiv_query).",
)
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Fetch every listing date from this one to --date.",
)
@click.option("--refresh", is_flag=True, help="Ask again for dates already fetched.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
@click.pass_obj
def fetch_command(
    session: Session,
    names: tuple[str, ...],
    day: datetime | None,
    since: datetime | None,
    refresh: bool,
    as_json: bool,
) -> int:
    """Fetch the configured sources into the digests folder, then ingest it."""
    days: list[date] = []  # none given: each source's recent days
    if day or since:
        last = day.date() if day else session.world.now().date()
        first = since.date() if since else last
        if first > last:
            raise click.BadParameter("--since is after --date", param_hint="--since")
        days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    report = fetch_sources(session.config(), session.world, names, days, refresh)
    if as_json:
        _echo_json(report.to_json())
    else:
        for result in report.results:
            click.echo(_fetch_line(result), err=result.status == "failed")
        _print_ingest_report(report.ingest)
    return EXIT_FAILED if report.failed or report.ingest.rejected else EXIT_OK


def _fetch_line(result: FetchResult) -> str:
    if result.status == "failed":
        return f"{result.source}: failed: {result.error}"
    where = f" -> {_display_path(result.path)}" if result.path else ""
    papers = f", {_plural(result.papers, 'paper')}" if result.papers else ""
    if result.status == "empty":
        return f"{result.source}: {result.url}: no papers (not published yet, or a day off)"
    return f"{result.source}: {result.status}{papers}{where}"


@cli.command("sources")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_obj
def sources_command(session: Session, as_json: bool) -> None:
    """Each configured source: last success, last error, new papers a day, stale or not."""
    statuses = source_status(session.config(), session.world)
    if as_json:
        _echo_json([s.to_json() for s in statuses])
        return
    if not statuses:
        click.echo("no sources configured (add a 'sources:' list to the config file)")
    for status in statuses:
        click.echo(_source_line(status))


def _source_line(status: SourceStatus) -> str:
    def when(moment: datetime | None) -> str:
        return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else "never"

    line = (
        f"{status.name} ({status.type}, {status.url}): last success {when(status.last_success)}"
        f", {status.papers_per_day:.1f} new papers a day this week"
    )
    if status.last_error:
        line += f"; last error {when(status.last_error_at)}: {status.last_error}"
    if status.stale:
        line += f"; STALE: nothing new since {when(status.newest_paper)}"
    return line


@cli.command("papers")
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Only papers first seen on or after this date (UTC).",
)
@click.option("--source", metavar="NAME", help="Only papers first seen in this source (or file).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_obj
def papers_command(
    session: Session, since: datetime | None, source: str | None, as_json: bool
) -> None:
    """List the stored papers, newest listing first."""
    papers = stored_papers(session.config(), session.world, since.date() if since else None, source)
    if as_json:
        _echo_json([p.to_json() for p in papers])
        return
    for paper in papers:
        click.echo(_paper_line(paper))
    click.echo(f"{_plural(len(papers), 'paper')}")


@cli.command("migrate-store")
@click.option(
    "--to",
    "target",
    required=True,
    metavar="URL",
    help="The PostgreSQL database to copy into (postgresql://user@host/db; the password from "
    "store_password_env).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@click.pass_obj
def migrate_store_command(session: Session, target: str, as_json: bool) -> None:
    """Copy the SQLite store into an empty PostgreSQL database, and verify the counts."""
    from newsletter.store.migrate import migrate_store

    report = migrate_store(session.config(), session.world.environ, target)
    if as_json:
        _echo_json(report.to_json())
        return
    for table in report.tables:
        click.echo(f"{table.table:<18} {table.target:>10,} rows")
    click.echo(
        f"copied {report.source} into {report.target}; the counts match. To use it, set "
        f"'store: {report.target}' in the config (the SQLite file is left as it was)."
    )


def _paper_line(paper: Paper) -> str:
    published = paper.published.isoformat() if paper.published else "-" * 10
    credit = (
        paper.organization
        or byline(paper.details.authors)
        or (_plural(paper.authors_count, "author") if paper.authors_count is not None else "")
    )
    counters = f"{paper.comments:>3}c {paper.upvotes if paper.upvotes is not None else '-':>4}↑"
    line = f"{paper.listing_date.isoformat()}  {published}  {counters}  {paper.title}"
    line = f"{line}  [{credit}]" if credit else line
    # A store filled by an older version may hold escape sequences: never send them to a
    # terminal.
    return UNSAFE_CHARACTER.sub(" ", line)


@cli.command("validate")
@click.option(
    "--connect",
    is_flag=True,
    help="Also connect to the SMTP server (TLS and login; nothing is sent).",
)
@click.pass_obj
def validate_command(session: Session, connect: bool) -> int:
    """Check config.yaml, the environment, the templates, the profile file and the store;
    list every problem with its line."""
    path = config_path(session.config_option, session.world.environ)
    report = validate(path, session.world)
    if report.config_ok:
        click.echo(f"{_display_path(report.config)}: ok")
    if report.problems:
        for problem in report.problems:
            click.echo(problem, err=True)
        click.echo(f"{_plural(len(report.problems), 'problem')} found", err=True)
        return EXIT_FAILED
    assert report.profiles is not None
    count = _plural(report.subscribers, "subscriber")
    held = ", ".join(f"{n} {reason}" for reason, n in report.suppressed)
    receiving = f"{report.receiving} receiving" + (f"; {held}" if held else "")
    click.echo(f"{_display_path(report.profiles)}: ok, {count} ({receiving})")
    for note in report.notes:
        click.echo(f"note: {note}")
    if report.dkim is not None:
        config = session.config()
        click.echo(f"dkim: signing as {config.dkim.domain}; publish TXT {report.dkim[0]}:")
        click.echo(f"  {report.dkim[1]}")
    if connect:
        return _check_connection(session.config(), session.world)
    return EXIT_OK


def _check_connection(config: Config, world: World) -> int:
    try:
        said = try_connection(config, world.environ)
    except NewsletterError as exc:
        click.echo(str(exc), err=True)
        return EXIT_FAILED
    click.echo(said or f"delivery is {config.delivery}: there is no server to connect to")
    return EXIT_OK


@cli.command("preview")
@click.option("--subscriber", "email", required=True, metavar="EMAIL", help="Whose digest.")
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="From every paper of the lookback window, as if nothing had been sent yet.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the matches as JSON.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write DIR/<email>.html, .txt and .eml (the exact bytes a send would deliver).",
)
@click.pass_obj
def preview_command(
    session: Session, email: str, everything: bool, as_json: bool, out: Path | None
) -> None:
    """Show what `send --subscriber EMAIL` would send now; sends and records nothing."""
    config = session.config()
    (subscriber,) = session.profiles(config).named([email])
    shown = preview(config, session.world, subscriber, everything)
    rendered = shown.email
    if as_json:
        _echo_json(shown.to_json())
        if out is None:
            return
    if rendered is None:
        if shown.kind is PreviewKind.SUPPRESSED:  # the reason says since when and how
            reason = f"{shown.reason} (newsletter resubscribe {subscriber.email} lifts it)"
        elif not shown.digests:
            reason = "nothing ingested yet: run `newsletter ingest`"
        else:
            reason = (
                f"{shown.reason} (set send_empty: true in the config to send a short note instead)"
            )
        click.echo(f"no email for {subscriber.email}: {reason}", err=as_json)
        return
    if shown.pending:
        click.echo(
            f"a digest for {subscriber.email} from an interrupted run is pending: the next "
            "send hands it over again as it is",
            err=True,
        )
    if out is not None:
        for path in write_preview(rendered, out):
            click.echo(f"wrote {_display_path(str(path))}", err=as_json)
    elif not as_json:
        click.echo(rendered.text, nl=False)


def write_preview(rendered: RenderedEmail, folder: Path) -> list[Path]:
    """Write the HTML, text and .eml of ``rendered`` into ``folder``; return the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = rendered.subscriber.replace("/", "_")
    paths = [folder / f"{stem}.html", folder / f"{stem}.txt", folder / f"{stem}.eml"]
    paths[0].write_text(rendered.html, encoding="utf-8")
    paths[1].write_text(rendered.text, encoding="utf-8")
    paths[2].write_bytes(rendered.data)
    return paths


@cli.command("send")
@click.option(
    "--subscriber",
    "emails",
    multiple=True,
    metavar="EMAIL",
    help="Only these subscribers (repeat the option for several).",
)
@click.option(
    "--now",
    "ignore_schedule",
    is_flag=True,
    help="Everyone now, due or not (naming subscribers implies it).",
)
@click.option("--dry-run", is_flag=True, help="Render and report; deliver and record nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--retry-failed", is_flag=True, help="Offer again papers whose delivery failed for good (5xx)."
)
@click.option(
    "--to",
    metavar="ADDRESS",
    help="Mail the --subscriber's next digest to ADDRESS as a [test] copy; record nothing.",
)
@click.pass_obj
def send_command(
    session: Session,
    emails: tuple[str, ...],
    ignore_schedule: bool,
    dry_run: bool,
    as_json: bool,
    retry_failed: bool,
    to: str | None,
) -> int:
    """Ingest new digests, then send every due subscriber their digest."""
    config = session.config()
    if to is not None:
        return _send_test_copy(session, config, emails, to)
    signals = _StopSignals()
    with (
        signals.installed(),
        _progress(enabled=not as_json and sys.stdout.isatty()) as (on_result, on_start),
    ):
        run = Run(
            config,
            session.world,
            dry_run=dry_run,
            retry_failed=retry_failed,
            ignore_schedule=ignore_schedule or bool(emails),
            stop=signals.event,
            stop_grace=None,  # (each message on its way gets its smtp.message_timeout)
            on_result=on_result,
            on_start=on_start,
        )
        report = run.send(FromProfileFile(emails))
    if as_json:
        _echo_json(report.to_json())
    else:
        _print_send_report(report)
    if signals.signum is not None:
        return EXIT_SIGNALLED + signals.signum
    if report.store_lost:
        click.echo(f"newsletter: {report.store_lost}", err=True)
    failed = report.failed or report.ingest.rejected or report.store_lost
    return EXIT_FAILED if failed else EXIT_OK


EXIT_SIGNALLED = 128  # plus the signal's number, as a shell reports it: 130 SIGINT, 143 SIGTERM


class _StopNow(BaseException):
    """A second stop signal: stop at once (raised in the main thread by its handler)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _StopSignals:
    """SIGTERM and SIGINT during a send: the first stops it gracefully (nothing more handed
    over; what is on its way finishes and is recorded; the report is printed), the second
    stops it at once."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Handle the signals within the block (the previous handlers after it); a second
        signal ends the command at once with its exit status."""
        before = {signum: signal.getsignal(signum) for signum in _STOP_SIGNALS}
        for signum in _STOP_SIGNALS:
            signal.signal(signum, self._handle)
        try:
            yield
        except _StopNow as stop:
            _say(
                "newsletter: stopped at once: a message the server had accepted may be sent "
                "again by the next send (the same message, with its Message-ID)"
            )
            raise click.exceptions.Exit(EXIT_SIGNALLED + stop.signum) from None
        finally:
            for signum, handler in before.items():
                signal.signal(signum, handler)

    def _handle(self, signum: int, frame: object) -> None:
        if self.event.is_set():
            raise _StopNow(signum)
        self.signum = signum
        self.event.set()
        _say(
            "newsletter: stopping: nothing more is handed over; the messages on their way "
            "finish and are recorded (send the signal again to stop at once)"
        )


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _say(line: str) -> None:
    """A line on stderr from a signal handler (click.echo may be mid-write: os.write is
    not)."""
    os.write(2, (line + "\n").encode())


def _send_test_copy(session: Session, config: Config, emails: tuple[str, ...], to: str) -> int:
    if len(emails) != 1:
        raise click.UsageError("--to needs one --subscriber: whose digest to send as a test")
    (subscriber,) = session.profiles(config).named(emails)
    sent = send_test_copy(config, session.world, subscriber, to)
    if sent.copy is None:
        click.echo(f"no test copy for {sent.subscriber}: {sent.reason}", err=True)
        return EXIT_FAILED
    if sent.error is not None:
        click.echo(f"the test copy to {sent.to} failed: {sent.error}", err=True)
        return EXIT_FAILED
    papers = _plural(len(sent.copy.paper_ids), "paper")
    click.echo(
        f"test copy of {sent.subscriber}'s next digest ({papers}) to {sent.to} via "
        f"{sent.where}: {sent.copy.subject}; nothing recorded"
    )
    return EXIT_OK


@contextmanager
def _progress(enabled: bool) -> Iterator[tuple[Callable[[], None], Callable[[int], None]]]:
    """A progress bar on stderr, shown once the run knows how many it serves: (a step
    done, the start with the total)."""
    bars: list = []
    with ExitStack() as stack:

        def start(total: int) -> None:
            if enabled:
                bar = click.progressbar(length=total, label="sending", file=sys.stderr)
                bars.append(stack.enter_context(bar))

        def step() -> None:
            if bars:
                bars[0].update(1)

        yield step, start


def _print_send_report(report: SendReport) -> None:
    ingested = report.ingest
    if ingested.files:
        rejected = ingested.count("rejected")
        click.echo(
            f"ingested {_plural(ingested.count('ingested'), 'new digest file')} "
            f"({_plural(ingested.new_papers, 'new paper')})"
            + (f", {rejected} rejected" if rejected else "")
        )
        for file in ingested.files:
            if file.status == "rejected":
                click.echo(f"{_display_path(file.path)}: rejected: {file.error}", err=True)
            _print_warnings(file)
    if report.dry_run and ingested.count("ingested"):
        click.echo(
            "(a dry run stores new digest files as `newsletter ingest` stores them, so that it "
            "shows what the send will; it records nothing else)"
        )
    verb = "would send" if report.dry_run else "sent"
    for item in report.sent:
        again = " (resent from an interrupted run)" if item.resent else ""
        click.echo(f"{verb}: {item.subscriber}: {_plural(len(item.papers), 'paper')}{again}")
    for skipped in report.skipped:
        click.echo(f"skipped: {skipped.subscriber}: {skipped.reason}")
    for failed in report.failed:
        kind = "failed for good" if failed.permanent else "deferred, retried next run"
        click.echo(f"failed ({kind}): {failed.subscriber}: {failed.error}", err=True)
        if failed.refusal in _REFUSAL_NOTES:
            click.echo(f"  {_REFUSAL_NOTES[failed.refusal]}", err=True)
    destination = "" if report.dry_run else f" to {report.where}"
    click.echo(
        f"{len(report.sent)} {verb}{destination}, {len(report.skipped)} skipped, "
        f"{len(report.failed)} failed"
    )
    if report.sent_earlier:
        click.echo(
            f"(this send finished a run an earlier send left unfinished, which had sent "
            f"{_plural(report.sent_earlier, 'digest')} before)"
        )
    if report.stopped:
        left = sum(1 for s in report.skipped if s.reason == STOPPED_REASON)
        click.echo(
            f"stopped: {_plural(left, 'due subscriber')} left for the next send, which sends "
            "them (nobody gets a copy)"
        )
    if report.store_lost:
        left = sum(1 for s in report.skipped if s.reason == STORE_LOST_REASON)
        click.echo(
            f"the database went away: {_plural(left, 'due subscriber')} left for the next "
            "send, which sends them (nobody gets a copy)"
        )
    if report.capped is not None:
        cap = report.capped
        click.echo(
            f"{_plural(report.held, 'due subscriber')} held back: {cap.describe()} is reached; "
            f"it lets more go from {cap.resets_at:%Y-%m-%d %H:%M %Z}, and the next run from "
            "then on sends them"
        )


@cli.command("run")
@click.pass_obj
def run_command(session: Session) -> int:
    """Run the scheduler: send each subscriber their digest on their own schedule."""
    _log_to_stderr()
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    path = config_path(session.config_option, session.world.environ)
    from newsletter.schedule.daemon import Daemon

    return Daemon(path, session.world).serve()


@cli.command("worker")
@click.pass_obj
def worker_command(session: Session) -> None:
    """Claim and send chunks of the runs of a PostgreSQL store, until SIGTERM or Ctrl-C
    (start any number, on any hosts with the same config and profile file)."""
    _log_to_stderr()
    config = session.config()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    serve_worker(config, session.world, stop)


@cli.command("workers")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_obj
def workers_command(session: Session, as_json: bool) -> None:
    """List the live workers: their chunk, chunks done and messages a minute."""
    now = session.world.now()
    workers = live_workers(session.config(), session.world)
    if as_json:
        _echo_json([w.to_json(now) for w in workers])
        return
    for worker in workers:
        click.echo(
            f"{worker.id:<40} {worker.chunk or 'idle':<14} {worker.chunks_done:>6} chunks "
            f"{worker.messages:>8} sent {worker.per_minute(now):>8.1f}/min"
        )
    click.echo(_plural(len(workers), "live worker"))


def _log_to_stderr() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )


@cli.command("schedule")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def schedule_command(session: Session, as_json: bool) -> None:
    """List each receiving subscriber's next send time, locally and in UTC."""
    config = session.config()
    profiles = session.profiles(config)
    rows = next_sends(profiles.subscribers, session.world.now(), config.schedule)
    if as_json:
        _echo_json([row.to_json() for row in rows])
        return
    for row in rows:
        click.echo(
            f"{row.local:%a %Y-%m-%d %H:%M} {row.timezone:<20} ({row.utc:%Y-%m-%d %H:%M} UTC)  "
            f"{row.subscriber}  [{row.schedule}]"
        )
    skipped = len(profiles.subscribers) - len(rows)
    click.echo(f"{_plural(len(rows), 'subscriber')} scheduled, {skipped} paused or inactive")


@cli.command("subscribers")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.option(
    "--pending", is_flag=True, help="List sign-ups from the web waiting for their confirmation."
)
@click.pass_obj
def subscribers_command(session: Session, as_json: bool, pending: bool) -> None:
    """Each address with its status (active, paused, unsubscribed, bounced, complained) and
    why, its last digest and how many papers it was sent."""
    if pending:
        _echo_pending(session.config(), session.world, as_json)
        return
    rows = subscriber_statuses(session.config(), session.world)
    if as_json:
        _echo_json([row.to_json() for row in rows])
        return
    for row in rows:
        last = f"{row.last_digest:%Y-%m-%d %H:%M} UTC" if row.last_digest else "never"
        click.echo(
            f"{row.address}  {row.status}  ({row.why}); last digest {last}, "
            f"{_plural(row.papers_sent, 'paper')} sent"
        )
    counts = {status: sum(1 for r in rows if r.status == status) for status in _STATUSES}
    click.echo(", ".join(f"{count} {status}" for status, count in counts.items() if count))


_STATUSES = ("active", "paused", "unsubscribed", "bounced", "complained")


def _echo_pending(config: Config, world: World, as_json: bool) -> None:
    hours = timedelta(hours=config.subscribe.confirm_hours)
    requests = pending_signups(config, world)
    if as_json:
        _echo_json(
            [
                {
                    "address": r.address,
                    "asked_at": r.asked_at.isoformat(),
                    "expires": (r.asked_at + hours).isoformat(),
                    "keywords": list(r.profile.keywords),
                    "frequency": r.profile.frequency,
                    "timezone": r.profile.timezone,
                }
                for r in requests
            ]
        )
        return
    for r in requests:
        click.echo(
            f"{r.address}  asked {r.asked_at:%Y-%m-%d %H:%M} UTC, expires "
            f"{r.asked_at + hours:%Y-%m-%d %H:%M} UTC  [{', '.join(r.profile.keywords)}]"
        )
    click.echo(f"{_plural(len(requests), 'sign-up')} waiting for confirmation")


@cli.command("subscribe")
@click.argument("email")
@click.option(
    "--keywords",
    required=True,
    help='Comma-separated, as in subscribers.yaml: "pruning, distillation | KD, compress*".',
)
@click.option("--name", help="How the digest greets them.")
@click.option("--frequency", type=click.Choice(["daily", "weekly"]), help="Default: daily.")
@click.option("--day", help="The weekday of a weekly digest (monday or mon, ...).")
@click.pass_obj
def subscribe_command(
    session: Session,
    email: str,
    keywords: str,
    name: str | None,
    frequency: str | None,
    day: str | None,
) -> None:
    """Add EMAIL to subscribers.yaml with its keywords, no confirmation asked (you vouch for
    the address); refuses what `validate` would refuse, writing nothing."""
    words = tuple(word.strip() for word in keywords.split(",") if word.strip())
    profile = NewProfile(email, words, name, frequency, day)
    added = subscribe(session.config(), session.world, profile)
    subscriber = added.subscriber
    when = "never (paused)"
    if added.first_digest is not None:
        local = added.first_digest.astimezone(ZoneInfo(subscriber.timezone))
        when = f"{local:%a %Y-%m-%d %H:%M} {subscriber.timezone}"
    click.echo(f"added {subscriber.email} at {added.file}:{subscriber.line}; first digest {when}")
    if added.suppression is not None:
        click.echo(
            f"note: {subscriber.email} is {added.suppression.describe()}: no digest goes to "
            f"it until `newsletter resubscribe {subscriber.email}`",
            err=True,
        )


@cli.command("unsubscribe")
@click.argument("email")
@click.option(
    "--via",
    type=click.Choice(HOWS),
    default="cli",
    show_default=True,
    help="How the subscriber asked (mailto: they wrote to the unsubscribe address).",
)
@click.pass_obj
def unsubscribe_command(session: Session, email: str, via: str) -> None:
    """Never mail EMAIL again, whatever subscribers.yaml says (until resubscribe)."""
    suppression = unsubscribe(session.config(), session.world, email, via)
    click.echo(f"{suppression.address}: {suppression.describe()}")


@cli.command("resubscribe")
@click.argument("email")
@click.pass_obj
def resubscribe_command(session: Session, email: str) -> int:
    """Lift EMAIL's suppression (unsubscribed, bounced or complained)."""
    lifted = resubscribe(session.config(), session.world, email)
    if lifted is None:
        click.echo(f"{email}: not suppressed; nothing to lift", err=True)
        return EXIT_FAILED
    click.echo(f"{lifted.address}: resubscribed (was {lifted.describe()})")
    return EXIT_OK


@cli.command("history")
@click.option("--subscriber", "email", required=True, metavar="EMAIL", help="Whose history.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def history_command(session: Session, email: str, as_json: bool) -> None:
    """Each digest EMAIL was sent (when, papers, Message-ID, status), feedback and events."""
    history = subscriber_history(session.config(), session.world, email)
    if as_json:
        _echo_json(history.to_json())
        return
    if history.suppression:
        click.echo(f"{history.address}: {history.suppression.describe()}")
    clicks = {(c.digest, c.paper_id): c for c in history.feedback}
    for digest in history.digests:
        when = digest.sent_at or digest.created_at
        click.echo(
            f"{when:%Y-%m-%d %H:%M} UTC  {digest.status}  {digest.message_id}  "
            f"{_plural(len(digest.papers), 'paper')}"
            + (f"  ({digest.error})" if digest.error else "")
        )
        for paper in digest.papers:
            click.echo(f"    {paper}  {UNSAFE_CHARACTER.sub(' ', history.titles.get(paper, ''))}")
            click_ = clicks.get((digest.key, paper))
            if click_:
                label = "more like this" if click_.kind == "more" else "not relevant"
                click.echo(f"      feedback: {label} ({click_.at:%Y-%m-%d %H:%M} UTC)")
    for event in history.events:
        detail = f": {event.detail}" if event.detail else ""
        click.echo(f"{event.at:%Y-%m-%d %H:%M} UTC  {event.event} ({event.how}){detail}")
    if not history.digests and not history.events:
        click.echo(f"nothing sent to {history.address} yet")
    for suggestion in history.suggestions:
        click.echo(f"suggestion: {suggestion.text}")


@cli.command("bounces")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--maildir",
    "maildirs",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="A Maildir of bounces: its unseen messages are read, then marked seen.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the decisions as JSON.")
@click.pass_obj
def bounces_command(
    session: Session, paths: tuple[Path, ...], maildirs: tuple[Path, ...], as_json: bool
) -> None:
    """Read bounce, complaint and unsubscribe messages (files, mboxes, Maildirs; without
    arguments, bounce.maildir and bounce.imap) and act on them: suppress permanent
    failures, count temporary ones, unsubscribe complaints and mail to the unsubscribe
    mailbox."""
    config = session.config()
    from newsletter.subscribers.bounces import configured_bounces, has_imap, process_bounces

    if paths or maildirs:
        decisions = process_bounces(config, session.world, paths, maildirs)
    elif config.bounce.maildir is None and not has_imap(config):
        raise click.UsageError(
            "give bounce files or --maildir DIR (or set bounce.maildir or bounce.imap)"
        )
    else:
        decisions = configured_bounces(config, session.world)
    if as_json:
        _echo_json([d.to_json() for d in decisions])
        return
    for decision in decisions:
        who = decision.address or "-"
        click.echo(
            f"{_display_path(decision.source)}: {who}: {decision.kind}, {decision.action}"
            f" ({UNSAFE_CHARACTER.sub(' ', decision.detail)})"
        )
    acted = {action: sum(1 for d in decisions if d.action == action) for action in _ACTIONS}
    click.echo(
        f"{_plural(len(decisions), 'decision')}: "
        + ", ".join(f"{count} {action}" for action, count in acted.items())
    )


_ACTIONS = ("suppressed", "unsubscribed", "counted", "ignored")
_REFUSAL_NOTES = {
    MAILBOX: "the mailbox does not exist: the address is suppressed as bounced "
    "(`newsletter resubscribe` lifts it)",
    POLICY: POLICY_HINT,
}


@cli.command("serve")
@click.option("--port", type=int, help="Listen on this port (0: any free one); default serve.port.")
@click.pass_obj
def serve_command(session: Session, port: int | None) -> None:
    """Serve the subscriber pages (sign-up, unsubscribe, preferences, web copies, feeds,
    feedback) until stopped; put it behind a reverse proxy doing TLS."""
    from newsletter.web.app import serve_app  # Flask only for this command

    def ready(url: str) -> None:
        click.echo(f"serving on {url} (public_url: {config.render.public_url})", err=True)

    config = session.config()
    _log_to_stderr()  # (sign-ups refused, mails that failed: the operator's to read)
    serve_app(config, session.world, port, ready)


def main() -> None:
    """Console-script entry point."""
    try:
        cli(prog_name="newsletter")
    except BrokenPipeError:
        # The reader went away (``newsletter papers | head``): not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_FAILED)


__all__ = ["World", "cli", "main"]
