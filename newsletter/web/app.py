"""The subscriber-facing web app of ``newsletter serve`` (Flask; served by waitress).

Every page needs a token made for its purpose (``newsletter.render.tokens``); anything else gets
one generic page, so nobody can learn which addresses exist. A GET never changes anything
(mail scanners open links); changes are POSTs carrying the token, which a foreign site does
not have (so no CSRF). One-click unsubscribe is RFC 8058: a POST of
``List-Unsubscribe=One-Click`` to the List-Unsubscribe URL.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from datetime import datetime, time
from urllib.parse import quote
from zoneinfo import ZoneInfo

import jinja2
from flask import Flask, Response, abort, render_template, request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import Gone, InternalServerError

from newsletter.config.settings import Config, MatchSettings
from newsletter.errors import (
    ConfigError,
    NewsletterError,
    ProfileError,
    ProfilesUnreadable,
    ServeError,
)
from newsletter.files.problems import time_zones
from newsletter.ledger.ledger import Ledger
from newsletter.ledger.link_keys import LinkKeys
from newsletter.matching.explained import explained
from newsletter.matching.matcher import explain_sent
from newsletter.models import (
    FREQUENCIES,
    WEEKDAYS,
    Paper,
    Selection,
    SentDigest,
    Subscriber,
)
from newsletter.profiles.edit import PreferenceChange, edit_profile, read_profile
from newsletter.render.links import FEEDBACK_KINDS, make_signer
from newsletter.render.renderer import Renderer
from newsletter.render.tokens import Signer, Verdict
from newsletter.render.views import display_name
from newsletter.reports import SignupLink
from newsletter.send.wiring import make_renderer
from newsletter.store.backend import open_store_for
from newsletter.subscribers.fresh_links import mail_fresh_links
from newsletter.subscribers.service import (
    feedback_suggestions,
    record_feedback,
    resubscribe,
    suppression_of,
    unsubscribe,
)
from newsletter.subscribers.signup import (
    SIGNUP_FREQUENCIES,
    TRAP,
    confirm_signup,
    open_link,
    read_signup,
    request_signup,
    schedule_text,
)
from newsletter.web.feed import atom_feed
from newsletter.world import World

log = logging.getLogger("newsletter.serve")
_KEYS_CACHED = 10_000  # link keys the server remembers (a few MB at most)
_FREQUENCY_TEXT = {"daily": "Daily", "weekly": "Weekly", "paused": "Paused (no digests)"}
_KIND_TEXT = {"more": "more like this", "less": "not relevant"}
FEED_DIGESTS = 30  # the feed holds the papers of this many recent digests
SECURITY_HEADERS = {
    # Nothing from elsewhere; inline styles only (the digest's are inlined for mail clients).
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class LinkExpired(Gone):
    """A genuine link, too old: its page offers to mail a fresh one to its owner."""

    def __init__(self, purpose: str, parts: tuple[str, ...]) -> None:
        super().__init__()
        self.purpose, self.parts = purpose, parts


class Site:
    """What the pages share: the config, the clock, the signer, and the renderer made once.
    A subscriber's profile is read from the file on each request (their entry only)."""

    def __init__(self, config: Config, world: World) -> None:
        signer = make_signer(config.render, world.environ)
        if signer is None or not config.render.public_url:
            raise ConfigError(
                "newsletter serve needs 'public_url' (where the proxy reaches it) and the "
                f"secret in ${config.render.unsubscribe_secret_env} that signs the links"
            )
        self.config = config
        self.world = world
        self.signer: Signer = signer
        self.brand = display_name(config.render.sender)
        self.public_url = config.render.public_url.rstrip("/")
        self._lock = threading.Lock()
        self._renderer: Renderer | None = None
        self._keys: dict[str, str] = {}  # link key -> address, as the store said

    def now(self) -> datetime:
        """The clock."""
        return self.world.now()

    def address(self, purpose: str, *parts: str) -> str:
        """The address the request's token is for, or the generic page (403)."""
        verdict = self.check(request.values.get("t", ""), purpose, *parts)
        if verdict.expired:
            raise LinkExpired(purpose, parts)
        if verdict.address is None:
            abort(403)
        self.remember(verdict.address)  # (the links its pages make name it by today's key)
        return verdict.address

    def check(self, token: str, purpose: str, *parts: str) -> Verdict:
        """What ``token`` proves for ``purpose`` and ``parts`` (its key looked up in the store)."""
        return self.signer.check(
            token, purpose, *parts, today=self.now().date(), address_of=self._address_of
        )

    def sign(self, purpose: str, address: str, *parts: str) -> str:
        """A token of today for ``address`` (its key kept in the store first)."""
        self.remember(address)
        return self.signer.sign(purpose, address, *parts, day=self.now().date())

    def remember(self, address: str) -> None:
        """Keep ``address``'s link key in the store before a page's link names it."""
        key = self.signer.key(address)
        if self._keys.get(key) != address:
            with open_store_for(self.config, self.world.environ) as store:
                LinkKeys(store).remember(self.signer, [address], self.now())
            self._cache(key, address)

    def _address_of(self, key: str) -> str | None:
        found = self._keys.get(key)
        if found is None:
            with open_store_for(self.config, self.world.environ) as store:
                found = LinkKeys(store).address_of(key)
            if found is not None:
                self._cache(key, found)
        return found

    def _cache(self, key: str, address: str) -> None:
        # A key names one address for ever: what was found stays true (bounded, not evicted
        # one by one: a full cache is simply started again).
        with self._lock:
            if len(self._keys) >= _KEYS_CACHED:
                self._keys.clear()
            self._keys[key] = address

    def subscriber(self, address: str) -> Subscriber | None:
        """``address``'s profile as the file says now (an edit, the operator's)."""
        return read_profile(self.config, address)

    def renderer(self) -> Renderer:
        """The digest renderer (for web copies), made on first use."""
        with self._lock:
            if self._renderer is None:
                self._renderer = make_renderer(self.config, self.world.environ)
            return self._renderer


