"""The command line: ingest and papers on our samples, exit codes, config errors."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from newsletter.store.sqlite import open_store
from tests.conftest import RunCli
from tests.digest_text import capture, card
from tests.helpers import NOW, ROOT, child_env, command, invoke

REQUIRED_FIELDS = {
    "id": str,
    "title": str,
    "abstract": str,
    "authors_count": (int, type(None)),
    "organization": (str, type(None)),
    "published": (str, type(None)),
    "comments": int,
    "upvotes": (int, type(None)),
    "listing_date": str,
    "source": str,
    "first_seen": str,
}


def papers_json(run_cli: RunCli) -> list[dict]:
    result = run_cli("papers", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_ingest_samples_then_list_them(samples_project: Path, run_cli: RunCli) -> None:
    result = run_cli("ingest")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].endswith(
        "mar-10-daily.txt: 6 cards, 6 new papers, 0 warnings (listing of 2026-03-10)"
    )
    assert "mar-11-search-zero-shot.txt: 4 cards, 3 new papers, 0 warnings" in lines[1]
    assert "mar-12-compact.txt: 4 cards, 3 new papers, 0 warnings" in lines[2]
    assert lines[-1] == "3 files: 3 ingested, 0 already ingested, 0 rejected; 12 new papers"
    papers = papers_json(run_cli)
    assert len(papers) == 12
    for paper in papers:
        for field, kind in REQUIRED_FIELDS.items():
            assert isinstance(paper[field], kind), (field, paper[field])
        datetime.fromisoformat(paper["first_seen"])


def test_sample_variants_land_in_the_right_fields(samples_project: Path, run_cli: RunCli) -> None:
    run_cli("ingest")
    by_title = {p["title"]: p for p in papers_json(run_cli)}
    teacher = by_title["Teacher, Interrupted: Knowledge Distillation with Partial Teacher Access"]
    assert (teacher["comments"], teacher["upvotes"]) == (7, 42)  # the later listing's counters
    assert teacher["source"] == "mar-10-daily.txt"
    assert teacher["authors_count"] == 1
    assert teacher["published"] == "2024-12-02"
    thermal = by_title['Zero-Shot Segmentation of "Anything" in Thermal Images']
    assert (thermal["upvotes"], thermal["comments"], thermal["authors_count"]) == (19, 3, 6)
    assert by_title["Self-Distillation for Zero-Shot Speech Translation"]["upvotes"] == 0
    medical = by_title["Pruned U-Nets for Medical Image Segmentation on the Edge"]
    assert medical["organization"] == "UniLeiden Universiteit Leiden"
    assert medical["authors_count"] is None
    cut = by_title["Cut Short: Learning from Truncated Abstracts"]
    assert (cut["published"], cut["authors_count"], cut["organization"]) == (None, None, None)
    assert cut["abstract"].startswith("Listings of papers are often captured incompletely")
    assert "Über-Sparse Mixture-of-Experts: 1,024 Experts, 2 Active — Scaling Laws for Routing" in (
        by_title
    )


def test_ingesting_again_changes_nothing(samples_project: Path, run_cli: RunCli) -> None:
    run_cli("ingest")
    before = run_cli("papers", "--json").stdout
    later = datetime(2026, 11, 22, tzinfo=UTC)
    again = run_cli("ingest", now=later)
    assert again.exit_code == 0
    assert again.stdout.count("skipped (already ingested)") == 3
    explicit = run_cli("ingest", *map(str, sorted((samples_project / "digests").iterdir())))
    assert explicit.stdout.count("skipped (already ingested)") == 3
    assert run_cli("papers", "--json").stdout == before


def test_a_rejected_file_exits_1_and_the_others_are_ingested(
    project: Path, run_cli: RunCli
) -> None:
    (project / "digests" / "a.txt").write_text(capture(card("Good Paper")))
    (project / "digests" / "b.txt").write_bytes(b"")
    (project / "digests" / "c.txt").write_text("just some notes\nnothing to see\n")
    result = run_cli("ingest")
    assert result.exit_code == 1
    assert "b.txt: rejected: the file is empty" in result.stdout
    assert "c.txt: rejected: this does not look like" in result.stdout
    assert [p["title"] for p in papers_json(run_cli)] == ["Good Paper"]
    assert "Traceback" not in result.output


def test_warnings_name_file_and_line_on_stderr(project: Path, run_cli: RunCli) -> None:
    text = capture(card("Fine", date="Feb 30, 2024"))
    (project / "digests" / "w.txt").write_text(text)
    result = run_cli("ingest")
    assert result.exit_code == 0
    line = text.split("\n").index("Feb 30, 2024") + 1
    assert f"w.txt:{line}: warning: cannot read the date 'Feb 30, 2024'" in result.stderr
    assert "1 card, 1 new paper, 1 warning" in result.stdout


def test_listing_date_option(project: Path, run_cli: RunCli) -> None:
    (project / "digests" / "a.txt").write_text(capture(card("P", date="Aug 20")))
    assert run_cli("ingest", "--listing-date", "2024-12-17").exit_code == 0
    (paper,) = papers_json(run_cli)
    assert (paper["listing_date"], paper["published"]) == ("2024-12-17", "2024-08-20")
    bad = run_cli("ingest", "--listing-date", "17/12/2024")
    assert bad.exit_code == 2


def test_listing_date_defaults_to_latest_on_or_before_now(project: Path, run_cli: RunCli) -> None:
    (project / "digests" / "a.txt").write_text(capture(card("P"), listing="Dec 17"))
    run_cli("ingest", now=datetime(2026, 12, 16, tzinfo=UTC))
    assert papers_json(run_cli)[0]["listing_date"] == "2025-12-17"


def test_config_errors_exit_2_with_file_and_line(project: Path, run_cli: RunCli) -> None:
    config = project / "config.yaml"
    config.write_text("state_dir: state\n# comment\ndigest: digests\n")
    result = run_cli("ingest")
    assert result.exit_code == 2
    assert "config.yaml:3: unknown key 'digest' (did you mean 'digests'?)" in result.stderr
    config.write_text("digests: [a, b]\nstate_dir: state\n")
    assert "config.yaml:1: 'digests' must be a path" in run_cli("papers").stderr
    config.write_text("digests: digests\n  state_dir: : x\n")
    broken = run_cli("papers")
    assert broken.exit_code == 2
    assert "config.yaml:2: invalid YAML" in broken.stderr
    missing = run_cli("papers", config=project / "nope.yaml")
    assert missing.exit_code == 2
    assert "nope.yaml: no such file" in missing.stderr
    config.write_text("digests: nowhere\n")
    assert run_cli("ingest").exit_code == 2


def test_config_from_environment_variable(project: Path) -> None:
    (project / "digests" / "a.txt").write_text(capture(card("From Env")))
    result = invoke(None, "ingest", environ={"NEWSLETTER_CONFIG": str(project / "config.yaml")})
    assert result.exit_code == 0, result.output
    assert "1 new paper" in result.stdout


def test_store_errors_are_messages_not_tracebacks_unless_debug(project: Path) -> None:
    (project / "state").write_text("a file where the state folder should be")
    result = invoke(project / "config.yaml", "papers")
    assert result.exit_code == 1
    assert result.stderr.startswith("newsletter: error: cannot use the state folder")
    assert "a file is in the way" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    debug = invoke(project / "config.yaml", "--debug", "papers")
    assert debug.exception is not None and not isinstance(debug.exception, SystemExit)


def test_module_and_console_script_entry_points(tmp_path: Path) -> None:
    module = subprocess.run(
        [*command(None), "--version"], capture_output=True, text=True, env=child_env()
    )
    assert module.returncode == 0
    assert module.stdout.startswith("newsletter, version")
    script = Path(sys.executable).with_name("newsletter")
    if script.exists():
        run = subprocess.run([str(script), "--help"], capture_output=True, text=True)
        assert "ingest" in run.stdout
    usage = subprocess.run(
        [*command(None), "no-such-command"], capture_output=True, text=True, env=child_env()
    )
    assert usage.returncode == 2


def test_shipped_config_and_samples_work_together(tmp_path: Path) -> None:
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    shutil.copytree(ROOT / "digests", tmp_path / "digests")
    result = invoke(tmp_path / "config.yaml", "ingest")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1].endswith("rejected; 12 new papers")
    listing = invoke(tmp_path / "config.yaml", "papers")
    assert listing.stdout.splitlines()[-1] == "12 papers"
    assert (tmp_path / "state" / "newsletter.sqlite3").exists()


def test_readme_main_job_sends_into_the_maildir_outbox(tmp_path: Path) -> None:
    import mailbox

    for name in ("config.yaml", "subscribers.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "digests", tmp_path / "digests")
    readme = (ROOT / "README.md").read_text()
    (main_job,) = re.findall(r"^python3 -m venv .* && \.venv/bin/newsletter (.*)$", readme, re.M)
    result = invoke(tmp_path / "config.yaml", *main_job.split())
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1].startswith("2 sent to ")
    box = mailbox.Maildir(tmp_path / "outbox", create=False)
    assert sorted(message["To"] for message in box) == [
        "Ada <ada@example.org>",
        "Grace <grace@example.org>",
    ]
    again = invoke(tmp_path / "config.yaml", *main_job.split())
    assert again.exit_code == 0 and len(mailbox.Maildir(tmp_path / "outbox")) == 2


def test_the_ingest_summary_counts_in_words(project: Path, run_cli: RunCli) -> None:
    (project / "digests" / "a.txt").write_text(capture(card("Only one")))
    result = run_cli("ingest")
    assert result.stdout.splitlines()[-1] == (
        "1 file: 1 ingested, 0 already ingested, 0 rejected; 1 new paper"
    )


def test_papers_never_prints_escape_sequences_a_store_holds(shop: Path) -> None:
    from datetime import date

    from newsletter.models import Card
    from newsletter.store.papers import DigestRecord

    hostile = Card(
        title="\x1b]0;pwned\x07Pruning \x1b[31mred\x1b[0m",
        abstract="An abstract.",
        line=1,
        organization="Org\x9b2J",
    )
    with open_store(shop / "state") as store:  # as an older version could have stored it
        record = DigestRecord("f" * 64, "old.txt", "hf-listing", date(2026, 3, 12), 1, 0)
        store.add_digest(record, [hostile], NOW)
    result = invoke(shop / "config.yaml", "papers")
    assert result.exit_code == 0, result.output
    assert not any(ch in result.stdout for ch in "\x1b\x07\x9b")
    assert "Pruning  [31mred" in result.stdout


@pytest.mark.parametrize(
    "args", [("send",), ("preview", "--subscriber", "ada@example.org"), ("papers",),
             ("schedule",), ("ingest",), ("validate",)],
)  # fmt: skip
def test_a_missing_digests_folder_is_a_config_error_for_every_command(shop: Path, args) -> None:
    shutil.rmtree(shop / "digests")
    result = invoke(shop / "config.yaml", *args)
    assert result.exit_code in ((1,) if args == ("validate",) else (2,)), result.output
    assert "the digests folder" in result.output and "does not exist" in result.output
