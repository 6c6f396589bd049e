"""The loaded profile file, kept in the state folder between runs.

Reading and checking ``subscribers.yaml`` costs ~120 us of CPU a subscriber (2.4 s at 20,000,
12 s at 100,000), every run, before any matching starts; unpickling what it gave last time
costs under a tenth of that. The cache is used only while the file's bytes, the defaults it was read
with and the code that reads it are all unchanged (a hash of each); anything unreadable about
it is ignored and the file is read again. It lives in the private state folder, like the
store: whoever can write there can change what is sent anyway.

A file that changed (a preferences edit rewrites one entry) is not read whole again: a second
cache holds each entry's line and place among the cached subscribers by the entry's text
(``profiles.load_reusing``), and only the entries it does not hold are read and checked; the
others move to their new lines.

The subscribers are kept as the workers that checked them pickled them, a piece at a time:
pickling them again for the cache cost the parent 1.45 s of a first 100,000-subscriber
send, while the rendering workers waited for it (BENCHMARKS.md, issue 16).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import pickle
from dataclasses import dataclass
from pathlib import Path

from newsletter.config.settings import Config, MatchSettings, ScheduleDefaults
from newsletter.files.state_cache import read_cached, write_cached
from newsletter.ledger.lock import profiles_lock
from newsletter.profiles.load import Known, Profiles, Spread, load_profiles, load_reusing

CACHE_FILE = "profiles.cache"
ENTRIES_FILE = "profiles.entries"  # each entry's line and place in CACHE_FILE, by its text
# The modules whose code decides what a profile file loads into: profiles and every module
# of ours it imports, directly or not (tests/test_profile_cache.py holds the list to that).
_READERS = (
    "newsletter.profiles.load",
    "newsletter.subscribers.addresses",
    "newsletter.files.problems",
    "newsletter.config.settings",
    "newsletter.errors",
    "newsletter.models",
    "newsletter.files.pickling",
    "newsletter.schedule.slots",
    "newsletter.matching.keywords",
    "newsletter.matching.trending",
    "newsletter.files.yamlfile",
    "newsletter.profiles.categories",
)
_READERS_DATA = ("profiles/data/arxiv_categories.txt",)  # (what the readers check against)


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
    reread = load_reusing(path, schedule, matching, _known(state_dir, salt), spread)
    if reread is None:  # (not a file to cut into entries)
        profiles, places, pickled = load_profiles(path, schedule, matching, spread), None, None
    else:
        profiles, places, pickled = reread.profiles, reread.places, reread.pickled
    with contextlib.suppress(OSError):
        # Not if the file changed while it was read: the profiles would not be its bytes'.
        if _key(path.read_bytes(), path, schedule, matching) == key:
            write_cached(cache, key, _Stored.of(profiles, pickled))
            if places is not None:
                write_cached(entries_cache, salt, (key, places))
    return profiles


@dataclass(frozen=True)
class _Stored:
    """Profiles as the cache keeps them: the subscribers pickled in pieces, in file order."""

    path: Path
    pieces: tuple[bytes, ...]

    @classmethod
    def of(cls, profiles: Profiles, pickled: tuple[bytes, ...] | None) -> _Stored:
        """``profiles``, kept in the pieces the workers pickled, or pickled here."""
        if pickled is None:
            pickled = (pickle.dumps(profiles.subscribers, protocol=pickle.HIGHEST_PROTOCOL),)
        return cls(profiles.path, pickled)

    def profiles(self) -> Profiles:
        """The profiles again."""
        pieces = (pickle.loads(piece) for piece in self.pieces)
        return Profiles(self.path, tuple(itertools.chain.from_iterable(pieces)))


def _known(state_dir: Path, salt: str) -> Known:
    """Each entry's line and Subscriber as last read, by its text (empty when the entries'
    cache is missing, or does not go with the profiles cached)."""
    stored = read_cached(state_dir / ENTRIES_FILE, salt)
    if not isinstance(stored, tuple) or len(stored) != 2:
        return {}
    profiles_key, places = stored
    cached = _read(state_dir / CACHE_FILE, profiles_key)
    if cached is None or not isinstance(places, dict):
        return {}
    subscribers = cached.subscribers
    try:
        return {text: (line, subscribers[place]) for text, (line, place) in places.items()}
    except (IndexError, TypeError, ValueError):  # (not what this code writes)
        return {}


def _key(data: bytes, path: Path, schedule: ScheduleDefaults, matching: MatchSettings) -> str:
    digest = hashlib.sha256(data)
    digest.update(repr((str(path.resolve()), schedule, matching)).encode())
    digest.update(_readers_code())
    return digest.hexdigest()


@functools.cache
def _readers_code() -> bytes:
    """A hash of the code that reads profile files (read once a process)."""
    files = [module_file(m) for m in _READERS] + [_package_file(p) for p in _READERS_DATA]
    return hashlib.sha256(b"".join(path.read_bytes() for path in files)).digest()


def module_file(module: str) -> Path:
    """The source file of one of our modules, by its dotted name (without importing it)."""
    return _package_file("/".join(module.split(".")[1:])).with_suffix(".py")


def _package_file(relative: str) -> Path:
    root = Path(__file__).parent
    while root.name != "newsletter":
        root = root.parent
    return root / relative


def _read(cache: Path, key: str) -> Profiles | None:
    stored = read_cached(cache, key)
    if not isinstance(stored, _Stored):
        return None
    try:
        return stored.profiles()
    except Exception:  # (a piece that does not unpickle: read the file instead)
        return None


def profiles_of(config: Config, spread: Spread | None = None) -> Profiles:
    """The profile file ``config`` names, loaded with its defaults (never while a
    preferences edit is replacing it); its entries checked on ``spread``, if given, when
    they are not in the cache."""
    if not config.state_dir.is_dir():  # no state yet, so no edit either: create nothing
        return load_profiles(config.subscribers, config.schedule, config.matching, spread)
    with profiles_lock(config.state_dir, exclusive=False):
        return load_profiles_cached(
            config.subscribers, config.schedule, config.matching, config.state_dir, spread
        )
