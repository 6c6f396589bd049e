"""Sign-ups with double opt-in, as a library: the form's values checked as ``validate``
checks the file, the mails each case gets (or not), the limits, the link's expiry, and what
confirming changes."""

from __future__ import annotations

import email
from datetime import timedelta
from email import policy
from pathlib import Path

import pytest

from newsletter.config.load import load_config
from newsletter.errors import ProfileError
from newsletter.subscribers import signup
from newsletter.subscribers.service import unsubscribe
from tests.helpers import FakeClock, open_project_store

SECRET = "k2Jx9-TqLw_0aZr7Vn4bYc8uHs1eDf6gPm3"
PROFILES = """\
# The operator's comment stays.
subscribers:
  - email: ada@example.org
    keywords: [pruning]
"""


def make_project(project: Path, extra: str = "") -> Path:
    (project / "config.yaml").write_text(
        "digests: digests\nstate_dir: state\noutbox_dir: outbox\n"
        "public_url: https://digest.example.org\n"
        "subscribe:\n  enabled: true\n  confirm_hours: 48\n" + extra
    )
    (project / "subscribers.yaml").write_text(PROFILES)
    return project / "config.yaml"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def world(clock: FakeClock):
    return clock.world(environ={"NEWSLETTER_UNSUBSCRIBE_SECRET": SECRET})


def mails(project: Path) -> list:
    folder = project / "outbox"
    if not folder.exists():
        return []
    paths = sorted((folder / "new").iterdir(), key=lambda p: (p.stat().st_mtime_ns, p.name))
    return [email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in paths]


def link_in(message) -> str:
    text = message.get_body(("plain",)).get_content()
    return next(w for w in text.split() if w.startswith("https://digest.example.org/"))


def form(**values: str) -> dict[str, str]:
    return {"email": "kim@uni-example.edu", "keywords": "sparse attention, distill*"} | values


def test_a_new_address_gets_a_confirmation_link_and_the_file_waits(project, world) -> None:
    config = load_config(make_project(project))
    before = config.subscribers.read_text()
    outcome = signup.request_signup(config, world, signup.read_signup(config, form()))
    assert outcome.mail == "confirm"
    (message,) = mails(project)
    assert message["To"].addresses[0].addr_spec == "kim@uni-example.edu"
    assert message["Subject"] == "Confirm your subscription to Research digest"
    assert message.get_body(("html",)) is not None
    assert message["List-Unsubscribe"] is None  # personal mail, not list mail
    assert "/confirm?t=" in link_in(message)
    assert config.subscribers.read_text() == before
    assert [r.address for r in signup.pending_signups(config, world)] == ["kim@uni-example.edu"]


def confirm_link_token(project: Path) -> str:
    return link_in(mails(project)[-1]).partition("?t=")[2]


def test_confirming_appends_the_entry_records_consent_and_welcomes(project, world) -> None:
    config = load_config(make_project(project))
    signup.request_signup(config, world, signup.read_signup(config, form(frequency="weekly")))
    link = signup.open_link(config, world, confirm_link_token(project))
    assert link is not None and link.state == "ready"
    done = signup.confirm_signup(config, world, link.request)
    assert done.added and done.subscriber.frequency == "weekly"
    text = config.subscribers.read_text()
    assert text.startswith("# The operator's comment stays.\n")
    assert text.endswith(
        "  - email: kim@uni-example.edu\n"
        '    keywords: ["sparse attention", "distill*"]\n'
        '    frequency: weekly\n    day: monday\n    send_at: "07:00"\n    timezone: UTC\n'
    )
    welcome = mails(project)[-1]
    assert welcome["Subject"] == "Welcome to Research digest"
    body = welcome.get_body(("plain",)).get_content()
    assert "Mon 16 Mar 2026, 07:00 (UTC)" in body  # the clock says Thursday the 12th
    assert "/preferences?t=" in body
    with open_project_store(project) as store:
        from newsletter.ledger.signups import Signups

        consent = Signups(store).consent("kim@uni-example.edu")
    assert consent is not None and consent.how == "web double opt-in"
    assert consent.confirmed_at == world.now()
    assert signup.pending_signups(config, world) == []
    assert signup.open_link(config, world, confirm_link_token(project)) is None  # welcome's
    again = signup.open_link(config, world, link_in(mails(project)[0]).partition("?t=")[2])
    assert again is not None and again.state == "confirmed"


def test_a_link_past_confirm_hours_has_expired(project, world, clock: FakeClock) -> None:
    config = load_config(make_project(project))
    signup.request_signup(config, world, signup.read_signup(config, form()))
    token = confirm_link_token(project)
    clock.sleep(timedelta(hours=47).total_seconds())
    assert signup.open_link(config, world, token).state == "ready"
    clock.sleep(timedelta(hours=2).total_seconds())
    assert signup.open_link(config, world, token).state == "expired"
    assert signup.pending_signups(config, world) == []  # expired silently


