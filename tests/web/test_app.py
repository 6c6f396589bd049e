"""``newsletter serve`` as a real process on a loopback port, driven over HTTP: one-click
unsubscribe, pages that never change anything on GET, refused tokens, preferences saved
into the profile file, web copies, the feed and feedback."""

from __future__ import annotations

import base64
import email
import html
import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path

import feedparser
import httpx
import pytest

from newsletter.ledger.link_keys import LinkKeys
from newsletter.render.tokens import Signer
from newsletter.store.sqlite import open_store
from tests.helpers import NOW, SAMPLES, child_env, command, invoke, legacy_token
from tests.smtp_server import free_port

SECRET = "k2Jx9-TqLw_0aZr7Vn4bYc8uHs1eDf6gPm3"
OLD_SECRET = "Zr7Vn4bYc8uHs1eDf6gPm3-k2Jx9-TqLw_0a"  # rotated out; honoured for 60 days
ENV = {"NEWSLETTER_UNSUBSCRIBE_SECRET": SECRET, "NEWSLETTER_OLD_SECRET": OLD_SECRET}
PROFILES = """\
# The operator's file: these comments must survive every edit from the web.
subscribers:
  - email: ada@example.org
    name: Ada
    keywords: [pruning, "knowledge distillation", "compress*"]  # her research
    max_papers: 10
    frequency: daily
    send_at: "07:00"
    timezone: Europe/Berlin

  # Grace reads on Mondays.
  - email: grace@example.org
    keywords: [transformer, "diffusion model*"]
    frequency: weekly
    day: monday
"""


@dataclass
class Site:
    """A project that sent its digests, and its web app serving at ``url``."""

    folder: Path
    url: str
    links: dict[str, dict[str, str]]  # address -> link name -> URL (from the sent emails)
    log: list[str] = field(default_factory=list)  # what serve wrote to stderr after starting

    @property
    def config(self) -> Path:
        return self.folder / "config.yaml"

    def send(self, *args: str) -> str:
        result = invoke(self.config, "send", *args, environ=ENV, now=NOW)
        return result.output

    def keep_keys(self, signer: Signer, *addresses: str) -> None:
        """Keep the link keys of ``addresses`` under ``signer``, as a send with it does."""
        with open_store(self.folder / "state") as store:
            LinkKeys(store).remember(signer, addresses, datetime.now(UTC))

    def statuses(self) -> dict[str, str]:
        result = invoke(self.config, "subscribers", "--json", environ=ENV)
        return {row["address"]: row["status"] for row in json.loads(result.output)}


def sent_links(outbox: Path) -> dict[str, dict[str, str]]:
    """Each recipient's links, read from the text part of the delivered messages."""
    found: dict[str, dict[str, str]] = {}
    if not (outbox / "new").is_dir():  # (delivered over SMTP instead)
        return found
    for path in sorted((outbox / "new").iterdir()):
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        text = message.get_body(("plain",)).get_content()
        links = dict(re.findall(r"^ *([A-Z][a-z ]+): (http\S+)", text, re.M))
        links["List-Unsubscribe"] = str(message["List-Unsubscribe"]).split(", ")[1].strip("<>")
        found[message["To"].addresses[0].addr_spec] = links
    return found


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    with served_project(tmp_path_factory.mktemp("serve")) as served:
        yield served


@contextmanager
def served_project(
    folder: Path, config: str = "", digests: Path = SAMPLES, profiles: str = PROFILES
) -> Iterator[Site]:
    """A project in ``folder`` that sent its digests, with ``newsletter serve`` running
    (``config``: more of config.yaml; ``digests`` and ``profiles``: its own)."""
    shutil.copytree(digests, folder / "digests")
    port = free_port()
    (folder / "config.yaml").write_text(
        "digests: digests\nstate_dir: state\noutbox_dir: outbox\n"
        f"public_url: http://127.0.0.1:{port}\nbounce_address: bounces@example.org\n"
        "previous_secret_env: NEWSLETTER_OLD_SECRET\n" + config
    )
    (folder / "subscribers.yaml").write_text(profiles)
    result = invoke(folder / "config.yaml", "send", "--now", environ=ENV, now=NOW)
    assert result.exit_code == 0 and " sent" in result.output, result.output
    process = subprocess.Popen(
        [*command(folder / "config.yaml"), "serve", "--port", str(port)],
        env=child_env(**ENV),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert "serving on http://127.0.0.1:" in line, line + process.stderr.read()
        served = Site(folder, f"http://127.0.0.1:{port}", sent_links(folder / "outbox"))
        # (read on, so that the pipe never fills and tests can see what was logged)
        threading.Thread(target=served.log.extend, args=(process.stderr,), daemon=True).start()
        yield served
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, follow_redirects=False) as client:
        yield client


