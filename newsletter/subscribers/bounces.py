"""``newsletter bounces``: read bounce and complaint messages, and act on them.

A permanent failure suppresses the address (bounced); a temporary one is counted, and
``bounce.soft_limit`` of them within ``bounce.soft_days`` suppress it; a complaint
unsubscribes it; a delay notice (the server is still trying) is noted and never counted.
Only our subscribers' addresses are acted on (those of the profile file, the ledger and the
suppression list); the VERP token names the subscriber when the report names nobody we know.
Each report counts once however often it is read, and so does each lost digest however many
reports are made about it (by the Message-ID of the returned message).

The messages come from files, mboxes, Maildirs and an IMAP mailbox (``bounce.imap``).
Mail to the unsubscribe mailbox (``List-Unsubscribe``'s mailto) is read from the same
sources: its recipient's token names the subscriber, who is unsubscribed (how: mailto);
without a valid token, a mail whose From and envelope sender are one subscribed address
unsubscribes that address; anything else is reported and never acted on.
"""

from __future__ import annotations

import logging
import mailbox
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

from newsletter.config.settings import Config
from newsletter.errors import ConfigError
from newsletter.ledger.suppression import SubscriberState
from newsletter.profiles.cache import profiles_of
from newsletter.render.links import make_signer, unsubscribe_mailbox
from newsletter.reports import BounceDecision
from newsletter.store.backend import open_store_for
from newsletter.subscribers.bounce_reports import Failure, Report, classify, parse_message
from newsletter.subscribers.imap import ImapMailbox
from newsletter.subscribers.mailto import MailtoRequest, mailto_request
from newsletter.world import World

log = logging.getLogger("newsletter.bounces")


def configured_bounces(config: Config, world: World) -> list[BounceDecision]:
    """Read the configured mailboxes (``bounce.maildir``, ``bounce.imap``) and act on their
    new messages: what ``newsletter bounces`` without paths and ``run``'s interval do."""
    maildirs = [config.bounce.maildir] if config.bounce.maildir is not None else []
    if not maildirs and not has_imap(config):
        raise ConfigError("no bounce mailbox is configured: set bounce.maildir or bounce.imap")
    return process_bounces(config, world, maildirs=maildirs, imap=has_imap(config))


def has_imap(config: Config) -> bool:
    """Is a bounce mailbox on an IMAP server configured?"""
    return bool(config.bounce.imap.host)


def process_bounces(
    config: Config,
    world: World,
    paths: Sequence[Path] = (),
    maildirs: Sequence[Path] = (),
    imap: bool = False,
) -> list[BounceDecision]:
    """Read the messages of ``paths`` (files or mboxes; a folder is read as a Maildir),
    ``maildirs`` and, with ``imap``, the ``bounce.imap`` mailbox (of these two only the
    messages not yet seen, marked seen after), and act on each."""
    sources = [*paths, *maildirs]
    for path in sources:
        if not path.exists():
            raise ConfigError(f"{path}: no such file or folder of bounce messages")
    remote = ImapMailbox(config.bounce.imap, world.environ) if imap else None
    signer = make_signer(config.render, world.environ)
    bounce_address = config.render.bounce_address
    local = bounce_address.rpartition("@")[0] if bounce_address else None
    decisions: list[BounceDecision] = []
    with open_store_for(config, world.environ) as store:
        state = SubscriberState(store)
        known = _known_addresses(config, store, state)
        tokens = {
            token: address
            for address in known.values()
            for token in (signer.verp_candidates(address) if signer else [])
        }
        judge = _Judge(state, known, tokens, config, world.now())
        if signer is not None:
            judge.mailto_tokens = {
                token: address
                for address in known.values()
                for token in signer.mailto_candidates(address)
            }
        mailbox = unsubscribe_mailbox(config.render)
        for source, data in _messages(paths, maildirs, remote):
            try:
                message = parse_message(data)
                request = mailto_request(message, mailbox)
                report = None if request else classify(message, local)
            except Exception as exc:  # one unreadable message never stops the others
                decisions.append(_ignored(source, f"cannot read it: {type(exc).__name__}: {exc}"))
                continue
            if request is not None:
                message_id = str(message.get("Message-ID", "")).strip() or None
                decisions.append(judge.unsubscribe_request(source, request, message_id))
            else:
                assert report is not None
                decisions.extend(judge.decide(source, report))
    for decision in decisions:
        log.info("%s: %s: %s, %s (%s)", decision.source, decision.address or "-",
                 decision.kind, decision.action, decision.detail)  # fmt: skip
    return decisions


