"""A fresh set of links, mailed to the owner of an expired one: the page of an expired link
(genuine, only too old) offers it, so a reader with an old digest is never stuck. At most one
such mail per address a day; an address that complained gets none."""

from __future__ import annotations

import logging
from datetime import timedelta

from newsletter.config.settings import Config
from newsletter.ledger.suppression import SubscriberState, record_event
from newsletter.profiles.edit import read_profile
from newsletter.render.notices import NoticeView
from newsletter.send.wiring import make_notices, send_one
from newsletter.store.backend import open_store_for
from newsletter.subscribers.signup import account_links
from newsletter.world import World

log = logging.getLogger("newsletter.serve")
EVENT = "fresh-links"
_ONE_A_DAY = timedelta(hours=24)


def mail_fresh_links(config: Config, world: World, address: str) -> str:
    """Mail ``address`` (the owner of a genuine expired link) new preferences and
    unsubscribe links, unless the limit or a complaint forbids; what happened, for the log."""
    now = world.now()
    with open_store_for(config, world.environ) as store:
        state = SubscriberState(store)
        suppression = state.suppression(address)
        if suppression is not None and suppression.reason == "complained":
            return _logged(address, "no mail (the address complained)")
        if any(e.event == EVENT and now - e.at < _ONE_A_DAY for e in state.events(address)):
            return _logged(address, "no mail (one was sent in the last 24 hours)")
        with store.transaction() as db:
            record_event(db, address.casefold(), now, EVENT, "web", None)
    links = account_links(config, world)
    notices = make_notices(config, world.environ)
    subscriber = read_profile(config, address)
    view = NoticeView(
        kind="fresh",
        subject=notices.subject("fresh"),
        brand=notices.brand,
        address=address,
        link=links.preferences(address, now.date()),
        hours=0,
        keywords=tuple(k.text for k in subscriber.keywords) if subscriber else (),
        schedule="",
        first_digest="",
        unsubscribe=links.unsubscribe(address, now.date()),
    )
    result, where = send_one(config, world, notices.render(view, now))
    if result.error:
        return _logged(address, f"the mail failed: {result.error}")
    return _logged(address, f"mailed to {where}")


def _logged(address: str, what: str) -> str:
    log.info("fresh links for %s: %s", address, what)
    return what
