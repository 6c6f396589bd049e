"""The HTML template with its CSS inlined, kept in the state folder: used only for the very
same template (and inliner); anything else inlines again."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from newsletter.errors import TemplateError
from newsletter.files.state_cache import read_stored, write_cached
from newsletter.render.templates import HTML_TEMPLATE, load_templates
from tests.helpers import ROOT

PACKAGED = ROOT / "newsletter" / "templates" / HTML_TEMPLATE


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "templates").mkdir()
    shutil.copy(PACKAGED, tmp_path / "templates" / HTML_TEMPLATE)
    return tmp_path


def plant(cache: Path, inlined: str) -> None:
    """Put another inlined template in the cache under its present key."""
    key, (_, lines) = read_stored(cache)
    write_cached(cache, key, (inlined, lines))


def test_the_second_load_comes_from_the_cache(folder: Path) -> None:
    cache = folder / "templates.cache"
    first = load_templates(folder / "templates", cache)
    assert first == load_templates(folder / "templates") and cache.exists()
    assert 'style="' in first.html  # (inlined)
    plant(cache, first.html.replace("<body", "<body data-planted"))
    assert "data-planted" in load_templates(folder / "templates", cache).html


def test_an_edited_template_is_inlined_again(folder: Path) -> None:
    cache = folder / "templates.cache"
    load_templates(folder / "templates", cache)
    path = folder / "templates" / HTML_TEMPLATE
    path.write_text(path.read_text().replace("<body", '<body class="edited"'))
    assert 'class="edited"' in load_templates(folder / "templates", cache).html


def test_a_broken_cache_is_ignored_and_replaced(folder: Path) -> None:
    cache = folder / "templates.cache"
    cache.write_bytes(b"\x80\x05 not a pickle")
    assert load_templates(folder / "templates", cache) == load_templates(folder / "templates")
    assert read_stored(cache)[0]  # (written again)


def test_a_template_mistake_is_reported_every_time(folder: Path) -> None:
    path = folder / "templates" / HTML_TEMPLATE
    path.write_text(path.read_text().replace("{{", "{{ (", 1))
    for _ in range(2):
        with pytest.raises(TemplateError, match=HTML_TEMPLATE):
            load_templates(folder / "templates", folder / "templates.cache")
