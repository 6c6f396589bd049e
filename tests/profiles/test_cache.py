"""The profile cache: used only for the very same file, defaults and code."""

from __future__ import annotations

import ast
import os
from dataclasses import replace
from datetime import time
from pathlib import Path

import pytest

from newsletter.config.settings import MatchSettings, ScheduleDefaults
from newsletter.errors import ProfileError
from newsletter.files.state_cache import read_stored, write_cached
from newsletter.profiles.cache import (
    _READERS,
    CACHE_FILE,
    _Stored,
    load_profiles_cached,
    module_file,
)
from newsletter.profiles.load import Profiles

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
    key, _ = read_stored(cache)
    write_cached(cache, key, _Stored.of(profiles, None))


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


def entries(count: int) -> str:
    return "subscribers:\n" + "".join(
        f"  - email: reader{n}@example.org\n    keywords: [topic{n}]\n" for n in range(count)
    )


def load_counting(path: Path, read: list[str]) -> Profiles:
    """``load``, noting the text of each piece of the file read and checked."""

    def spread(work, jobs):
        jobs = list(jobs)
        read.extend(piece.text for _, _, piece in jobs)
        return map(work, jobs)

    state = path.parent / "state"
    return load_profiles_cached(path, ScheduleDefaults(), MatchSettings(), state, spread)


def test_after_an_edit_only_the_changed_entries_are_read_again(profile_file: Path) -> None:
    """A preferences edit changes one entry: the others come from the entries' cache, on
    their new lines, and the whole reads as the file read afresh."""
    from newsletter.profiles.load import load_profiles

    profile_file.write_text(entries(30))
    read: list[str] = []
    load_counting(profile_file, read)
    assert read == [entries(30).removeprefix("subscribers:\n")]
    edited = entries(30).replace("[topic7]", "[topic7, pruning]")
    edited = edited.replace("subscribers:\n", "subscribers:\n  # our readers\n\n")  # 2 lines
    profile_file.write_text(edited)
    read.clear()
    again = load_counting(profile_file, read)
    assert read == ["  - email: reader7@example.org\n    keywords: [topic7, pruning]"]
    afresh = load_profiles(profile_file, ScheduleDefaults(), MatchSettings())
    assert again == afresh
    assert load_counting(profile_file, read) == afresh  # (from the cache the edit left)
    assert len(read) == 1
    assert [s.line for s in again.subscribers][:2] == [4, 6]


def test_entries_come_from_their_cache(profile_file: Path) -> None:
    """What the caches hold for an entry's text is what that entry reads as: its place
    among the subscribers cached last time (the entries' cache), and the subscriber there
    (the profiles' cache)."""
    from newsletter.profiles.cache import ENTRIES_FILE

    profile_file.write_text(entries(3))
    load(profile_file)
    state = profile_file.parent / "state"
    profiles_key, places = read_stored(state / ENTRIES_FILE)[1]
    key, stored = read_stored(state / CACHE_FILE)
    assert key == profiles_key
    subscribers = list(stored.profiles().subscribers)
    _, place = places["  - email: reader1@example.org\n    keywords: [topic1]"]
    subscribers[place] = replace(subscribers[place], max_papers=3)
    write_cached(
        state / CACHE_FILE, key, _Stored.of(Profiles(profile_file, tuple(subscribers)), None)
    )
    profile_file.write_text(entries(3) + "  - email: new@example.org\n    keywords: [x]\n")
    assert [s.max_papers for s in load(profile_file).subscribers] == [10, 3, 10, 10]


def test_the_profiles_cache_keeps_the_pieces_the_workers_pickled(profile_file: Path) -> None:
    """A first read keeps each piece's subscribers as they were pickled where they were
    checked (one pickle a piece), not pickled once more; they read back the same."""
    from newsletter.profiles.load import SPREAD_CHUNK, load_profiles

    profile_file.write_text(entries(2 * SPREAD_CHUNK + 7))
    loaded = load(profile_file)
    stored = read_stored(profile_file.parent / "state" / CACHE_FILE)[1]
    assert isinstance(stored, _Stored)
    assert len(stored.pieces) == 3
    assert stored.profiles() == loaded == load_profiles(profile_file)
    assert load(profile_file) == loaded


def test_caches_of_an_older_layout_are_read_past(profile_file: Path) -> None:
    from newsletter.profiles.cache import ENTRIES_FILE

    profile_file.write_text(entries(4))
    loaded = load(profile_file)
    state = profile_file.parent / "state"
    key, _ = read_stored(state / CACHE_FILE)
    salt, _ = read_stored(state / ENTRIES_FILE)
    write_cached(state / CACHE_FILE, key, loaded)  # (a Profiles, as older versions kept)
    write_cached(state / ENTRIES_FILE, salt, {"  - email: x": (1, loaded.subscribers[0])})
    assert load(profile_file) == loaded
    profile_file.write_text(entries(5))
    assert len(load(profile_file).subscribers) == 5


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (("keywords: [topic4]", "keywords: topic4"), r"subscribers\.yaml:11: 'keywords' must"),
        (("reader4@", "reader2@"), r"subscribers\.yaml:10: 'reader2@example.org' is already"),
    ],
    ids=["a-mistake", "an-address-twice"],
)
def test_a_mistake_made_in_an_edit_is_reported_with_its_line(
    profile_file: Path, change: tuple[str, str], problem: str
) -> None:
    profile_file.write_text(entries(6))
    load(profile_file)
    profile_file.write_text(entries(6).replace(*change))
    with pytest.raises(ProfileError, match=problem):
        load(profile_file)
    profile_file.write_text(entries(6))
    assert len(load(profile_file).subscribers) == 6


def _our_imports(module: str) -> set[str]:
    """The modules of ours that ``module`` imports anywhere in its code."""
    tree = ast.parse(module_file(module).read_text())
    names = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    names += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    return {name for name in names if name.startswith("newsletter.")}


def test_the_cache_key_covers_every_module_that_reads_profiles():
    # A change to any of them may change what a file loads into, so the cache must go.
    seen, todo = set(), ["newsletter.profiles.load"]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(_our_imports(module))
    assert seen == set(_READERS)
