"""The HTML digest in a real browser: headless Chromium at 600px and 375px."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from newsletter.send.wiring import make_renderer
from tests.render_helpers import NOW, ada, fixed_papers, project_config, selection_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,  # a real browser
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="chromium is not installed (apt-get install chromium; .ci/run does)",
    ),
]
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("browser")
    config = project_config(folder)
    selection = selection_for(ada(), fixed_papers(), config)
    rendered = make_renderer(config, {}).render(selection, NOW)
    path = folder / "digest.html"
    path.write_text(rendered.html, encoding="utf-8")
    return path


def chromium(tmp_path: Path, width: int, *args: str) -> str:
    result = subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--window-size={width},1600",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.stdout


@pytest.mark.parametrize("width", [600, 375])
def test_screenshot_is_not_blank(page: Path, tmp_path: Path, width: int) -> None:
    from PIL import Image

    shot = tmp_path / f"digest-{width}.png"
    chromium(tmp_path, width, f"--screenshot={shot}", page.as_uri())
    image = Image.open(shot).convert("RGB")
    assert image.size == (width, 1600)
    colours = image.getcolors(maxcolors=1_000_000)
    assert colours is not None and len(colours) > 50  # text, cards, highlights
    background = max(colours)[0] / (width * 1600)
    assert background < 0.9  # not one flat colour


@pytest.mark.parametrize("width", [600, 375])
def test_no_horizontal_overflow(page: Path, tmp_path: Path, width: int) -> None:
    # The page sits in an iframe exactly `width` pixels wide (the browser window itself
    # has a minimum width), and a script reports how wide its content is.
    probe = page.parent / f"probe-{width}.html"
    probe.write_text(
        f'<html><body style="margin:0"><iframe id="f" src="{page.name}" '
        f'style="width:{width}px;height:1600px;border:0"></iframe><script>'
        "document.getElementById('f').onload = function () {"
        " var d = this.contentDocument.documentElement;"
        " document.title = 'scroll=' + d.scrollWidth + ';view=' + d.clientWidth; };"
        "</script></body></html>",
        encoding="utf-8",
    )
    dom = chromium(
        tmp_path,
        800,
        "--allow-file-access-from-files",
        "--virtual-time-budget=5000",
        "--dump-dom",
        probe.as_uri(),
    )
    found = re.search(r"<title>scroll=(\d+);view=(\d+)</title>", dom)
    assert found, dom[:500]
    scroll, view = map(int, found.groups())
    assert view == width
    assert scroll <= view