def token_of(url: str) -> str:
    return re.search(r"[?&]t=([^&]+)", url).group(1)  # type: ignore[union-attr]


def test_every_page_carries_strict_security_headers(site: Site, http: httpx.Client) -> None:
    response = http.get(site.links["ada@example.org"]["Preferences"])
    assert response.status_code == 200
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "http" not in csp  # no external source at all
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"


def test_a_get_of_the_unsubscribe_link_changes_nothing(site: Site, http: httpx.Client) -> None:
    url = site.links["grace@example.org"]["List-Unsubscribe"]
    for _ in range(3):  # a mail scanner prefetching it, again and again
        page = http.get(url)
        assert page.status_code == 200 and 'value="unsubscribe"' in page.text
    assert site.statuses()["grace@example.org"] == "active"


@pytest.mark.parametrize(
    "mangle",
    [
        lambda url: url.replace("t=", "t=x"),  # forged
        lambda url: re.sub(r"(t=[^.]+)\.\d+\.", r"\1.19000.", url),  # the MAC fails
        lambda url: url.split("?")[0],  # no token
    ],
    ids=["forged", "redated", "missing"],
)
def test_bad_tokens_get_one_generic_page_and_change_nothing(
    site: Site, http: httpx.Client, mangle
) -> None:
    url = mangle(site.links["grace@example.org"]["List-Unsubscribe"])
    generic = http.post(url, data={"List-Unsubscribe": "One-Click"})
    unknown = http.get(
        f"{site.url}/unsubscribe?t=Ym9iQGV4YW1wbGUub3Jn.20000.AAAAAAAAAAAAAAAAAAAAAA"
    )
    assert generic.status_code == unknown.status_code == 403
    assert generic.text == unknown.text  # nothing tells one address from another
    assert "grace" not in generic.text
    assert site.statuses()["grace@example.org"] == "active"


def test_links_signed_by_the_previous_secret_work_for_the_grace_period_only(
    site: Site, http: httpx.Client
) -> None:
    old = Signer(OLD_SECRET)
    site.keep_keys(old, "ada@example.org")  # (as a send before the rotation did)
    today = datetime.now(UTC).date()  # the server runs on the real clock
    recent = old.sign("preferences", "ada@example.org", day=today - timedelta(days=10))
    expired = old.sign("preferences", "ada@example.org", day=today - timedelta(days=61))
    assert http.get(f"{site.url}/preferences?t={recent}").status_code == 200
    refused = http.get(f"{site.url}/preferences?t={expired}")
    assert refused.status_code == 410 and "Mail me a new link" in refused.text


def test_an_expired_link_offers_a_fresh_one_by_mail_once_a_day(site: Site, http) -> None:
    today = datetime.now(UTC).date()
    signer = Signer(SECRET)
    old = signer.sign("archive", "grace@example.org", "k1", day=today - timedelta(days=401))
    page = http.get(f"{site.url}/digest/k1?t={old}")
    assert page.status_code == 410 and 'name="part" value="k1"' in page.text
    form = {"t": old, "p": "archive", "part": "k1"}
    outbox = site.folder / "outbox" / "new"
    before = set(outbox.iterdir())
    done = http.post(f"{site.url}/fresh-link", data=form)
    assert done.status_code == 200 and "a mail with new links is on its way" in done.text
    (mail,) = [email.message_from_bytes(p.read_bytes(), policy=policy.default)
               for p in set(outbox.iterdir()) - before]  # fmt: skip
    assert mail["To"] == "grace@example.org" and mail["Subject"].startswith("Your new links")
    fresh = next(
        w for w in mail.get_body(("plain",)).get_content().split() if "/preferences?t=" in w
    )
    assert http.get(fresh).status_code == 200  # the new link works
    again = http.post(f"{site.url}/fresh-link", data=form)  # the same page, no second mail
    assert again.text == done.text and len(set(outbox.iterdir()) - before) == 1
    forged = http.post(f"{site.url}/fresh-link", data=form | {"part": "k2"})
    assert forged.status_code == 403
    future = signer.sign("archive", "grace@example.org", "k1", day=today + timedelta(days=5))
    assert http.get(f"{site.url}/digest/k1?t={future}").status_code == 403


