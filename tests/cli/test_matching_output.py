"""validate and preview on the command line."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

from tests.conftest import RunCli
from tests.helpers import NOW, ROOT
from tests.profile_samples import EXPECTED, TEN_MISTAKES


def use_shipped_profiles(project: Path) -> None:
    shutil.copy(ROOT / "subscribers.yaml", project / "subscribers.yaml")


def test_validate_clean_files(samples_project: Path, run_cli: RunCli) -> None:
    use_shipped_profiles(samples_project)
    result = run_cli("validate")
    assert result.exit_code == 0, result.output
    assert "config.yaml: ok" in result.stdout
    assert "subscribers.yaml: ok, 2 subscribers (2 receiving)" in result.stdout


def test_validate_lists_every_problem_and_exits_1(project: Path, run_cli: RunCli) -> None:
    (project / "subscribers.yaml").write_text(TEN_MISTAKES)
    result = run_cli("validate")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert [int(line.split(":")[1]) for line in lines[:-1]] == [line for line, _ in EXPECTED]
    assert lines[-1] == f"{len(EXPECTED)} problems found"


def test_validate_reports_config_problems_too(project: Path, run_cli: RunCli) -> None:
    (project / "config.yaml").write_text("title_weight: -1\nlookback: 3\n")
    result = run_cli("validate")
    assert result.exit_code == 1
    assert "config.yaml:1: 'title_weight' must be from 0 to 1000, not -1" in result.stderr
    assert "config.yaml:2: unknown key 'lookback' (did you mean 'lookback_days'?)" in result.stderr


def test_preview_json(samples_project: Path, run_cli: RunCli) -> None:
    use_shipped_profiles(samples_project)
    assert run_cli("ingest").exit_code == 0
    result = run_cli("preview", "--subscriber", "ada@example.org", "--json", now=NOW)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["subscriber"] == "ada@example.org"
    titles = [p["title"] for p in data["papers"]]
    assert titles[0] == "Teacher, Interrupted: Knowledge Distillation with Partial Teacher Access"
    assert "Pruned U-Nets for Medical Image Segmentation on the Edge" not in titles  # excluded
    first = data["papers"][0]
    assert first["score"] == 3 + 1 + 1
    assert first["matched"] == {
        "authors": [],
        "title": ["knowledge distillation"],
        "abstract": ["knowledge distillation", "compress*"],
    }
    assert [p["score"] for p in data["papers"]] == sorted(
        (p["score"] for p in data["papers"]), reverse=True
    )


def test_preview_records_nothing(samples_project: Path, run_cli: RunCli) -> None:
    use_shipped_profiles(samples_project)
    run_cli("ingest")
    first = run_cli("preview", "--subscriber", "ada@example.org", "--json").stdout
    assert run_cli("preview", "--subscriber", "ada@example.org", "--json").stdout == first


def test_preview_prints_the_text_email(samples_project: Path, run_cli: RunCli) -> None:
    use_shipped_profiles(samples_project)
    run_cli("ingest")
    result = run_cli("preview", "--subscriber", "ADA@example.org")
    assert result.exit_code == 0
    assert result.stdout.startswith("Hi Ada,\n")
    assert "   Matched: knowledge distillation (title) · compressing (abstract)" in result.stdout
    assert "Unsubscribe: mailto:" in result.stdout


def test_papers_older_than_lookback_are_not_previewed(
    samples_project: Path, run_cli: RunCli
) -> None:
    use_shipped_profiles(samples_project)
    run_cli("ingest", now=NOW - timedelta(days=8))
    data = json.loads(run_cli("preview", "--subscriber", "ada@example.org", "--json").stdout)
    assert data["papers"] == []


def test_preview_unknown_subscriber_and_invalid_profiles_exit_2(
    project: Path, run_cli: RunCli
) -> None:
    use_shipped_profiles(project)
    unknown = run_cli("preview", "--subscriber", "gracee@example.org")
    assert unknown.exit_code == 2
    assert "did you mean 'grace@example.org'?" in unknown.stderr
    (project / "subscribers.yaml").write_text(TEN_MISTAKES)
    invalid = run_cli("preview", "--subscriber", "ada@example.org")
    assert invalid.exit_code == 2
    assert "subscribers.yaml:5: unknown time zone 'Europe/Berln'" in invalid.stderr
