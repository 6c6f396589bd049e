"""The real captures in ../shared/digests (skipped when that folder is absent)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import RunCli

EXPECTED_CARDS = {
    "000_8050e23718b5cfd2.txt": 9,
    "001_1ab3a17921d98d9d.txt": 30,
    "003_945a95d899ea3cf8.txt": 28,
}


def test_real_captures_ingest_completely(
    shared_digests: Path, project: Path, run_cli: RunCli
) -> None:
    for name in EXPECTED_CARDS:
        shutil.copy(shared_digests / name, project / "digests" / name)
    result = run_cli("ingest")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""  # no warnings on real captures
    for name, cards in EXPECTED_CARDS.items():
        assert f"{name}: {cards} cards," in result.stdout
    papers = json.loads(run_cli("papers", "--json").stdout)
    assert len(papers) == 66
    by_title = {p["title"]: p for p in papers}
    tiny = by_title["TinyFusion: Diffusion Transformers Learned Shallow"]
    assert (tiny["published"], tiny["comments"], tiny["authors_count"]) == ("2024-12-02", 2, 4)
    assert tiny["listing_date"] == "2025-12-17"
    twice = by_title["Make Deep Networks Shallow Again"]
    assert twice["source"] == "001_1ab3a17921d98d9d.txt"
    robust = by_title[
        "A Robust Deep Networks based Multi-Object MultiCamera Tracking System for City Scale "
        "Traffic"
    ]
    assert (robust["published"], robust["comments"]) == ("2025-05-01", 1)
    assert all(len(p["abstract"]) > 1000 for p in papers)


def test_real_captures_are_stable_across_runs(
    shared_digests: Path, project: Path, run_cli: RunCli
) -> None:
    for name in EXPECTED_CARDS:
        shutil.copy(shared_digests / name, project / "digests" / name)
    run_cli("ingest")
    first = run_cli("papers", "--json").stdout
    again = run_cli("ingest", *(str(shared_digests / name) for name in EXPECTED_CARDS))
    assert again.stdout.count("skipped (already ingested)") == 3
    assert run_cli("papers", "--json").stdout == first
