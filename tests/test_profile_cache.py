"""The profile cache: used only for the very same file, defaults and code."""

from __future__ import annotations

import os
import pickle
from dataclasses import replace
from datetime import time
from pathlib import Path

import pytest

from newsletter.config import MatchSettings, ScheduleDefaults
from newsletter.errors import ProfileError
from newsletter.profile_cache import CACHE_FILE, load_profiles_cached
from newsletter.profiles import Profiles

PROFILES = "subscribers:\n  - email: ada@example.org\n    keywords: [pruning]\n"


def load(path: Path, schedule: ScheduleDefaults | None = None) -> Profiles:
    return load_profiles_cached(
        path, schedule or ScheduleDefaults(), MatchSettings(), path.parent / "state"
    )


@pytest.fixture
def profile_file(tmp_path: Path) -> Path:
    (tmp_path / "state").mkdir()
    path = tmp_path / "subscribers.yaml"
    path.write_text(PROFILES)
    return path


def plant(path: Path, profiles: Profiles) -> None:
    """Put other profiles in the cache under its present key."""
    cache = path.parent / "state" / CACHE_FILE
    key, _ = pickle.loads(cache.read_bytes())
    cache.write_bytes(pickle.dumps((key, profiles)))


def test_the_second_load_comes_from_the_cache(profile_file: Path) -> None:
    first = load(profile_file)
    assert [s.email for s in first.subscribers] == ["ada@example.org"]
    planted = replace(first, subscribers=())
    plant(profile_file, planted)
    assert load(profile_file) == planted  # (so the cache is what the second load read)


def test_an_edit_of_the_same_size_is_read_again(profile_file: Path) -> None:
    load(profile_file)
    stat = profile_file.stat()
    profile_file.write_text(PROFILES.replace("ada@", "bob@"))
    os.utime(profile_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same time
    assert [s.email for s in load(profile_file).subscribers] == ["bob@example.org"]


def test_other_defaults_read_the_file_again(profile_file: Path) -> None:
    assert load(profile_file).subscribers[0].send_at == time(7, 0)
    later = ScheduleDefaults(send_at=time(9, 30))
    assert load(profile_file, later).subscribers[0].send_at == time(9, 30)


def test_a_broken_cache_is_ignored(profile_file: Path) -> None:
    load(profile_file)
    (profile_file.parent / "state" / CACHE_FILE).write_bytes(b"\x80\x05 not a pickle")
    assert [s.email for s in load(profile_file).subscribers] == ["ada@example.org"]


def test_a_mistake_is_reported_every_time(profile_file: Path) -> None:
    profile_file.write_text(PROFILES.replace("keywords: [pruning]", "keywords: pruning"))
    for _ in range(2):
        with pytest.raises(ProfileError, match=r"subscribers\.yaml:3"):
            load(profile_file)
    assert not (profile_file.parent / "state" / CACHE_FILE).exists()
