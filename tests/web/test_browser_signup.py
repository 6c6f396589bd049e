"""Signing up in headless Chromium: the form filled and sent, the link of the confirmation
mail opened and confirmed; each page shot at 375 and 1280 px (left in .shots/ to look at)
and checked by axe-core, which must find no serious or critical violation."""

from __future__ import annotations

import pytest

from tests.web.test_app import Site, served_project
from tests.web.test_browser_pages import (
    NEEDS_BROWSER,
    browser,
    page_says,
    serious_violations,
    shoot,
)
from tests.web.test_signup import SIGNUP, link_of, mails_to, profiles

pytestmark = NEEDS_BROWSER
__all__ = ["browser"]  # (the fixture, shared with the other pages' tests)
WIDTHS = (375, 1280)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with served_project(tmp_path_factory.mktemp("signup-browser"), SIGNUP.format(per_hour=50)) as s:
        yield s


def look_at(browser, name: str) -> None:
    for width in WIDTHS:
        shoot(browser, name, width)
    assert serious_violations(browser) == []


def test_a_reader_signs_up_and_confirms_in_a_browser(site: Site, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(f"{site.url}/subscribe")
    look_at(browser, "subscribe")
    browser.find_element(By.ID, "email").send_keys("noor@example.net")
    browser.find_element(By.ID, "keywords").send_keys("pruning, com*press")
    browser.find_element(By.ID, "name").send_keys("Noor")
    Select(browser.find_element(By.ID, "timezone")).select_by_visible_text("Asia/Tokyo")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    assert page_says(browser, "bad keyword 'com*press'")
    look_at(browser, "subscribe-problem")
    keywords = browser.find_element(By.ID, "keywords")
    assert keywords.get_attribute("value") == "pruning, com*press"  # kept, to be fixed
    assert browser.find_element(By.ID, "name").get_attribute("value") == "Noor"
    keywords.clear()
    keywords.send_keys("pruning, compress*")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    assert page_says(browser, "Check your inbox")
    look_at(browser, "subscribe-sent")

    browser.get(link_of(mails_to(site, "noor@example.net")[-1], "confirm"))
    assert page_says(browser, "Confirm that noor@example.net")
    look_at(browser, "confirm")
    assert "noor@example.net" not in profiles(site)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    assert page_says(browser, "You are subscribed")
    look_at(browser, "confirmed")
    assert "- email: noor@example.net\n    name: Noor\n" in profiles(site)
    assert "timezone: Asia/Tokyo" in profiles(site)
