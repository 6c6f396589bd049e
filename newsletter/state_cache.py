"""Results kept in the private state folder between runs, each under the key of what it was
made from (the profile file's checked entries, the templates with their CSS inlined): a
cache file holds one pickled (key, value); anything unreadable about it is ignored, and a
new value replaces it in one step."""

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
            stored_key, value = pickle.load(handle)
    except Exception:  # missing, truncated, from another version: made again instead
        return None
    return value if stored_key == key else None


def write_cached(cache: Path, key: str, value: object) -> None:
    """Replace the cache in one step (a reader sees the old one or the new one)."""
    handle, temporary = tempfile.mkstemp(dir=cache.parent, prefix=f".{cache.stem}.")
    try:
        with os.fdopen(handle, "wb") as out:
            pickle.dump((key, value), out, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, cache)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
