"""Results kept in the private state folder between runs, each under the key of what it was
made from (the profile file's checked entries, the templates with their CSS inlined): a
cache file holds the pickled key, then the pickled value (so another key's value is not
unpickled only to be dropped: a third of a second for 20,000 profiles); anything unreadable
about it is ignored, and a new value replaces it in one step."""

from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
from pathlib import Path


def read_cached(cache: Path, key: str) -> object | None:
    """What ``cache`` holds for ``key``; None when it holds nothing, or another key's."""
    try:
        with cache.open("rb") as handle:
            if pickle.load(handle) != key:
                return None
            return pickle.load(handle)
    except Exception:  # missing, truncated, from another version: made again instead
        return None


def read_stored(cache: Path) -> tuple[object, object]:
    """The key and value ``cache`` holds, whatever the key (for tests and inspection)."""
    with cache.open("rb") as handle:
        return pickle.load(handle), pickle.load(handle)


def write_cached(cache: Path, key: str, value: object) -> None:
    """Replace the cache in one step (a reader sees the old one or the new one)."""
    handle, temporary = tempfile.mkstemp(dir=cache.parent, prefix=f".{cache.stem}.")
    try:
        with os.fdopen(handle, "wb") as out:
            pickle.dump(key, out, protocol=pickle.HIGHEST_PROTOCOL)
            pickle.dump(value, out, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, cache)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