def _known_addresses(config: Config, store, state: SubscriberState) -> dict[str, str]:
    """Our subscribers' addresses by casefolded form: profiles, ledger, suppressions."""
    known: dict[str, str] = {}
    try:
        for subscriber in profiles_of(config).subscribers:
            known[subscriber.email.casefold()] = subscriber.email
    except ConfigError:
        pass  # a broken profile file: the ledger and the suppression list still know them
    for (key,) in store.db.execute("SELECT subscriber FROM subscribers"):
        known.setdefault(key, key)
    for key, suppression in state.suppressed().items():
        known.setdefault(key, suppression.address)
    return known


def _ignored(
    source: str, why: str, address: str | None = None, kind: str = "none"
) -> BounceDecision:
    return BounceDecision(source, address, kind, "ignored", why, subscriber=False)


class _Judge:
    """Turns reports into decisions, recording them in the store."""

    def __init__(
        self,
        state: SubscriberState,
        known: dict[str, str],
        tokens: dict[str, str],
        config: Config,
        now: datetime,
    ) -> None:
        self.state = state
        self.known = known
        self.tokens = tokens
        self.settings = config.bounce
        self.now = now
        self.mailto_tokens: dict[str, str] = {}  # token of the unsubscribe mailbox -> address

    def unsubscribe_request(
        self, source: str, request: MailtoRequest, message_id: str | None
    ) -> BounceDecision:
        """Act on a mail to the unsubscribe mailbox: unsubscribe whom its token names, or
        its sender when From and envelope are one subscribed address; else report it."""
        if message_id and not self.state.first_report(message_id, self.now):
            return _ignored(source, f"already read ({message_id})", request.sender, "unsubscribe")
        if request.automatic:
            why = f"an automatic reply (Auto-Submitted: {request.automatic}), not a request"
            return _ignored(source, why, request.sender, "unsubscribe")
        address = self.mailto_tokens.get((request.token or "").lower())
        detail = f"a mail to the unsubscribe address from {request.sender or 'nobody'}"
        if address is not None:
            detail += ", its token naming the subscriber"
        else:
            address, why = self._sender_of(request)
            if address is None:
                return _ignored(
                    source, f"{detail}: {why}; nothing done", request.sender, "unsubscribe"
                )
            detail += ", From and envelope aligned" + (
                " (its token is not valid)" if request.token else ""
            )
        if not self.state.suppress(address, "unsubscribed", "mailto", self.now, detail):
            earlier = self.state.suppression(address)
            why = f"{detail}; suppressed already ({earlier.describe() if earlier else ''})"
            return BounceDecision(source, address, "unsubscribe", "ignored", why)
        return BounceDecision(source, address, "unsubscribe", "unsubscribed", detail)

    def _sender_of(self, request: MailtoRequest) -> tuple[str | None, str]:
        """The subscribed address that sent ``request`` (From and envelope aligned), or None
        and why not."""
        known = self.known.get((request.sender or "").casefold())
        problem = "its token is not valid" if request.token else "it carries no token"
        if known is None:
            return None, f"{problem}, and its sender is not a subscriber"
        if not request.aligned():
            envelope = request.envelope or "none recorded"
            return None, f"{problem}, and its From is not its envelope sender ({envelope})"
        return known, ""

    def decide(self, source: str, report: Report) -> list[BounceDecision]:
        """What to do about ``report`` (read from ``source``); done, and returned."""
        if report.kind == "none":
            return [_ignored(source, "not a bounce or complaint report")]
        if report.message_id and not self.state.first_report(report.message_id, self.now):
            return [_ignored(source, f"already read ({report.message_id})")]
        verp = self.tokens.get(report.verp or "")
        failures = list(report.failures)
        if verp and not any(self._ours(f) for f in failures):
            # The report names nobody we know (or nobody at all): the VERP token does.
            base = failures[0] if failures else _unnamed(report)
            failures = [Failure(verp, base.permanent, base.status, base.diagnostic)]
        if not failures:
            return [_ignored(source, "a bounce naming no address, without a VERP token")]
        return [self._act(source, report, failure) for failure in failures]

    def _ours(self, failure: Failure) -> str | None:
        for name in (failure.address, *failure.also):
            if name.casefold() in self.known:
                return self.known[name.casefold()]
        return None

    def _act(self, source: str, report: Report, failure: Failure) -> BounceDecision:
        address = self._ours(failure)
        said = " ".join(filter(None, [failure.status, failure.diagnostic]))[:300]
        if address is None:
            kind = "complaint" if report.kind == "complaint" else _permanence(failure)
            return _ignored(source, f"not a subscriber ({said})", failure.address, kind)
        state, now = self.state, self.now
        if report.kind == "complaint":
            state.suppress(address, "complained", "complaint", now, said)
            return BounceDecision(source, address, "complaint", "unsubscribed", said)
        if failure.delayed:  # the same message may still arrive: its failure, if any, counts
            note = f"a delay notice (still being retried), not counted: {said}"
            return BounceDecision(source, address, "delayed", "ignored", note)
        if failure.permanent:
            state.suppress(address, "bounced", "bounce", now, said)
            return BounceDecision(source, address, "permanent", "suppressed", said)
        if report.about and not state.first_failure(address, report.about, now):
            note = f"already counted: another report about the same message {report.about}"
            return BounceDecision(source, address, "temporary", "ignored", note)
        days = self.settings.soft_days
        count = state.soft_bounce(address, now, said, days)
        if count >= self.settings.soft_limit:
            detail = f"{count} temporary failures in {days} days; the last: {said}"
            state.suppress(address, "bounced", "bounce", now, detail)
            return BounceDecision(source, address, "temporary", "suppressed", detail)
        note = f"temporary failure {count} of {self.settings.soft_limit} in {days} days: {said}"
        return BounceDecision(source, address, "temporary", "counted", note)


