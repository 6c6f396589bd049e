"""Readers who join on their own (``/subscribe`` of ``newsletter serve``), with double opt-in.

A sign-up is checked as ``validate`` checks the profile file, then kept in the store as a
request and answered by mail: a new address gets a link to confirm (its token signs the
request's id, purpose ``confirm``; it works ``confirm_hours``), a subscribed one its
preferences link; an address that complained, a filled honeypot, or a request past the
limits gets nothing. Whatever happened, the form's answer is the same: nobody can learn who
is subscribed. Confirming appends the entry to the profile file through its writer, records
the consent, lifts an earlier unsubscribe or bounce (the reader's own act, and proof the
mailbox works) and sends a welcome. A request is no subscriber: ``send`` never sees it.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Collection, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from newsletter.config.settings import Config
from newsletter.errors import ConfigError, ProfileError
from newsletter.files.problems import time_zones
from newsletter.ledger.link_keys import LinkKeys
from newsletter.ledger.signups import Signups
from newsletter.ledger.suppression import SubscriberState
from newsletter.models import WEEKDAYS, NewProfile, RenderedEmail, SignupRequest, Subscriber
from newsletter.profiles.edit import add_profile, check_profile, read_profile
from newsletter.render.links import AccountLinks, Links, make_signer
from newsletter.render.notices import NoticeView
from newsletter.render.tokens import opaque
from newsletter.reports import Confirmation, SignupLink, SignupOutcome
from newsletter.send.wiring import make_notices, send_one
from newsletter.store.backend import open_store_for
from newsletter.subscribers.service import checked_address
from newsletter.world import World

HOW = "web double opt-in"
TRAP = "website"  # the honeypot field: hidden from people, filled by bots
SIGNUP_FREQUENCIES = ("daily", "weekly")
NAME_CHARS = 100
KEYWORDS_CHARS = 1000
_PLACEHOLDER = "reader@example.org"  # checks the keywords while the address is wrong
_LIFTED_BY_CONFIRMING = ("unsubscribed", "bounced")  # a complaint stays

log = logging.getLogger("newsletter.signup")


def read_signup(config: Config, form: Mapping[str, str]) -> NewProfile:
    """The entry the form asks for, with the sign-up defaults; a ProfileError listing every
    problem as the reader should read it (what ``validate`` says, without file and line)."""
    defaults = config.subscribe.defaults
    problems: list[str] = []
    raw = form.get("email", "").strip()
    address = _address(config, raw, problems)
    text = form.get("keywords", "")
    keywords = tuple(k.strip() for k in text.split(",") if k.strip())
    if not keywords:
        problems.append("Enter at least one keyword (separate them with commas).")
    elif len(text) > KEYWORDS_CHARS:
        problems.append(f"Keep the keywords under {KEYWORDS_CHARS} characters.")
    frequency = _choice(form, "frequency", SIGNUP_FREQUENCIES, defaults.frequency, problems)
    day = _choice(form, "day", WEEKDAYS, defaults.day, problems)
    zone = _choice(form, "timezone", time_zones(), defaults.timezone, problems)
    name = " ".join(form.get("name", "").split())[:NAME_CHARS] or None
    profile = NewProfile(
        email=address or raw,
        keywords=keywords,
        name=name,
        frequency=frequency,
        day=day if frequency == "weekly" else None,
        send_at=defaults.send_at,
        timezone=zone,
    )
    if keywords and len(text) <= KEYWORDS_CHARS:
        problems += _entry_problems(config, profile, address or _PLACEHOLDER)
    if problems:
        raise ProfileError(problems)
    return profile


def _address(config: Config, raw: str, problems: list[str]) -> str | None:
    if not raw:
        problems.append("Enter your email address.")
        return None
    try:
        address = checked_address(raw)
    except ConfigError as exc:
        problems.extend(exc.problems)
        return None
    if not config.subscribe.admits(address):
        allowed = ", ".join(config.subscribe.domains)
        problems.append(f"Sign-ups are open to addresses at {allowed}.")
        return None
    return address


def _choice(
    form: Mapping[str, str], key: str, allowed: Collection[str], default: str, problems: list[str]
) -> str:
    value = form.get(key) or default
    if value not in allowed:
        problems.append(f"'{value[:40]}' is not a {key} this form offers.")
        return default
    return value


def _entry_problems(config: Config, profile: NewProfile, address: str) -> list[str]:
    """What ``validate`` would say of ``profile``'s entry, for the reader."""
    try:
        check_profile(config, replace(profile, email=address))
    except ProfileError as exc:
        prefix = f"the new entry for {address}: "
        return [p.removeprefix(prefix) for p in exc.problems]
    return []


