"""axe-core in headless Chromium over every page of ``newsletter serve`` and over the mails'
HTML: no serious or critical violation anywhere, and on the pages every bit of content in
one ``main`` landmark (the rules ``landmark-one-main`` and ``region``)."""

from __future__ import annotations

import email
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path

import pytest

from newsletter.render.tokens import Signer
from tests.web.test_app import SECRET, Site, served_project
from tests.web.test_browser_pages import NEEDS_BROWSER, browser, page_says, serious_violations

pytestmark = NEEDS_BROWSER
__all__ = ["browser"]  # (the fixture, shared with the other pages' tests)
LANDMARKS = ("landmark-one-main", "region")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with served_project(tmp_path_factory.mktemp("axe")) as served:
        yield served


def page_passes(browser, name: str) -> None:
    found = serious_violations(browser, also=LANDMARKS)
    assert found == [], f"{name}: {found}"


def click(browser, selector: str = "button[type=submit]") -> None:
    from selenium.webdriver.common.by import By

    browser.find_element(By.CSS_SELECTOR, selector).click()


def test_every_page_a_link_opens_passes_axe(site: Site, browser) -> None:
    links = site.links["grace@example.org"]
    today = datetime.now(UTC).date()
    old = Signer(SECRET).sign("archive", "grace@example.org", "k1", day=today - timedelta(401))
    pages = {
        "preferences": links["Preferences"],
        "unsubscribe": links["Unsubscribe"],
        "feedback": links["More like this"],
        "invalid link": f"{site.url}/preferences?t=forged",
        "expired link": f"{site.url}/digest/k1?t={old}",
    }
    for name, url in pages.items():
        browser.get(url)
        page_passes(browser, name)


def test_every_page_a_form_answers_with_passes_axe(site: Site, browser) -> None:
    from selenium.webdriver.common.by import By

    links = site.links["ada@example.org"]
    browser.get(links["Preferences"])
    browser.find_element(By.ID, "add").send_keys("com*press")
    click(browser)
    assert page_says(browser, "bad keyword")
    page_passes(browser, "preferences refused")
    browser.find_element(By.ID, "add").clear()
    click(browser)
    assert page_says(browser, "Saved.")
    page_passes(browser, "preferences saved")
    browser.get(links["Not relevant"])
    click(browser)
    assert page_says(browser, "Thank you")
    page_passes(browser, "feedback recorded")
    browser.get(links["Unsubscribe"])
    click(browser)
    assert page_says(browser, "You are unsubscribed")
    page_passes(browser, "unsubscribed")
    click(browser)
    assert page_says(browser, "Welcome back")
    page_passes(browser, "resubscribed")


def test_the_expired_links_page_and_the_mail_it_sends_pass_axe(
    site: Site, browser, tmp_path: Path
) -> None:
    today = datetime.now(UTC).date()
    old = Signer(SECRET).sign("preferences", "ada@example.org", day=today - timedelta(500))
    outbox = site.folder / "outbox" / "new"
    before = set(outbox.iterdir())
    browser.get(f"{site.url}/preferences?t={old}")
    click(browser)
    assert page_says(browser, "on its way")
    page_passes(browser, "fresh links sent")
    (mail,) = set(outbox.iterdir()) - before
    mail_passes(browser, mail, tmp_path)


def test_the_page_of_a_profile_file_being_edited_passes_axe(site: Site, browser) -> None:
    profiles = site.folder / "subscribers.yaml"
    kept = profiles.read_text()
    profiles.write_text("subscribers: [\n")  # (an editor's save, half done)
    try:
        browser.get(site.links["grace@example.org"]["Preferences"])
        assert page_says(browser, "try again")
        page_passes(browser, "updating")
    finally:
        profiles.write_text(kept)


def mail_passes(browser, path: Path, folder: Path) -> None:
    """The HTML part of the mail at ``path``, opened as a page: no serious violation."""
    message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    html = message.get_body(("html",)).get_content()
    page = folder / f"{path.name}.html"
    page.write_text(html, encoding="utf-8")
    browser.get(page.as_uri())
    assert serious_violations(browser) == [], message["Subject"]


def test_the_digest_and_its_web_copy_pass_axe(site: Site, browser, tmp_path: Path) -> None:
    outbox = site.folder / "outbox" / "new"
    digests = [p for p in outbox.iterdir() if b"\nList-Unsubscribe:" in p.read_bytes()]
    assert digests
    for path in digests:
        mail_passes(browser, path, tmp_path)
    browser.get(site.links["grace@example.org"]["View in your browser"])
    assert page_says(browser, "Matched:")
    assert serious_violations(browser) == []