def test_a_token_for_another_purpose_or_digest_is_refused(site: Site, http: httpx.Client) -> None:
    links = site.links["grace@example.org"]
    archive_token = token_of(links["View in your browser"])
    for token in (archive_token, token_of(links["Preferences"])):
        swapped = f"{site.url}/unsubscribe?t={token}"
        assert http.post(swapped, data={"List-Unsubscribe": "One-Click"}).status_code == 403
    ada_digest = site.links["ada@example.org"]["View in your browser"].split("?")[0]
    assert http.get(f"{ada_digest}?t={archive_token}").status_code == 403
    assert site.statuses()["grace@example.org"] == "active"


def test_the_web_copy_and_the_feed(site: Site, http: httpx.Client) -> None:
    links = site.links["ada@example.org"]
    copy = http.get(links["View in your browser"])
    assert copy.status_code == 200 and "Teacher, Interrupted" in copy.text
    assert "Matched:" in copy.text and "pruning" in copy.text
    feed = feedparser.parse(http.get(links["Your feed"]).content)
    assert not feed.bozo, feed.bozo_exception
    history = invoke(site.config, "history", "--subscriber", "ada@example.org", "--json")
    (digest,) = json.loads(history.output)["digests"]
    titles = [entry.title for entry in feed.entries]
    assert titles == digest["titles"] and "Teacher, Interrupted" in titles[0]
    assert all(entry.link.startswith("https://") for entry in feed.entries)
    assert "ada@" not in " ".join(entry.id for entry in feed.entries)


def test_feedback_is_confirmed_by_a_post_and_shows_in_history(
    site: Site, http: httpx.Client
) -> None:
    url = site.links["ada@example.org"]["Not relevant"]
    assert "Not relevant" in http.get(url).text  # a GET only asks
    history = invoke(site.config, "history", "--subscriber", "ada@example.org", environ=ENV)
    assert "feedback:" not in history.output
    params = dict(httpx.URL(url).params)
    page = http.post(f"{site.url}/feedback", data=params)
    assert page.status_code == 200 and "recorded as “not relevant”" in page.text
    history = invoke(site.config, "history", "--subscriber", "ada@example.org", environ=ENV)
    assert "feedback: not relevant" in history.output
    forged = params | {"p": "another-paper"}
    assert http.post(f"{site.url}/feedback", data=forged).status_code == 403


def test_preferences_are_saved_into_the_file_keeping_its_comments(
    site: Site, http: httpx.Client
) -> None:
    url = site.links["ada@example.org"]["Preferences"]
    before = site.config.with_name("subscribers.yaml").read_text()
    form = {
        "t": token_of(url),
        "frequency": "weekly",
        "day": "friday",
        "send_at": "08:30",
        "timezone": "Europe/Paris",
        "max_papers": "5",
        "remove": "compress*",
        "add": "sparse attention, yes",
    }
    page = http.post(url.split("?")[0], data=form)
    assert page.status_code == 200 and "Saved." in page.text
    after = site.config.with_name("subscribers.yaml").read_text()
    assert "# The operator's file" in after and "# her research" in after
    assert "# Grace reads on Mondays." in after
    assert 'keywords: [pruning, "knowledge distillation", "sparse attention", "yes"]' in after
    assert 'send_at: "08:30"' in after and "timezone: Europe/Paris" in after
    assert "day: friday" in after and "max_papers: 5" in after
    assert after.split("# Grace")[1] == before.split("# Grace")[1]  # her entry untouched
    check = invoke(site.config, "validate", environ=ENV)
    assert check.exit_code == 0, check.output


def test_an_invalid_preference_is_refused_and_the_file_kept(site: Site, http: httpx.Client) -> None:
    url = site.links["grace@example.org"]["Preferences"]
    before = site.config.with_name("subscribers.yaml").read_text()
    everything = ["transformer", "diffusion model*"]
    page = http.post(url.split("?")[0], data={"t": token_of(url), "remove": everything})
    assert page.status_code == 400 and "give at least one keyword" in page.text
    bad_zone = http.post(url.split("?")[0], data={"t": token_of(url), "timezone": "Mars/Base"})
    assert bad_zone.status_code == 400 and "not a time zone" in bad_zone.text
    assert site.config.with_name("subscribers.yaml").read_text() == before


def test_a_refused_keyword_keeps_everything_typed(site: Site, http: httpx.Client) -> None:
    url = site.links["grace@example.org"]["Preferences"]
    form = {"t": token_of(url), "add": "vision, com*press", "max_papers": "7",
            "send_at": "09:15", "timezone": "Asia/Tokyo", "remove": "transformer"}  # fmt: skip
    page = http.post(url.split("?")[0], data=form)
    assert page.status_code == 400 and "bad keyword 'com*press'" in html.unescape(page.text)
    assert 'value="vision, com*press"' in page.text and 'value="7"' in page.text
    assert 'value="09:15"' in page.text and "<option selected>Asia/Tokyo</option>" in page.text
    assert 'value="transformer" checked' in page.text


