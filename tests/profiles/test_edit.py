"""Preference edits against the profile file: the lock they share with a send's reading of it,
and the file left as the operator wrote it apart from the changed keys."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from newsletter.config.load import load_config
from newsletter.errors import ProfileError
from newsletter.ledger.lock import profiles_lock
from newsletter.profiles.cache import profiles_of
from newsletter.profiles.edit import PreferenceChange, edit_profile, read_profile

PROFILES = """\
# The operator's notes stay.
subscribers:
  - email: ada@example.org   # Ada
    keywords: [diffusion, robotics]
    max_papers: 5
"""


@pytest.fixture
def config(project: Path):
    (project / "subscribers.yaml").write_text(PROFILES)
    return load_config(project / "config.yaml")


def blocked_until_released(config, work) -> tuple[bool, bool]:
    """Run ``work`` in a thread while an edit holds the profile lock: whether it waited for
    the lock, and whether it finished once the lock was let go."""
    thread = threading.Thread(target=work)
    with profiles_lock(config.state_dir, exclusive=True):
        thread.start()
        thread.join(timeout=0.3)
        waited = thread.is_alive()
    thread.join(timeout=10)
    return waited, not thread.is_alive()


def test_a_send_reading_the_file_waits_for_an_edit_in_progress(config) -> None:
    read = []
    assert blocked_until_released(config, lambda: read.append(profiles_of(config))) == (True, True)
    assert read[0].find("ada@example.org").max_papers == 5


def test_an_edit_waits_for_another_edit(config) -> None:
    def edit() -> None:
        edit_profile(config, "ada@example.org", PreferenceChange(max_papers=7))

    assert blocked_until_released(config, edit) == (True, True)
    assert profiles_of(config).find("ada@example.org").max_papers == 7


def test_reading_the_profiles_before_any_state_creates_no_state_folder(config) -> None:
    assert profiles_of(config).find("ada@example.org") is not None
    assert not config.state_dir.exists()


def test_an_edit_touches_only_the_changed_key(config) -> None:
    edit_profile(config, "ada@example.org", PreferenceChange(max_papers=9))
    assert config.subscribers.read_text() == PROFILES.replace("max_papers: 5", "max_papers: 9")


def test_an_edit_that_would_break_the_file_is_refused_and_nothing_written(config) -> None:
    with pytest.raises(ProfileError, match=r"subscribers\.yaml:4: .keywords. is empty"):
        edit_profile(
            config, "ada@example.org", PreferenceChange(remove_keywords=("diffusion", "robotics"))
        )
    assert config.subscribers.read_text() == PROFILES
    assert [p.name for p in config.subscribers.parent.iterdir() if p.name.endswith(".edit")] == []


MANY = """\
subscribers:
  # Group one
  - email: ada@example.org
    keywords: [diffusion, "robot*"]

  - email: bob@example.org   # Bob
    keywords: [graphs]
    max_papers: 3
  # Group two (this comment stays above Carol)
  - email: carol@example.org
    keywords: [physics]
"""


def write(config, text: str) -> None:
    config.subscribers.write_text(text)


def test_in_a_long_file_only_that_entry_is_rewritten(config) -> None:
    write(config, MANY)
    edit_profile(config, "bob@example.org", PreferenceChange(add_keywords=("sheaves",)))
    assert config.subscribers.read_text() == MANY.replace("[graphs]", "[graphs, sheaves]")


def test_a_refused_edit_names_the_real_line_of_the_entry(config) -> None:
    write(config, MANY)
    removal = PreferenceChange(remove_keywords=("physics",))
    with pytest.raises(ProfileError) as caught:
        edit_profile(config, "carol@example.org", removal)
    assert "subscribers.yaml:11: 'keywords' is empty" in str(caught.value)  # Carol's keywords
    assert config.subscribers.read_text() == MANY


def test_another_entrys_mistake_does_not_block_an_edit(config) -> None:
    broken = MANY.replace("max_papers: 3", "max_papers: lots")
    write(config, broken)
    assert read_profile(config, "carol@example.org").keywords[0].text == "physics"
    edit_profile(config, "carol@example.org", PreferenceChange(max_papers=4))
    expected = broken.replace("[physics]\n", "[physics]\n    max_papers: 4\n")
    assert config.subscribers.read_text() == expected


@pytest.mark.parametrize(
    "layout",
    [
        "subscribers: [{email: ada@example.org, keywords: [diffusion]}]\n",
        "subscribers:\n  - email: bob@example.org\n    keywords: &shared [graphs]\n"
        "  - email: ada@example.org\n    keywords: *shared\n",
        "subscribers:\n- email: ada@example.org\n  keywords: [diffusion]\n- email: x@example.org\n"
        "  keywords: [graphs]\n",
    ],
    ids=["flow", "alias", "dashes-at-column-0"],
)
def test_every_layout_is_edited_and_stays_valid(config, layout: str) -> None:
    write(config, layout)
    edit_profile(config, "ada@example.org", PreferenceChange(max_papers=6))
    assert profiles_of(config).find("ada@example.org").max_papers == 6
    assert read_profile(config, "ada@example.org").max_papers == 6
    if "x@example.org" in layout:
        assert config.subscribers.read_text() == layout.replace(
            "[diffusion]\n", "[diffusion]\n  max_papers: 6\n"
        )