def test_forged_and_other_purpose_tokens_open_nothing(project, world) -> None:
    from newsletter.render.tokens import Signer

    config = load_config(make_project(project))
    signup.request_signup(config, world, signup.read_signup(config, form()))
    token = confirm_link_token(project)
    (request,) = signup.pending_signups(config, world)
    today = world.now().date()
    assert signup.open_link(config, world, token) is not None
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    other_purpose = Signer(SECRET).sign("unsubscribe", request.id, day=today)
    other_secret = Signer("another-secret-of-enough-length-0123456789").sign(
        "confirm", request.id, day=today
    )
    for bad in (forged, other_purpose, other_secret, "", "a.b.c", request.id):
        assert signup.open_link(config, world, bad) is None, bad


def test_a_subscribed_address_gets_its_preferences_link_instead(project, world) -> None:
    config = load_config(make_project(project))
    outcome = signup.request_signup(
        config, world, signup.read_signup(config, form(email="Ada@example.org"))
    )
    assert outcome.mail == "known"
    (message,) = mails(project)
    assert message["Subject"] == "You are already subscribed to Research digest"
    assert "/preferences?t=" in link_in(message)
    assert signup.pending_signups(config, world) == []


def test_a_complaint_gets_nothing_and_an_unsubscribe_is_lifted_by_confirming(
    project, world
) -> None:
    config = load_config(make_project(project))
    with open_project_store(project) as store:
        from newsletter.ledger.suppression import SubscriberState

        SubscriberState(store).suppress("moe@example.org", "complained", "complaint", world.now())
    moe = signup.read_signup(config, form(email="moe@example.org"))
    assert signup.request_signup(config, world, moe).refusal == "complained"
    assert mails(project) == []
    unsubscribe(config, world, "ada@example.org", "web")
    ada = signup.read_signup(config, form(email="ada@example.org"))
    assert signup.request_signup(config, world, ada).mail == "confirm"  # listed, not receiving
    link = signup.open_link(config, world, confirm_link_token(project))
    done = signup.confirm_signup(config, world, link.request)
    assert not done.added and done.lifted is not None and done.lifted.reason == "unsubscribed"
    assert config.subscribers.read_text().count("ada@example.org") == 1


def test_the_limits_hold_per_address_and_per_hour(project, world, clock: FakeClock) -> None:
    config = load_config(
        make_project(project, "  limits:\n    per_address_hours: 24\n    per_hour: 2\n")
    )

    def ask(address: str):
        return signup.request_signup(config, world, signup.read_signup(config, form(email=address)))

    assert ask("a@example.org").mail == "confirm"
    assert ask("a@example.org").refusal.startswith("per-address limit")
    assert ask("b@example.org").mail == "confirm"
    assert ask("c@example.org").refusal.startswith("hourly limit")
    assert len(mails(project)) == 2
    clock.sleep(3700)
    assert ask("c@example.org").mail == "confirm"
    assert ask("a@example.org").refusal.startswith("per-address limit")
    clock.sleep(24 * 3600)
    assert ask("a@example.org").mail == "confirm"


def test_the_honeypot_mails_nothing(project, world) -> None:
    config = load_config(make_project(project))
    profile = signup.read_signup(config, form())
    assert signup.request_signup(config, world, profile, trapped=True).refusal == "honeypot"
    assert mails(project) == []


def test_the_form_is_checked_as_validate_checks_the_file(project) -> None:
    config = load_config(make_project(project, "  domains: [uni-example.edu]\n"))
    with pytest.raises(ProfileError) as caught:
        signup.read_signup(config, form(keywords="pruning, com*press", timezone="Mars/Base"))
    problems = caught.value.problems
    assert any(p.startswith("bad keyword 'com*press'") for p in problems), problems
    assert any("Mars/Base" in p for p in problems), problems
    assert not any("subscribers.yaml" in p or "new entry" in p for p in problems)
    with pytest.raises(ProfileError, match=r"open to addresses at uni-example\.edu"):
        signup.read_signup(config, form(email="kim@elsewhere.org"))
    assert signup.read_signup(config, form(email="kim@cs.uni-example.edu")).timezone == "UTC"
    with pytest.raises(ProfileError, match="at least one keyword"):
        signup.read_signup(config, form(keywords=" , "))
    with pytest.raises(ProfileError, match=r"U\+200B \(ZERO WIDTH SPACE\)"):
        signup.read_signup(config, form(keywords="prun\u200bing"))