def test_an_invalid_profile_file_gets_a_styled_try_again_page(site: Site, http) -> None:
    path = site.config.with_name("subscribers.yaml")
    good = path.read_text()
    url = site.links["ada@example.org"]["Preferences"]
    try:
        for broken in ("", "subscribers: [\n"):  # emptied, and cut in the middle
            path.write_text(broken)
            for answer in (
                http.get(url),
                http.post(url.split("?")[0], data={"t": token_of(url), "max_papers": "3"}),
            ):
                assert answer.status_code == 503 and answer.headers["Retry-After"] == "60"
                assert "Your preferences are being updated right now" in answer.text
                assert "Internal Server Error" not in answer.text
            assert path.read_text() == broken
        assert any("the profile file cannot be read" in line for line in site.log)
    finally:
        path.write_text(good)


def test_one_click_unsubscribes_and_survives_the_operator_re_adding_the_address(
    site: Site, http: httpx.Client
) -> None:
    url = site.links["grace@example.org"]["List-Unsubscribe"]
    response = http.post(url, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert site.statuses()["grace@example.org"] == "unsubscribed"
    # The operator deletes her entry, then restores the file from a backup: still suppressed.
    profiles = site.config.with_name("subscribers.yaml")
    saved = profiles.read_text()
    profiles.write_text(saved.split("  # Grace")[0])
    profiles.write_text(saved)
    output = site.send("--now", "--dry-run")
    assert "skipped: grace@example.org: unsubscribed on" in output and "(one-click)" in output
    # Her own click brings her back.
    page = http.post(url, data={"t": token_of(url), "action": "resubscribe"})
    assert page.status_code == 200 and "Welcome back" in page.text
    assert site.statuses()["grace@example.org"] == "active"


def test_a_request_too_large_is_refused(site: Site, http: httpx.Client) -> None:
    url = site.links["ada@example.org"]["Preferences"]
    response = http.post(url.split("?")[0], data={"t": token_of(url), "add": "x" * 200_000})
    assert response.status_code == 413
    time.sleep(0)  # (the server stays up for the next test)
    assert http.get(url).status_code == 200


def test_no_link_spells_its_subscribers_address(site: Site) -> None:
    for address, links in site.links.items():
        local = address.split("@")[0]
        for name, url in links.items():
            token = token_of(url)
            key = token.split(".")[0]
            spelled = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
            assert local not in url and local.encode() not in spelled, (name, url)


def test_a_link_of_the_previous_release_still_works(site: Site, http: httpx.Client) -> None:
    today = datetime.now(UTC).date()
    old = legacy_token(SECRET, "preferences", "grace@example.org", today - timedelta(days=3))
    page = http.get(f"{site.url}/preferences?t={old}")
    assert page.status_code == 200 and "grace@example.org" in page.text


def test_the_feed_names_itself_by_public_url_whatever_host_the_request_says(
    site: Site, http: httpx.Client
) -> None:
    url = site.links["ada@example.org"]["Your feed"]
    body = http.get(url, headers={"Host": "evil.example.net"}).content
    feed = feedparser.parse(body)
    (self_link,) = [link.href for link in feed.feed.links if link.rel == "self"]
    assert self_link == url and b"evil.example.net" not in body


def test_the_web_copy_and_feed_explain_by_what_matched_when_sent(tmp_path: Path, http) -> None:
    with served_project(tmp_path) as site:
        links = site.links["ada@example.org"]
        profiles = site.folder / "subscribers.yaml"
        before = http.get(links["View in your browser"]).text
        # Ada drops every keyword her digest was sent for.
        edited = profiles.read_text().replace(
            'keywords: [pruning, "knowledge distillation", "compress*"]', "keywords: [quantum]"
        )
        assert edited != profiles.read_text()
        profiles.write_text(edited)
        copy = http.get(links["View in your browser"]).text
        reasons = re.findall(r"Matched:</b>([^<]*)</p>", copy)
        assert reasons and all(r.strip() for r in reasons), reasons  # none empty
        assert reasons == re.findall(r"Matched:</b>([^<]*)</p>", before)
        assert any("pruning" in r for r in reasons)
        feed = feedparser.parse(http.get(links["Your feed"]).content)
        summaries = [entry.summary for entry in feed.entries]
        assert summaries and all(s.startswith("Matched: ") for s in summaries), summaries[:1]
