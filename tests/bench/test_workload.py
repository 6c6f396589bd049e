"""The benchmarks' generated project is read the way users' files are: the figures in
BENCHMARKS.md measure the real reader, profile loader and pipeline, not a shortcut."""

from __future__ import annotations

import sys
from pathlib import Path

from newsletter.config.load import load_config
from newsletter.matching.matcher import lookback_start
from newsletter.profiles.cache import profiles_of
from newsletter.send.produce import RenderOrder, produce
from newsletter.send.wiring import make_renderer
from newsletter.sources.read import discover_digests
from newsletter.store.ingest import ingest
from newsletter.store.sqlite import open_store
from tests.helpers import NOW, ROOT

sys.path.insert(0, str(ROOT / "bench"))

from workload import write_project


def test_generated_project_reads_cleanly_and_everyone_gets_a_digest(tmp_path: Path) -> None:
    config = load_config(write_project(tmp_path / "project", subscribers=60, papers=40))
    profiles = profiles_of(config)
    assert len(profiles.subscribers) == 60
    assert all(len(s.keywords) == 20 for s in profiles.subscribers)
    assert any(s.exclude for s in profiles.subscribers)
    with open_store(tmp_path / "state") as store:
        report = ingest(store, discover_digests(config.digests), now=NOW)
        (only,) = report.files
        assert (only.status, only.cards, only.new_papers, only.warnings) == ("ingested", 40, 40, ())
        papers = store.papers(since=lookback_start(config, NOW))
    renderer = make_renderer(config, {})
    order = RenderOrder(profiles.subscribers, papers, config.matching, renderer, NOW, {})
    produced = list(produce(order))
    assert len(produced) == 60
    emails = [p.email for p in produced if p.email]
    # Dense on purpose (every subscriber fills several slots), like the 100k benchmark.
    assert len(emails) >= 55 and sum(len(e.paper_ids) for e in emails) / len(emails) >= 5
