"""One subscriber's next send, exactly as a send would make it now (sends and records nothing)."""

from __future__ import annotations

from newsletter.config.settings import Config
from newsletter.errors import ConfigError
from newsletter.ledger.ledger import Ledger
from newsletter.ledger.suppression import SubscriberState
from newsletter.matching.matcher import Matcher, lookback_start
from newsletter.models import Subscriber
from newsletter.reports import Preview, PreviewKind, TestCopy
from newsletter.send.produce import no_digest_reason
from newsletter.send.sending import resent_copy
from newsletter.send.wiring import make_renderer, send_one
from newsletter.store.backend import open_store_for
from newsletter.subscribers.addresses import EmailNotValidError, normalized_address
from newsletter.world import World

SUPPRESSED, PENDING, DIGEST, NOTHING = PreviewKind


def preview(
    config: Config, world: World, subscriber: Subscriber, everything: bool = False
) -> Preview:
    """What a send would give ``subscriber`` now (``everything``: from all papers of the
    lookback window, as if nothing had been sent); sends and records nothing."""
    renderer = make_renderer(config, world.environ)
    now = world.now()
    with open_store_for(config, world.environ) as store:
        digests = len(store.digests())
        suppression = SubscriberState(store).suppression(subscriber.email)
        if suppression is not None:  # the next send skips them
            reason = suppression.describe()
            return Preview(SUPPRESSED, subscriber.email, None, None, reason, digests)
        ledger = Ledger(store)
        key = subscriber.email.casefold()
        pending = (
            None
            if everything
            else next((item for item in ledger.pending() if item.subscriber == key), None)
        )
        if pending is not None:
            shown = resent_copy(pending, subscriber, store, renderer, config)
            return Preview(PENDING, subscriber.email, None, shown, None, digests)
        since = lookback_start(config, now)
        history = {} if everything else ledger.history(since=since)
        papers = store.papers(since=since)
    (selection,) = Matcher([subscriber], config.matching).select(papers, now, history)
    next_send = config.schedule.timetable().next_fire(subscriber, now)
    rendered = renderer.render(selection, now, next_send)
    if rendered is not None:
        return Preview(DIGEST, subscriber.email, selection, rendered, None, digests)
    reason = no_digest_reason(selection, history.get(key), config.matching.lookback_days)
    return Preview(NOTHING, subscriber.email, selection, None, reason, digests)


def send_test_copy(config: Config, world: World, subscriber: Subscriber, to: str) -> TestCopy:
    """Send ``subscriber``'s next digest, exactly as ``preview`` shows it, to ``to`` as a
    test copy (``Renderer.test_copy``) through the configured transport; records nothing:
    no ledger row, no paper counted as sent, no state lock."""
    try:
        address = normalized_address(to.strip())
    except EmailNotValidError as exc:
        raise ConfigError(f"'{to}' is not an address: {exc}") from exc
    shown = preview(config, world, subscriber)
    if shown.email is None:
        reason = shown.reason if shown.digests else "nothing ingested yet: run `newsletter ingest`"
        return TestCopy(subscriber.email, address, None, reason)
    renderer = make_renderer(config, world.environ)
    copy = renderer.test_copy(shown.email, address, world.now())
    result, where = send_one(config, world, copy)
    return TestCopy(subscriber.email, address, copy, None, where, result.error)
