"""The subscriber side's use cases: who is receiving and why not, unsubscribe and resubscribe,
and each subscriber's history (``newsletter subscribers``, ``unsubscribe``, ``resubscribe``,
``history``; the web app calls the same functions)."""

from __future__ import annotations

from dataclasses import replace

from newsletter.config.settings import Config
from newsletter.errors import ConfigError
from newsletter.ledger.ledger import Ledger
from newsletter.ledger.suppression import SubscriberState
from newsletter.matching.explained import explained
from newsletter.models import NewProfile, Subscriber, Suppression
from newsletter.profiles.cache import profiles_of
from newsletter.profiles.edit import add_profile
from newsletter.profiles.suggest import Suggestion, suggest
from newsletter.reports import SubscriberHistory, SubscriberStatus, Subscription
from newsletter.store.backend import open_store_for
from newsletter.subscribers.addresses import EmailNotValidError, normalized_address
from newsletter.world import World

HOWS = ("one-click", "web", "mailto", "cli")


def subscriber_statuses(config: Config, world: World) -> list[SubscriberStatus]:
    """Every address of the profile file, then every suppressed address no longer in it:
    its effective status and why, its last digest and how many papers it was sent."""
    profiles = profiles_of(config)
    with open_store_for(config, world.environ) as store:
        suppressed = SubscriberState(store).suppressed()
        totals = Ledger(store).totals()
    rows = []
    for subscriber in profiles.subscribers:
        key = subscriber.email.casefold()
        status, why = _status(subscriber, suppressed.get(key), profiles.path.name)
        last, count = totals.get(key, (None, 0))
        rows.append(SubscriberStatus(subscriber.email, status, why, True, last, count))
    listed = {s.email.casefold() for s in profiles.subscribers}
    for key, suppression in sorted(suppressed.items()):
        if key not in listed:
            last, count = totals.get(key, (None, 0))
            why = f"{suppression.describe()}; not in {profiles.path.name}"
            rows.append(
                SubscriberStatus(suppression.address, suppression.reason, why, False, last, count)
            )
    return rows


def _status(subscriber: Subscriber, suppression: Suppression | None, file: str) -> tuple[str, str]:
    if suppression is not None:
        return suppression.reason, suppression.describe()
    where = f"{file}:{subscriber.line}"
    if not subscriber.active:
        return "paused", f"active: false in {where}"
    if subscriber.frequency == "paused":
        return "paused", f"frequency: paused in {where}"
    when = f"{subscriber.send_at:%H:%M} {subscriber.timezone}"
    if subscriber.frequency == "weekly":
        return "active", f"weekly on {(subscriber.day or 'monday').title()} at {when}"
    return "active", f"daily at {when}"


def checked_address(email: str) -> str:
    """``email`` as a normalized address; a ConfigError (exit 2) when it is not one."""
    try:
        return normalized_address(email.strip())
    except EmailNotValidError as exc:
        raise ConfigError(f"'{email}' is not an address: {exc}") from exc


def unsubscribe(config: Config, world: World, email: str, how: str = "cli") -> Suppression:
    """Put ``email`` on the suppression list (unsubscribed); the suppression in force (an
    earlier one stays as it was)."""
    address = checked_address(email)
    with open_store_for(config, world.environ) as store:
        state = SubscriberState(store)
        state.suppress(address, "unsubscribed", how, world.now())
        suppression = state.suppression(address)
    assert suppression is not None
    return suppression


def resubscribe(config: Config, world: World, email: str, how: str = "cli") -> Suppression | None:
    """Lift ``email``'s suppression, whatever its reason; the one lifted, or None."""
    address = checked_address(email)
    with open_store_for(config, world.environ) as store:
        return SubscriberState(store).lift(address, how, world.now())


def subscribe(config: Config, world: World, profile: NewProfile) -> Subscription:
    """Add ``profile`` to the profile file, no confirmation asked (the operator vouches for
    the address); a ProfileError (nothing written) for what ``validate`` would refuse."""
    address = checked_address(profile.email)
    profile = replace(profile, email=address)
    subscriber = add_profile(config, profile)
    with open_store_for(config, world.environ) as store:
        suppression = SubscriberState(store).suppression(address)
    first = config.schedule.timetable().next_fire(subscriber, world.now())
    return Subscription(subscriber, config.subscribers.name, first, suppression)


def suppression_of(config: Config, world: World, email: str) -> Suppression | None:
    """The suppression in force for ``email``, or None."""
    address = checked_address(email)
    with open_store_for(config, world.environ) as store:
        return SubscriberState(store).suppression(address)


def record_feedback(
    config: Config, world: World, email: str, paper: str, digest: str, kind: str
) -> None:
    """Note a reader's feedback (``kind``) on ``paper`` of the digest ``digest``."""
    address = checked_address(email)
    with open_store_for(config, world.environ) as store:
        SubscriberState(store).record_feedback(address, paper, digest, kind, world.now())


def feedback_suggestions(config: Config, world: World, email: str) -> tuple[Suggestion, ...]:
    """What ``email``'s "not relevant" and "more like this" clicks suggest changing in their
    profile (``profiles.suggest``), counted on the papers they were sent."""
    address = checked_address(email)
    with open_store_for(config, world.environ) as store:
        clicks = SubscriberState(store).feedback(address)
        if not clicks:
            return ()
        sent = [d for d in Ledger(store).digests_of(address) if d.status == "sent"]
        wanted = sorted({paper for digest in sent for paper in digest.papers})
        papers = {p.id: p for p in store.papers_in_order(wanted)}
    past = []
    for digest in sent:
        found = [papers[pid] for pid in digest.papers if pid in papers]
        past += explained(digest.papers, found, digest.explained) or ()
    latest = {click.paper_id: click.kind for click in clicks}  # (oldest first: the last wins)
    less = [paper for paper, kind in latest.items() if kind == "less"]
    more = [paper for paper, kind in latest.items() if kind == "more"]
    return suggest(past, less, more)


def subscriber_history(config: Config, world: World, email: str) -> SubscriberHistory:
    """``email``'s digests (with their papers' titles), events and feedback."""
    address = checked_address(email)
    with open_store_for(config, world.environ) as store:
        digests = Ledger(store).digests_of(address)
        state = SubscriberState(store)
        wanted = sorted({paper for digest in digests for paper in digest.papers})
        titles = {p.id: p.title for p in store.papers_in_order(wanted)}
        return SubscriberHistory(
            address,
            tuple(digests),
            titles,
            tuple(state.events(address)),
            tuple(state.feedback(address)),
            state.suppression(address),
            feedback_suggestions(config, world, address),
        )
