"""A profile has bounds, checked where profiles are checked, so the file, the preferences
form, the sign-up form and ``newsletter subscribe`` all refuse alike: at most 200 entries
per list, 200 characters per entry, no invisible format characters."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.config.load import load_config
from newsletter.errors import ProfileError
from newsletter.profiles.edit import PreferenceChange, edit_profile
from tests.helpers import invoke

ZERO_WIDTH = "prun\u200bing"  # looks like "pruning", matches nothing
LONG = "token " * 40  # 240 characters


def profile_file(project: Path, key: str, items: list[str]) -> Path:
    listed = ", ".join(f'"{item}"' for item in items)
    (project / "subscribers.yaml").write_text(
        "subscribers:\n  - email: ada@example.org\n    keywords: [pruning]\n"
        f"    {key}: [{listed}]\n"
    )
    return project / "config.yaml"


@pytest.mark.parametrize("key", ["keywords", "exclude", "require", "authors"])
def test_a_list_of_more_than_200_entries_is_refused_with_its_line(project, key) -> None:
    items = [f"Ann Author{i}" if key == "authors" else f"word{i}" for i in range(201)]
    result = invoke(profile_file(project, key, items), "validate")
    assert result.exit_code != 0
    assert f"subscribers.yaml:4: '{key}' lists 201 entries; a profile takes at most 200" in (
        result.output
    )


@pytest.mark.parametrize("key", ["keywords", "authors"])
def test_a_long_or_invisibly_marked_entry_is_refused(project, key) -> None:
    result = invoke(profile_file(project, key, [LONG.strip(), ZERO_WIDTH]), "validate")
    assert "is 239 characters long; an entry is at most 200" in result.output, result.output
    assert "U+200B (ZERO WIDTH SPACE); remove it" in result.output
    assert "subscribers.yaml:4" in result.output


def test_the_forms_and_subscribe_refuse_with_the_same_words(project) -> None:
    (project / "subscribers.yaml").write_text(
        "subscribers:\n  - email: ada@example.org\n    keywords: [pruning]\n"
    )
    config = load_config(project / "config.yaml")
    with pytest.raises(ProfileError, match=r"U\+200B \(ZERO WIDTH SPACE\)"):
        edit_profile(config, "ada@example.org", PreferenceChange(add_keywords=(ZERO_WIDTH,)))
    many = tuple(f"word{i}" for i in range(200))
    with pytest.raises(ProfileError, match="'keywords' lists 201 entries"):
        edit_profile(config, "ada@example.org", PreferenceChange(add_keywords=many))
    added = invoke(project / "config.yaml", "subscribe", "kim@example.net", "--keywords", LONG)
    assert added.exit_code != 0 and "an entry is at most 200" in added.output
    assert "kim@example.net" not in (project / "subscribers.yaml").read_text()