def request_signup(
    config: Config, world: World, profile: NewProfile, trapped: bool = False
) -> SignupOutcome:
    """Answer a checked sign-up (``read_signup``) by mail, within the limits; ``trapped``:
    the honeypot was filled. What happened is for the log, never for the reader."""
    address = profile.email
    if trapped:
        return _refused(address, "honeypot")
    now = world.now()
    with open_store_for(config, world.environ) as store:
        suppression = SubscriberState(store).suppression(address)
        signups = Signups(store)
        refusal = _refusal(config, signups, address, now)
        if suppression is not None and suppression.reason == "complained":
            refusal = "complained"
        if refusal is not None:
            return _refused(address, refusal)
        listed = suppression is None and read_profile(config, address) is not None
        request = SignupRequest(
            secrets.token_urlsafe(18), profile, now, "known" if listed else "confirm"
        )
        signups.forget_unconfirmed(now - _kept_for(config))
        signups.record(request)
    email = _notice(config, world, request.mail, request, profile, None)
    result, where = send_one(config, world, email)
    if result.error:
        log.warning("sign-up of %s: the %s mail failed: %s", address, request.mail, result.error)
    else:
        log.info("sign-up of %s: %s mail sent to %s", address, request.mail, where)
    return SignupOutcome(address, request.mail, None, request, result.error)


def _refusal(config: Config, signups: Signups, address: str, now: datetime) -> str | None:
    limits = config.subscribe.limits
    if signups.mails_to(address, now - timedelta(hours=limits.per_address_hours)):
        return f"per-address limit (one mail in {limits.per_address_hours} h)"
    if signups.mails_since(now - timedelta(hours=1)) >= limits.per_hour:
        return f"hourly limit ({limits.per_hour} mails)"
    return None


def _refused(address: str, why: str) -> SignupOutcome:
    log.info("sign-up of %s: no mail sent (%s)", address, why)
    return SignupOutcome(address, None, why)


def _kept_for(config: Config) -> timedelta:
    """How long an unconfirmed request is kept: while it may be confirmed, and while it
    counts towards the limits."""
    settings = config.subscribe
    return timedelta(hours=max(settings.confirm_hours, settings.limits.per_address_hours, 1))


def open_link(config: Config, world: World, token: str) -> SignupLink | None:
    """The request a confirmation link is for, and whether it may be confirmed; None for a
    link that is forged, made for another purpose, or of a request no longer kept."""
    signer = make_signer(config.render, world.environ)
    now = world.now()
    if signer is None:
        return None
    request_id = signer.check(token, "confirm", today=now.date(), address_of=opaque).address
    if request_id is None:
        return None
    with open_store_for(config, world.environ) as store:
        request = Signups(store).request(request_id)
    if request is None or request.mail != "confirm":
        return None
    expires = request.asked_at + timedelta(hours=config.subscribe.confirm_hours)
    state = "confirmed" if request.confirmed_at else "expired" if now > expires else "ready"
    return SignupLink(request, state, expires)


