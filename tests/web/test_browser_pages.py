"""The subscriber pages in headless Chromium: the unsubscribe link of a real .eml from
``preview --out`` is opened and its button clicked, and the next send skips that subscriber;
every page is shot at 375 and 1024 px and checked for content and overflow."""

from __future__ import annotations

import email
import shutil
from email import policy
from pathlib import Path

import pytest

from tests.helpers import NOW, ROOT, invoke
from tests.web.test_app import ENV, Site, served_project

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
NEEDS_BROWSER = [
    pytest.mark.slow,  # a real browser
    pytest.mark.skipif(
        CHROMIUM is None or DRIVER is None,
        reason="chromium and chromedriver are not installed (apt-get install chromium "
        "chromium-driver; .ci/run does)",
    ),
]
pytestmark = NEEDS_BROWSER
SHOTS = ROOT / ".shots"  # left for a person to look at


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with served_project(tmp_path_factory.mktemp("browser")) as served:
        yield served


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # type: ignore[assignment]
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def shoot(browser, name: str, width: int) -> None:
    """Screenshot the page at ``width`` and check that nothing overflows sideways."""
    from PIL import Image

    browser.set_window_size(width, 1000)
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 1000, "deviceScaleFactor": 1, "mobile": width < 500},
    )
    scroll = browser.execute_script("return document.documentElement.scrollWidth")
    assert scroll <= width, f"{name} at {width}px is {scroll}px wide"
    SHOTS.mkdir(exist_ok=True)
    path = SHOTS / f"{name}-{width}.png"
    browser.save_screenshot(str(path))
    image = Image.open(path).convert("RGB")
    colours = image.getcolors(maxcolors=1_000_000)
    assert colours is not None and len(colours) > 20, f"{name} looks blank"


def unsubscribe_link_of_preview(site: Site, address: str, folder: Path) -> str:
    result = invoke(
        site.config, "preview", "--subscriber", address, "--all", "--out", str(folder),
        environ=ENV, now=NOW,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    eml = folder / f"{address}.eml"
    message = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    return str(message["List-Unsubscribe"]).split(", ")[1].strip("<>")


def serious_violations(browser, also: tuple[str, ...] = ()) -> list[str]:
    """What axe-core finds serious or critical on the page shown (and any violation of the
    rules ``also``, whatever its impact)."""
    from axe_selenium_python import Axe

    axe = Axe(browser)
    axe.inject()
    results = axe.run()
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']]}"
        for v in results["violations"]
        if v["impact"] in ("serious", "critical") or v["id"] in also
    ]


def page_says(browser, text: str) -> bool:
    """Whether the page shows ``text`` once the navigation a click started has finished
    (the old page's body goes stale meanwhile)."""
    from selenium.common.exceptions import TimeoutException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    def shows(driver) -> bool:
        # Mid-navigation Chromium answers with a stale element or "node does not belong to
        # the document"; both mean "not yet".
        try:
            return text in driver.find_element("tag name", "body").text
        except WebDriverException:
            return False

    waiting = WebDriverWait(browser, 10)
    try:
        return waiting.until(shows)
    except TimeoutException:
        return False


def test_clicking_unsubscribe_in_a_browser_stops_the_next_send(
    site: Site, browser, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    url = unsubscribe_link_of_preview(site, "ada@example.org", tmp_path)
    browser.get(url)
    for width in (375, 1024):
        shoot(browser, "unsubscribe", width)
    assert site.statuses()["ada@example.org"] == "active"  # opening it changed nothing
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    assert page_says(browser, "You are unsubscribed")
    for width in (375, 1024):
        shoot(browser, "unsubscribed", width)
    output = invoke(site.config, "send", "--now", environ=ENV, now=NOW).output
    assert "skipped: ada@example.org: unsubscribed on" in output and "(web)" in output


@pytest.mark.parametrize("page", ["Preferences", "More like this", "View in your browser"])
def test_each_page_reads_well_on_a_phone_and_a_desktop(site: Site, browser, page: str) -> None:
    browser.get(site.links["grace@example.org"][page])
    text = browser.find_element("tag name", "body").text
    assert {"Preferences": "Papers per digest", "More like this": "Not relevant"}.get(
        page, "Matched:"
    ) in text
    for width in (375, 1024):
        shoot(browser, page.lower().replace(" ", "-"), width)


def test_a_bad_link_shows_the_generic_page(site: Site, browser) -> None:
    browser.get(f"{site.url}/preferences?t=forged")
    assert "This link is not valid" in browser.find_element("tag name", "body").text
    for width in (375, 1024):
        shoot(browser, "invalid", width)