def create_app(config: Config, world: World) -> Flask:
    """The web app for ``config``; a ConfigError when it cannot sign or check links."""
    site = Site(config, world)
    app = Flask(__name__, template_folder=None, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = config.serve.max_body
    app.config["MAX_FORM_MEMORY_SIZE"] = config.serve.max_body
    app.jinja_options = {
        "autoescape": True,
        "undefined": jinja2.StrictUndefined,
        "loader": jinja2.ChoiceLoader(
            [
                jinja2.FileSystemLoader(config.templates / "web"),
                jinja2.PackageLoader("newsletter", "templates/web"),
            ]
        ),
    }

    def page(name: str, title: str, status: int = 200, **values: object) -> tuple[str, int]:
        return render_template(name, title=title, brand=site.brand, **values), status

    @app.errorhandler(403)
    @app.errorhandler(404)
    @app.errorhandler(405)
    def invalid(error: Exception) -> tuple[str, int]:
        # One page for every refusal: it tells nothing about any address.
        return page("invalid.html.j2", "Link not valid", 403)

    @app.errorhandler(413)
    def too_large(error: Exception) -> tuple[str, int]:
        return page("invalid.html.j2", "Request too large", 413)

    @app.errorhandler(LinkExpired)
    def expired(error: LinkExpired) -> tuple[str, int]:
        return page(
            "expired.html.j2", "Link expired", 410, token=_token(), purpose=error.purpose,
            parts=error.parts, sent=False, fresh_url=f"{site.public_url}/fresh-link",
        )  # fmt: skip

    @app.post("/fresh-link")
    def fresh_link() -> tuple[str, int]:
        purpose = request.form.get("p", "")
        parts = tuple(request.form.getlist("part"))
        verdict = site.check(_token(), purpose, *parts)
        if verdict.expired_for is not None:
            mail_fresh_links(site.config, site.world, verdict.expired_for)
        elif verdict.address is None:
            abort(403)  # (a current link needs no fresh one; a forged one gets nothing)
        return page("expired.html.j2", "New links on their way", token="", purpose="",
                    parts=(), sent=True, fresh_url="")  # fmt: skip

    @app.errorhandler(ProfilesUnreadable)
    def profiles_unreadable(error: ProfilesUnreadable) -> tuple[str, int, dict[str, str]]:
        log.error("the profile file cannot be read: %s", error)
        body, status = page("updating.html.j2", "Please try again in a minute", 503)
        return body, status, {"Retry-After": "60"}

    @app.errorhandler(NewsletterError)
    def unavailable(error: NewsletterError) -> tuple[str, int, dict[str, str]]:
        log.error("%s failed: %s", request.path, error)  # (the store, a template, ...)
        body, status = page("busy.html.j2", "Please try again", 503)
        return body, status, {"Retry-After": "60"}

    @app.errorhandler(500)
    def broken(error: InternalServerError) -> tuple[str, int]:
        log.error("%s failed", request.path, exc_info=error.original_exception)
        return page("busy.html.j2", "Please try again", 500)

    @app.after_request
    def secure(response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        return response

    _unsubscribe_routes(app, site, page)
    _preference_routes(app, site, page)
    _digest_routes(app, site, page)
    _signup_routes(app, site, page)
    return app


Page = Callable[..., tuple[str, int]]


def _unsubscribe_routes(app: Flask, site: Site, page: Page) -> None:
    @app.get("/unsubscribe")
    def unsubscribe_page() -> tuple[str, int]:
        address = site.address("unsubscribe")
        suppressed = suppression_of(site.config, site.world, address) is not None
        state = "unsubscribed" if suppressed else "confirm"
        title = "Unsubscribed" if suppressed else "Unsubscribe"
        return page("unsubscribe.html.j2", title, state=state, address=address, token=_token())

    @app.post("/unsubscribe")
    def unsubscribe_post() -> tuple[str, int] | Response:
        address = site.address("unsubscribe")
        one_click = request.form.get("List-Unsubscribe") == "One-Click"
        action = "unsubscribe" if one_click else request.form.get("action", "")
        if action not in ("unsubscribe", "resubscribe"):
            abort(403)
        if action == "unsubscribe":
            how = "one-click" if one_click else "web"
            unsubscribe(site.config, site.world, address, how)
        else:
            resubscribe(site.config, site.world, address, "web")
        if one_click:  # RFC 8058: the mail client only needs a 2xx
            return Response("unsubscribed\n", 200, mimetype="text/plain")
        if action == "unsubscribe":
            return page(
                "unsubscribe.html.j2", "Unsubscribed", state="unsubscribed", address=address,
                token=_token(),
            )  # fmt: skip
        return page(
            "unsubscribe.html.j2", "Subscribed again", state="resubscribed", address=address,
            token=_token(),
        )  # fmt: skip


def _token() -> str:
    return request.values.get("t", "")


def _preference_routes(app: Flask, site: Site, page: Page) -> None:
    def show(
        address: str, status: int = 200, subscriber: Subscriber | None = None, **values: object
    ) -> tuple[str, int]:
        subscriber = subscriber or site.subscriber(address)
        typed = _typed(subscriber, request.form if status == 400 else None)
        found = () if subscriber is None else feedback_suggestions(site.config, site.world, address)
        return page(
            "preferences.html.j2",
            "Your preferences",
            status,
            address=address,
            subscriber=subscriber,
            token=_token(),
            frequencies=[(f, _FREQUENCY_TEXT[f]) for f in FREQUENCIES],
            weekdays=WEEKDAYS,
            timezones=_zones(),
            typed=typed,
            suggestions=found,
            **({"saved": False, "problems": []} | values),
        )

    @app.get("/preferences")
    def preferences_page() -> tuple[str, int]:
        return show(site.address("preferences"))

    @app.post("/preferences")
    def preferences_post() -> tuple[str, int]:
        address = site.address("preferences")
        try:
            change = _change_from_form()
            saved = edit_profile(site.config, address, change)
        except ProfilesUnreadable:
            raise  # (the operator's file, not the reader's change: the 503 page)
        except ConfigError as exc:
            return show(address, 400, problems=[_for_reader(p) for p in exc.problems])
        return show(address, subscriber=saved, saved=True)  # (as written: no second reading)

    @app.post("/preferences/suggestion")
    def suggestion_post() -> tuple[str, int]:
        """Apply one of the suggestions the page showed (found again: a stale or made-up
        one is refused)."""
        address = site.address("preferences")
        wanted = (
            request.form.get("change"),
            request.form.get("keyword"),
            request.form.get("value"),
        )
        found = feedback_suggestions(site.config, site.world, address)
        chosen = next((s for s in found if (s.change, s.keyword, s.value) == wanted), None)
        if chosen is None:
            problem = "That suggestion no longer fits your feedback; here is what it suggests now."
            return show(address, 400, problems=[problem])
        try:
            saved = edit_profile(site.config, address, chosen.change_to_make())
        except ProfilesUnreadable:
            raise
        except ConfigError as exc:
            return show(address, 400, problems=[_for_reader(p) for p in exc.problems])
        return show(address, subscriber=saved, saved=True)


def _typed(subscriber: Subscriber | None, form: MultiDict[str, str] | None) -> dict[str, object]:
    """What the preferences form shows: the profile's settings, or, after a refusal, what
    the reader typed (nothing of it lost)."""
    if subscriber is None:
        return {}
    shown: dict[str, object] = {
        "frequency": subscriber.frequency,
        "day": subscriber.day or "monday",
        "send_at": f"{subscriber.send_at:%H:%M}",
        "timezone": subscriber.timezone,
        "max_papers": str(subscriber.max_papers),
        "remove": (),
        "add": "",
    }
    if form is not None:
        for key in ("frequency", "day", "send_at", "timezone", "max_papers", "add"):
            if form.get(key):
                shown[key] = form[key][:500]
        shown["remove"] = tuple(form.getlist("remove"))
    return shown


def _change_from_form() -> PreferenceChange:
    """The change the form asks for; a ConfigError for a value no profile may hold."""
    form = request.form
    frequency = form.get("frequency") or None
    if frequency is not None and frequency not in FREQUENCIES:
        raise ConfigError(f"'{frequency}' is not a frequency")
    day = form.get("day") or None
    if day is not None and day not in WEEKDAYS:
        raise ConfigError(f"'{day}' is not a day of the week")
    send_at = None
    if form.get("send_at"):
        try:
            send_at = time.fromisoformat(form["send_at"][:5])
        except ValueError as exc:
            raise ConfigError(f"'{form['send_at']}' is not a time like 07:30") from exc
    zone = form.get("timezone") or None
    if zone is not None and zone not in time_zones():
        raise ConfigError(f"'{zone}' is not a time zone")
    max_papers = None
    if form.get("max_papers"):
        try:
            max_papers = int(form["max_papers"])
        except ValueError as exc:
            raise ConfigError("the number of papers must be a whole number") from exc
    added = tuple(k.strip() for k in form.get("add", "").split(",") if k.strip())
    return PreferenceChange(
        frequency=frequency,
        day=day,
        send_at=send_at,
        timezone=zone,
        max_papers=max_papers,
        add_keywords=added,
        remove_keywords=tuple(form.getlist("remove")),
    )


def _for_reader(problem: str) -> str:
    """A profile problem as a subscriber reads it: without the file name and line."""
    head, colon, rest = problem.partition(": ")
    return rest if colon and ".yaml:" in head else problem


@functools.cache
def _zones() -> list[str]:
    """The time zones the form offers, sorted (the set the profile check accepts)."""
    return sorted(time_zones())


def _digest_routes(app: Flask, site: Site, page: Page) -> None:
    @app.get("/digest/<key>")
    def web_copy(key: str) -> Response:
        address = site.address("archive", key)
        with open_store_for(site.config, site.world.environ) as store:
            found = Ledger(store).digest(key)
            if found is None or found[0] != address.casefold():
                abort(403)
            digest = found[1]
            papers = store.papers_in_order(digest.papers)
        subscriber = site.subscriber(address) or Subscriber(address, ())
        when = digest.sent_at or digest.created_at
        selection = _as_sent(subscriber, digest, papers, when, site.config.matching)
        rendered = site.renderer().render(selection, when)
        assert rendered is not None  # send_empty or not, a sent digest has papers
        return Response(rendered.html, 200, mimetype="text/html")

    @app.get("/feed")
    def feed() -> Response:
        address = site.address("feed")
        with open_store_for(site.config, site.world.environ) as store:
            digests = [d for d in Ledger(store).digests_of(address) if d.status == "sent"]
            digests = digests[:FEED_DIGESTS]
            wanted = sorted({paper for digest in digests for paper in digest.papers})
            papers = {p.id: p for p in store.papers_in_order(wanted)}
        # rel=self is where readers reach the feed (public_url), not the Host header a
        # request carried: a forged Host must not end up in a reader's feed.
        self_url = f"{site.public_url}/feed?t={quote(_token(), safe='')}"
        body = atom_feed(site.brand, address, self_url, digests, papers, site.now())
        return Response(body, 200, mimetype="application/atom+xml")

    @app.route("/feedback", methods=["GET", "POST"])
    def feedback() -> tuple[str, int]:
        digest, paper = request.values.get("d", ""), request.values.get("p", "")
        address = site.address("feedback", digest, paper)
        kind = request.values.get("k", "")
        if kind not in FEEDBACK_KINDS:
            abort(403)
        if request.method == "POST":
            record_feedback(site.config, site.world, address, paper, digest, kind)
        with open_store_for(site.config, site.world.environ) as store:
            known = store.papers_in_order([paper])
        title = known[0].title if known else paper
        return page(
            "feedback.html.j2",
            "Thank you" if request.method == "POST" else "Your feedback",
            paper_title=title,
            recorded=request.method == "POST",
            label=_KIND_TEXT[kind],
            kind=kind,
            token=_token(),
            digest=digest,
            paper=paper,
        )


def _as_sent(
    subscriber: Subscriber,
    digest: SentDigest,
    papers: list[Paper],
    when: datetime,
    settings: MatchSettings,
) -> Selection:
    """A sent digest's papers explained as they were the day it was sent (by today's
    profile only for a digest sent before explanations were kept)."""
    matches = explained(digest.papers, papers, digest.explained)
    if matches is None:
        return explain_sent(subscriber, papers, when, settings)
    return Selection(subscriber, matches, len(papers), len(papers))


_SIGNUP_FIELDS = ("email", "keywords", "name", "frequency", "day", "timezone")


def _signup_routes(app: Flask, site: Site, page: Page) -> None:
    settings = site.config.subscribe

    def form(values: dict[str, str], problems: list[str], status: int = 200) -> tuple[str, int]:
        return page(
            "subscribe.html.j2",
            "Subscribe",
            status,
            values=values,
            problems=problems,
            frequencies=[(f, _FREQUENCY_TEXT[f]) for f in SIGNUP_FREQUENCIES],
            weekdays=WEEKDAYS,
            timezones=_zones(),
            send_at=f"{settings.defaults.send_at:%H:%M}",
            domains=settings.domains,
            trap=TRAP,
        )

    @app.get("/subscribe")
    def subscribe_page() -> tuple[str, int]:
        if not settings.enabled:
            return page("invalid.html.j2", "Page not found", 404)
        defaults = settings.defaults
        blank = {"email": "", "keywords": "", "name": "", "frequency": defaults.frequency}
        return form(blank | {"day": defaults.day, "timezone": defaults.timezone}, [])

    @app.post("/subscribe")
    def subscribe_post() -> tuple[str, int]:
        if not settings.enabled:
            return page("invalid.html.j2", "Page not found", 404)
        values = {key: request.form.get(key, "")[:2000] for key in _SIGNUP_FIELDS}
        try:
            profile = read_signup(site.config, values)
        except ProfileError as exc:
            return form(values, exc.problems, 400)
        try:
            request_signup(site.config, site.world, profile, trapped=bool(request.form.get(TRAP)))
        except NewsletterError as exc:  # the store or the mail server: the reader may retry
            log.error("sign-up of %s failed: %s", profile.email, exc)
            return page("busy.html.j2", "Please try again", 503)
        return page("subscribe_sent.html.j2", "Check your inbox", hours=settings.confirm_hours)

    def confirmation(state: str, link: SignupLink, status: int = 200, **values: object):
        address = link.request.address
        return page(
            "confirm.html.j2",
            _CONFIRM_TITLES[state],
            status,
            state=state,
            request=link.request,
            token=_token(),
            schedule=schedule_text(link.request.profile, site.config),
            hours=settings.confirm_hours,
            expires=f"{link.expires:%Y-%m-%d %H:%M} UTC",
            subscribe=f"{site.public_url}/subscribe",
            preferences=f"{site.public_url}/preferences?t=" + site.sign("preferences", address),
            **({"first_digest": ""} | values),
        )

    def opened() -> SignupLink:
        link = open_link(site.config, site.world, _token()) if settings.enabled else None
        if link is None:
            abort(403)
        return link

    @app.get("/confirm")
    def confirm_page() -> tuple[str, int]:
        link = opened()
        return confirmation(link.state, link, 410 if link.state == "expired" else 200)

    @app.post("/confirm")
    def confirm_post() -> tuple[str, int]:
        link = opened()
        if link.state != "ready":
            return confirmation(link.state, link, 410 if link.state == "expired" else 200)
        try:
            done = confirm_signup(site.config, site.world, link.request)
        except NewsletterError as exc:  # the operator's file or the store: retry later
            log.error("confirming the sign-up of %s failed: %s", link.request.address, exc)
            return confirmation("failed", link, 503)
        zone = done.subscriber.timezone
        first = done.first_digest.astimezone(ZoneInfo(zone)) if done.first_digest else None
        when = f"{first:%A %d %B %Y, %H:%M} ({zone})" if first else ""
        return confirmation("done", link, first_digest=when)


_CONFIRM_TITLES = {
    "ready": "Confirm your subscription",
    "done": "You are subscribed",
    "confirmed": "Subscription confirmed",
    "expired": "Link expired",
    "failed": "Please try again",
}


def serve_app(config: Config, world: World, port: int | None, ready: Callable[[str], None]) -> None:
    """Serve the web app with waitress until the process is stopped; ``ready`` is told the
    URL once the socket listens (port 0: a free port)."""
    import waitress.server

    settings = config.serve
    app = create_app(config, world)
    port = settings.port if port is None else port
    try:
        server = waitress.server.create_server(
            app,
            host=settings.host,
            port=port,
            threads=settings.threads,
            max_request_body_size=settings.max_body,
            max_request_header_size=16384,
            ident="newsletter",
            clear_untrusted_proxy_headers=True,
        )
    except OSError as exc:
        raise ServeError(
            f"cannot listen on {settings.host}:{port}: {exc.strerror or exc}; another program "
            "(or another newsletter serve) may use that port: stop it, or set serve.port"
        ) from exc
    ready(f"http://{settings.host}:{server.effective_port}")  # type: ignore[union-attr]
    server.run()
