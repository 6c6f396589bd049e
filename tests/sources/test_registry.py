"""A source kind is one module plus a registry line: one defined here (a made-up service
answering a tab-separated list) is fetched from a real HTTP server on loopback, written into
the digests folder and ingested with nothing else changed."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date
from pathlib import Path

import pytest

from newsletter.errors import DigestError
from newsletter.models import Card, Digest
from newsletter.sources.kinds import Reader, SourceKind
from newsletter.sources.read import read_digest_bytes
from newsletter.sources.registry import SOURCE_KINDS
from newsletter.world import World
from tests.helpers import NOW, invoke, open_project_store
from tests.http_server import Reply, SourceServer

MAGIC = b"#papers-tsv\n"


def _read(data: bytes, today: date, listing_date: date | None, keep: Iterable[str]) -> Digest:
    lines = data.decode().splitlines()[1:]
    if not lines:
        raise DigestError("no papers in the list")
    cards = []
    for number, line in enumerate(lines, 2):
        arxiv_id, title, abstract = line.split("\t")
        cards.append(Card(title, abstract, number, arxiv_id=arxiv_id))
    return Digest("papers-tsv", listing_date or today, tuple(cards), ())


TSV = Reader("papers-tsv", lambda data: data.startswith(MAGIC), _read)


class PapersTsv(SourceKind):
    """``<url>/<YYYY-MM-DD>.tsv``: a day's papers, one a line (id, title, abstract)."""

    name = "papers_tsv"
    default_url = "https://papers.example.org/daily"
    reader = TSV
    extension = "tsv"

    def request_url(self, source, day: date) -> str:  # type: ignore[no-untyped-def]
        return f"{self.base_url(source)}/{day.isoformat()}.tsv"


@pytest.fixture
def papers_tsv() -> Iterator[None]:
    """The kind, registered for the test's length (the registry line)."""
    SOURCE_KINDS["papers_tsv"] = PapersTsv()
    try:
        yield
    finally:
        del SOURCE_KINDS["papers_tsv"]


ABSTRACT = "We study structured pruning of large language models at scale, in depth. " * 2
DAY = MAGIC + f"2603.20001\tPruning by the tab\t{ABSTRACT}\n".encode()


def test_a_source_kind_defined_in_a_test_is_fetched_and_read(
    tmp_path: Path, papers_tsv: None
) -> None:
    (tmp_path / "digests").mkdir()
    routes = {"/daily/2026-03-12.tsv": [Reply(200, DAY)]}
    with SourceServer(routes) as server:
        (tmp_path / "config.yaml").write_text(
            "sender: Research digest <digest@example.org>\n"
            f"sources:\n  - {{name: tabs, type: papers_tsv, url: '{server.url}/daily'}}\n"
        )
        world = World(now=lambda: NOW, environ={}, sleep=lambda seconds: None)
        result = invoke(tmp_path / "config.yaml", "fetch", world=world)
    assert result.exit_code == 0, result.output
    written = tmp_path / "digests" / "tabs-2026-03-12.tsv"
    assert written.read_bytes() == DAY
    assert server.asked("/daily/2026-03-12.tsv") == 1
    with open_project_store(tmp_path) as store:
        titles = [paper.title for paper in store.papers()]
    assert titles == ["Pruning by the tab"]


def test_a_registered_kinds_reader_joins_the_ingest_path(papers_tsv: None) -> None:
    digest = read_digest_bytes(DAY, today=NOW.date())
    assert digest.format == "papers-tsv"
    assert [card.title for card in digest.cards] == ["Pruning by the tab"]


def test_an_unregistered_type_is_refused_with_the_registered_names(tmp_path: Path) -> None:
    (tmp_path / "digests").mkdir()
    (tmp_path / "config.yaml").write_text(
        "sources:\n  - {name: tabs, type: papers_tsv, url: 'https://papers.example.org'}\n"
    )
    result = invoke(tmp_path / "config.yaml", "fetch")
    assert result.exit_code == 2
    assert "'type' cannot be 'papers_tsv' (one of: hf_daily, arxiv_rss, arxiv_query)" in (
        result.output
    )