def _unnamed(report: Report) -> Failure:
    """The failure of a report that names no address: permanent when its text gives a 5.x.x
    status, else counted as temporary."""
    status = report.status
    said = f"the report names no address (status {status})" if status else "no report to read"
    return Failure("", bool(status and status.startswith("5")), status, said)


def _permanence(failure: Failure) -> str:
    if failure.delayed:
        return "delayed"
    return "permanent" if failure.permanent else "temporary"


def _messages(
    paths: Sequence[Path], maildirs: Sequence[Path], remote: ImapMailbox | None = None
) -> Iterator[tuple[str, bytes]]:
    """(where, bytes) of each message to read."""
    for path in paths:
        if path.is_dir() and (path / "cur").is_dir() and (path / "new").is_dir():
            yield from _maildir(path)
        elif path.is_dir():  # a folder of message files
            yield from _messages(sorted(p for p in path.iterdir() if p.is_file()), ())
        elif path.read_bytes()[:5] == b"From ":
            box = mailbox.mbox(path, create=False)
            keys = list(box.keys())
            for number, key in enumerate(keys, 1):
                yield (f"{path}#{number}" if len(keys) > 1 else str(path)), box.get_bytes(key)
        else:
            yield str(path), path.read_bytes()
    for folder in maildirs:
        yield from _maildir(folder)
    if remote is not None:
        yield from remote.messages()


def _maildir(folder: Path) -> Iterator[tuple[str, bytes]]:
    """The unseen messages of a Maildir, each marked seen (moved to cur/) once read."""
    box = mailbox.Maildir(folder, factory=None, create=False)
    for key in list(box.keys()):
        message = box.get_message(key)
        if "S" in message.get_flags():
            continue
        yield f"{folder}/{message.get_subdir()}/{key}", box.get_bytes(key)
        message.set_subdir("cur")
        message.add_flag("S")
        box[key] = message
