"""A new entry appended to the profile file: the file left as the operator wrote it, the
entry checked as every entry is, nothing written when it would not do."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.config.load import load_config
from newsletter.errors import ProfileError
from newsletter.models import NewProfile
from newsletter.profiles.cache import profiles_of
from newsletter.profiles.edit import add_profile

PROFILES = """\
# The operator's notes stay.
subscribers:
  - email: ada@example.org   # Ada
    keywords: [diffusion, robotics]

  - email: grace@example.org
    keywords: [transformer]
"""


@pytest.fixture
def config(project: Path):
    (project / "subscribers.yaml").write_text(PROFILES)
    return load_config(project / "config.yaml")


def test_an_entry_is_appended_keeping_comments_and_spacing(config) -> None:
    profile = NewProfile(
        "turing@example.org", ("zero-shot", "knowledge distillation | KD", "yes"), "Alan"
    )
    added = add_profile(config, profile)
    text = config.subscribers.read_text()
    assert text.startswith(PROFILES)  # every byte of the file as it was
    assert text[len(PROFILES) :] == (
        "\n  - email: turing@example.org\n    name: Alan\n"
        '    keywords: ["zero-shot", "knowledge distillation | KD", "yes"]\n'
    )
    assert added.line == 9 and added.name == "Alan"
    assert [k.text for k in added.keywords] == ["zero-shot", "knowledge distillation | KD", "yes"]
    assert profiles_of(config).find("turing@example.org") == added


def test_a_weekly_entry_keeps_its_day(config) -> None:
    added = add_profile(config, NewProfile("t@example.org", ("pruning",), None, "weekly", "friday"))
    assert (added.frequency, added.day) == ("weekly", "friday")


def test_an_address_in_the_file_already_is_refused_and_nothing_written(config) -> None:
    with pytest.raises(ProfileError, match=r"subscribers.yaml:3: ada@example.org is subscribed"):
        add_profile(config, NewProfile("ADA@example.org", ("pruning",)))
    assert config.subscribers.read_text() == PROFILES


@pytest.mark.parametrize(
    ("profile", "problem"),
    [
        (NewProfile("t@example.org", ("*compress",)), "'*' may only end a keyword"),
        (NewProfile("t@example.org", ()), "'keywords' is empty"),
        (NewProfile("t@example.org", ("a",), None, "weekly", "funday"), "did you mean 'sunday'"),
    ],
)
def test_a_mistake_in_the_entry_is_refused_naming_the_entry(config, profile, problem) -> None:
    with pytest.raises(ProfileError) as refused:
        add_profile(config, profile)
    assert "the new entry for t@example.org:" in str(refused.value)
    assert problem in str(refused.value)
    assert config.subscribers.read_text() == PROFILES