def confirm_signup(config: Config, world: World, request: SignupRequest) -> Confirmation:
    """Make the request a subscriber: its entry appended to the profile file (unless the
    address is there already), the consent recorded, an unsubscribe or bounce lifted, a
    welcome mailed. A ProfileError (nothing changed) when the file cannot take it now."""
    now = world.now()
    subscriber, added = _entry_of(config, request.profile)
    with open_store_for(config, world.environ) as store:
        first_time = Signups(store).confirm(request, now, HOW)
        state = SubscriberState(store)
        lifted = None
        held = state.suppression(request.address)
        if held is not None and held.reason in _LIFTED_BY_CONFIRMING:
            lifted = state.lift(request.address, HOW, now)
            held = None
    first = config.schedule.timetable().next_fire(subscriber, now)
    log.info("sign-up of %s confirmed (%s)", request.address, "added" if added else "listed")
    error = None
    if first_time and held is None:
        email = _notice(config, world, "welcome", request, _as_profile(subscriber), first)
        result, _ = send_one(config, world, email)
        error = result.error
        if error:
            log.warning("welcome of %s failed: %s", request.address, error)
    return Confirmation(subscriber, first, lifted, added, error)


def _entry_of(config: Config, profile: NewProfile) -> tuple[Subscriber, bool]:
    """The profile file's entry for ``profile``: appended now (True), or there already."""
    present = read_profile(config, profile.email)
    if present is not None:
        return present, False
    try:
        return add_profile(config, profile), True
    except ProfileError:
        present = read_profile(config, profile.email)  # added meanwhile (a second click)
        if present is None:
            raise
        return present, False


def _as_profile(subscriber: Subscriber) -> NewProfile:
    """What the welcome describes: the entry as the file holds it."""
    return NewProfile(
        subscriber.email,
        tuple(k.text for k in subscriber.keywords),
        subscriber.name,
        subscriber.frequency,
        subscriber.day,
        subscriber.send_at,
        subscriber.timezone,
    )


def pending_signups(config: Config, world: World) -> list[SignupRequest]:
    """Sign-ups waiting for their confirmation (expired ones are left out), oldest first."""
    since = world.now() - timedelta(hours=config.subscribe.confirm_hours)
    with open_store_for(config, world.environ) as store:
        return Signups(store).pending(since)


def _notice(
    config: Config,
    world: World,
    kind: str,
    request: SignupRequest,
    profile: NewProfile,
    first: datetime | None,
) -> RenderedEmail:
    """The ``kind`` mail for ``request`` (describing ``profile``), rendered."""
    links = account_links(config, world)
    notices = make_notices(config, world.environ)
    now = world.now()
    address = request.address
    if kind == "confirm":
        link = links.confirm(request.id, now.date())
    else:
        link = links.preferences(address, now.date())
    view = NoticeView(
        kind=kind,
        subject=notices.subject(kind),
        brand=notices.brand,
        address=address,
        link=link,
        hours=config.subscribe.confirm_hours,
        keywords=profile.keywords,
        schedule=schedule_text(profile, config),
        first_digest=_local(first, profile.timezone or config.schedule.timezone),
        unsubscribe=links.unsubscribe(address, now.date()) if kind == "welcome" else "",
    )
    return notices.render(view, now)


def account_links(config: Config, world: World) -> AccountLinks:
    """The links the mails to one reader carry; a ConfigError without public_url."""
    signer = make_signer(config.render, world.environ)

    def remember(address: str) -> None:
        if signer is not None:
            with open_store_for(config, world.environ) as store:
                LinkKeys(store).remember(signer, [address], world.now())

    links = Links(config.render, signer).for_accounts(remember)
    if links is None:
        raise ConfigError(
            "the sign-up mails link to newsletter serve: set 'public_url' and the secret in "
            f"${config.render.unsubscribe_secret_env}"
        )
    return links


def schedule_text(profile: NewProfile, config: Config) -> str:
    """ "daily at 07:00 (UTC)", "weekly on Mondays at 07:00 (Europe/Berlin)"."""
    when = profile.send_at or config.schedule.send_at
    zone = profile.timezone or config.schedule.timezone
    if profile.frequency == "weekly":
        day = (profile.day or "monday").title()
        return f"weekly on {day}s at {when:%H:%M} ({zone})"
    return f"daily at {when:%H:%M} ({zone})"


def _local(when: datetime | None, zone: str) -> str:
    if when is None:
        return ""
    local = when.astimezone(ZoneInfo(zone))
    return f"{local:%a %d %b %Y, %H:%M} ({zone})"
