"""Preference edits in a long subscribers.yaml: one entry parsed and rewritten, against the
round trip of the whole file, side by side in one run.

Run:  python bench/profile_edit.py [--sizes 1000 10000 100000] [--whole-up-to 10000]

For each size a profile file like bench/workload.py's is written, and the middle
subscriber's preferences are saved (a keyword added, max_papers changed) as the web page
does. Columns:
  read       read_profile: what every preferences page costs
  edit       edit_profile: the one-entry path (find, round-trip one entry, check it with
             the file's head, fsync, rename)
  whole      the same edit through the round trip of the whole file (ruamel.yaml) checked
             by loading the whole file: what every edit cost before (only up to
             --whole-up-to entries; it grows to minutes)
  load       load_profiles of the whole file: what a send pays to read it (the floor a
             whole-file edit cannot beat)
  reload     what the next send pays to read the file after the edit, an earlier send
             having read it before (only the edited entry is read again: the entries'
             cache, profile_cache.py)
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workload import profiles

from newsletter.config.load import load_config
from newsletter.profiles import edit as profile_edit
from newsletter.profiles.cache import profiles_of
from newsletter.profiles.edit import PreferenceChange, edit_profile, read_profile
from newsletter.profiles.load import load_profiles

CHANGE = PreferenceChange(max_papers=7, add_keywords=("sparse attention",))


def timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def whole_file_edit(config, email: str) -> None:
    """The edit through the whole file's round trip (the general path, forced)."""
    text = config.subscribers.read_text(encoding="utf-8")
    target = profile_edit._WholeFile(config, text)
    current = target.subscriber(email)
    new_text = target.edited(current, CHANGE)
    target.checked(new_text, email)
    profile_edit._write(config.subscribers, new_text)


def measure(size: int, whole_up_to: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "config.yaml").write_text("digests: digests\nstate_dir: state\n")
        (root / "digests").mkdir()
        (root / "state").mkdir(mode=0o700)  # as a first send leaves it
        text = profiles(size, 0)
        (root / "subscribers.yaml").write_text(text)
        config = load_config(root / "config.yaml")
        email = re.findall(r"email: (\S+)", text)[size // 2]
        row = {"size": size, "mb": len(text) / 1e6}
        row["read"] = timed(lambda: read_profile(config, email))
        profiles_of(config)  # an earlier send's read, which leaves the caches
        row["edit"] = timed(lambda: edit_profile(config, email, CHANGE))
        row["reload"] = timed(lambda: profiles_of(config))
        assert profiles_of(config).find(email).max_papers == 7  # the edit took
        row["load"] = timed(lambda: load_profiles(config.subscribers, config.schedule))
        (root / "subscribers.yaml").write_text(text)
        whole = size <= whole_up_to
        row["whole"] = timed(lambda: whole_file_edit(config, email)) if whole else None
        return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--whole-up-to", type=int, default=10_000)
    args = parser.parse_args()
    print("| entries | file | read | edit (one entry) | edit (whole file) | whole/one |", end="")
    print(" load (send) | reload after the edit | load/reload |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        r = measure(size, args.whole_up_to)
        whole = f"{r['whole']:.2f} s" if r["whole"] is not None else "—"
        ratio = f"{r['whole'] / r['edit']:,.0f}x" if r["whole"] is not None else "—"
        print(
            f"| {size:,} | {r['mb']:.1f} MB | {r['read'] * 1000:.0f} ms | "
            f"{r['edit'] * 1000:.0f} ms | {whole} | {ratio} | {r['load']:.2f} s | "
            f"{r['reload']:.2f} s | {r['load'] / r['reload']:.1f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
