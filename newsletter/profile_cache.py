"""The loaded profile file, kept in the state folder between runs.

Reading and checking ``subscribers.yaml`` costs ~120 us of CPU a subscriber (2.4 s at 20,000,
12 s at 100,000), every run, before any matching starts; unpickling what it gave last time
costs under a tenth of that. The cache is used only while the file's bytes, the defaults it was read
with and the code that reads it are all unchanged (a hash of each); anything unreadable about
it is ignored and the file is read again. It lives in the private state folder, like the
store: whoever can write there can change what is sent anyway.

A file that changed (a preferences edit rewrites one entry) is not read whole again: a second
cache holds each entry's Subscriber by the entry's text (``profiles.load_reusing``), and only
the entries it does not hold are read and checked; the others move to their new lines.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from pathlib import Path

from newsletter.config import MatchSettings, ScheduleDefaults
from newsletter.profiles import Profiles, Spread, load_profiles, load_reusing
from newsletter.state_cache import read_cached, write_cached

CACHE_FILE = "profiles.cache"
ENTRIES_FILE = "profiles.entries"  # each entry's Subscriber, by the entry's text
# The modules whose code decides what a profile file loads into: profiles and every module
# of ours it imports, directly or not (tests/test_profile_cache.py holds the list to that).
_READERS = (
    "profiles",
    "addresses",
    "checks",
    "config",
    "errors",
    "models",
    "pickling",
    "slots",
    "text",
    "yamlfile",
)


def load_profiles_cached(
    path: Path,
    schedule: ScheduleDefaults,
    matching: MatchSettings,
    state_dir: Path,
    spread: Spread | None = None,
) -> Profiles:
    """``load_profiles``, from the cache in ``state_dir`` when it holds this very file."""
    try:
        key = _key(path.read_bytes(), path, schedule, matching)
    except OSError:
        return load_profiles(path, schedule, matching)  # (which says what is wrong)
    cache = state_dir / CACHE_FILE
    cached = _read(cache, key)
    if cached is not None:
        return cached
    # The entries as read last time, by their text: after an edit, only the changed ones
    # are read again (salted with all the key holds but the file's bytes).
    salt, entries_cache = _key(b"", path, schedule, matching), state_dir / ENTRIES_FILE
    known = read_cached(entries_cache, salt)
    reused = load_reusing(
        path, schedule, matching, known if isinstance(known, dict) else {}, spread
    )
    if reused is None:  # (not a file to cut into entries)
        profiles, entries = load_profiles(path, schedule, matching, spread), None
    else:
        profiles, entries = reused
    with contextlib.suppress(OSError):
        # Not if the file changed while it was read: the profiles would not be its bytes'.
        if _key(path.read_bytes(), path, schedule, matching) == key:
            write_cached(cache, key, profiles)
            if entries is not None:
                write_cached(entries_cache, salt, entries)
    return profiles


def _key(data: bytes, path: Path, schedule: ScheduleDefaults, matching: MatchSettings) -> str:
    digest = hashlib.sha256(data)
    digest.update(repr((str(path.resolve()), schedule, matching)).encode())
    digest.update(_readers_code())
    return digest.hexdigest()


@functools.cache
def _readers_code() -> bytes:
    """A hash of the code that reads profile files (read once a process)."""
    here = Path(__file__).parent
    return hashlib.sha256(b"".join((here / f"{m}.py").read_bytes() for m in _READERS)).digest()


def _read(cache: Path, key: str) -> Profiles | None:
    profiles = read_cached(cache, key)
    return profiles if isinstance(profiles, Profiles) else None
