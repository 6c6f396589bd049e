"""Hand edits are never lost to web edits: 20 preference saves race 20 saves of the file by
hand (editors that replace the file, and editors that write it in place), and every one of
both is in the file at the end, which ``validate`` finds clean."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from newsletter.config.load import load_config
from newsletter.profiles.cache import profiles_of
from newsletter.profiles.edit import PreferenceChange, edit_profile
from tests.helpers import invoke

READERS = 20


def hand_save(path: Path, number: int) -> None:
    """What an editor does: read the file, add an entry, save it (even numbers replace the
    file through a temporary one, as vim and most editors do; odd ones write in place)."""
    text = path.read_text()
    text += f"  - email: hand{number}@example.org   # added by hand\n    keywords: [pruning]\n"
    if number % 2 == 0:
        temporary = path.with_name(f".{path.name}.hand{number}")
        temporary.write_text(text)
        os.replace(temporary, path)
    else:
        with open(path, "w") as handle:
            handle.write(text)


@pytest.mark.slow  # (a few seconds of threads)
def test_twenty_web_edits_racing_twenty_hand_edits_lose_nothing(project: Path) -> None:
    path = project / "subscribers.yaml"
    path.write_text(
        "# The operator's file.\nsubscribers:\n"
        + "".join(
            f"  - email: web{i}@example.org\n    keywords: [pruning]\n" for i in range(READERS)
        )
    )
    config = load_config(project / "config.yaml")
    start = threading.Barrier(READERS + 1)
    errors: list[BaseException] = []

    def web(number: int) -> None:
        start.wait()
        try:
            change = PreferenceChange(max_papers=11 + number, add_keywords=(f"topic{number}",))
            edit_profile(config, f"web{number}@example.org", change)
        except BaseException as exc:  # (reported below)
            errors.append(exc)

    def hand() -> None:
        start.wait()
        for number in range(READERS):
            hand_save(path, number)
            time.sleep(0.01)

    threads = [threading.Thread(target=web, args=(i,)) for i in range(READERS)]
    threads.append(threading.Thread(target=hand))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    profiles = profiles_of(load_config(project / "config.yaml"))
    by_address = {s.email: s for s in profiles.subscribers}
    lost_hand = [i for i in range(READERS) if f"hand{i}@example.org" not in by_address]
    lost_web = [
        i for i in range(READERS)
        if by_address[f"web{i}@example.org"].max_papers != 11 + i
        or f"topic{i}" not in [k.text for k in by_address[f"web{i}@example.org"].keywords]
    ]  # fmt: skip
    assert (lost_hand, lost_web) == ([], [])
    assert path.read_text().startswith("# The operator's file.\n")
    assert invoke(project / "config.yaml", "validate").exit_code == 0
