"""Link keys benchmark: what keeping each recipient's link key costs a send, beside what
signing their digest's links costs anyway, side by side.

Run:  python bench/link_keys.py [--subscribers 20000]

  links        Links.for_digest for each subscriber (a digest of 10 papers: 25 tokens)
  first send   Ledger.record_link_keys on an empty table (every key written)
  later sends  Ledger.record_link_keys with every key kept (read, nothing written)
On the SQLite store of a temporary folder.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from newsletter.config.settings import RenderSettings
from newsletter.ledger.ledger import Ledger
from newsletter.render.links import Links
from newsletter.render.tokens import Signer
from newsletter.store.sqlite import open_store

NOW = datetime(2026, 12, 7, 7, 0, tzinfo=UTC)
SECRET = "k2Jx9-TqLw_0aZr7Vn4bYc8uHs1eDf6gPm3"


def timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=20_000)
    count = parser.parse_args().subscribers
    addresses = [f"reader{n}@example.org" for n in range(count)]
    signer = Signer(SECRET)
    links = Links(RenderSettings(public_url="https://news.example.org"), signer)
    papers = tuple(f"2611.{n:05d}" for n in range(10))

    def sign_all() -> None:
        for address in addresses:
            links.for_digest(address, "k" * 16, papers, NOW.date())

    with tempfile.TemporaryDirectory() as folder, open_store(Path(folder)) as store:
        ledger = Ledger(store)
        signing = timed(sign_all)
        first = timed(lambda: ledger.record_link_keys(signer, addresses, NOW))
        later = timed(lambda: ledger.record_link_keys(signer, addresses, NOW))
    print(f"{count} subscribers")
    print(f"  links        {signing:7.3f} s")
    print(f"  first send   {first:7.3f} s   {first / signing:5.2f} x links")
    print(f"  later sends  {later:7.3f} s   {later / signing:5.2f} x links")


if __name__ == "__main__":
    main()
