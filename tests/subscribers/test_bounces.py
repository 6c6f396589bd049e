"""Bounces and complaints: the shared real bounces classified as their manifest says, and
``newsletter bounces`` acting on our own made-up ones (VERP, soft limit, complaints)."""

from __future__ import annotations

import json
import logging
import mailbox
import re
import shutil
from pathlib import Path

import pytest

from newsletter.render.tokens import Signer
from newsletter.schedule.daemon import Daemon
from newsletter.subscribers.bounce_reports import classify, parse_message
from newsletter.world import World
from tests.helpers import NOW, SHARED, invoke

HERE = Path(__file__).parent / "bounces"
MANIFEST = SHARED / "samples" / "MANIFEST.md"
SECRET = "k2Jx9-TqLw_0aZr7Vn4bYc8uHs1eDf6gPm3"
ENV = {"NEWSLETTER_UNSUBSCRIBE_SECRET": SECRET}

# Where our decision differs from the manifest on purpose.
DELIBERATE = {
    # "Action: failed" with Status 4.4.7: RFC 3463 makes the status class the judge, and a
    # 4.x.x condition (here a queue that expired) is transient. Counted as a soft bounce,
    # it still suppresses the address once bounce.soft_limit of them come in.
    "flufl_dsn_02.txt": False,
    # Sisimai calls it temporary (its "mailboxfull" reason), but the message itself says
    # "This is a permanent error" and carries no status code: we take the server's word.
    "sisimai_lhost-exim-07.eml": True,
}


def manifest_rows() -> list[tuple[str, list[str], list[bool]]]:
    """(file, bounced addresses, permanent?) of each bounce row of the manifest."""
    if not MANIFEST.exists():
        return []
    rows = []
    for line in MANIFEST.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.split("|")[1:-1]]
        if len(cells) != 6 or not cells[0].endswith((".txt", ".eml")):
            continue
        name, _, expectation, addresses, verdict, _ = cells
        pattern = r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
        # "2 addresses": the source's expectation lists them
        found = re.findall(pattern, addresses) or re.findall(pattern, expectation)
        permanence = [part.strip().startswith("P") for part in verdict.split(",")]
        rows.append((name, found, permanence))
    return rows


ROWS = manifest_rows()


def test_the_manifest_lists_every_shared_bounce() -> None:
    if not ROWS:
        pytest.skip("../shared/samples/MANIFEST.md is not here")
    assert len(ROWS) == len(list((SHARED / "samples" / "bounces").iterdir())) == 48


@pytest.mark.parametrize("name, addresses, permanence", ROWS, ids=[r[0] for r in ROWS])
def test_each_shared_bounce_is_classified_as_the_manifest_says(
    name: str, addresses: list[str], permanence: list[bool]
) -> None:
    report = classify(parse_message((SHARED / "samples" / "bounces" / name).read_bytes()), None)
    if not addresses:  # the negative case: nothing to find, nothing invented
        assert report.failures == () and report.kind == "none"
        return
    assert report.kind == "bounce"
    by_name = {n.casefold(): f for f in report.failures for n in (f.address, *f.also)}
    for address, permanent in zip(addresses, permanence * len(addresses), strict=False):
        failure = by_name.get(address.casefold())
        assert failure is not None, f"{address} not found in {name}: {report.failures}"
        assert failure.permanent == DELIBERATE.get(name, permanent), name
    # Only flufl's sendmail_01 names one more address (a second hop of the same mailbox).
    expected = {a.casefold() for a in addresses}
    extra = [
        f.address
        for f in report.failures
        if not expected & {n.casefold() for n in (f.address, *f.also)}
    ]
    assert not extra or name == "flufl_sendmail_01.txt", extra


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "digests").mkdir()
    (tmp_path / "config.yaml").write_text(
        "digests: digests\nstate_dir: state\nbounce_address: bounces@example.org\n"
        "bounce:\n  soft_limit: 2\n  soft_days: 30\n"
    )
    (tmp_path / "subscribers.yaml").write_text(
        "subscribers:\n  - email: ada@example.org\n    keywords: [pruning]\n"
        "  - email: grace@example.org\n    keywords: [transformer]\n"
    )
    return tmp_path


def bounces(project: Path, *args: str) -> list[dict]:
    result = invoke(project / "config.yaml", "bounces", "--json", *args, environ=ENV)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def statuses(project: Path) -> dict[str, str]:
    result = invoke(project / "config.yaml", "subscribers", "--json", environ=ENV)
    return {row["address"]: row["status"] for row in json.loads(result.output)}


def test_a_bounce_naming_nobody_we_know_is_attributed_by_its_verp_token(project: Path) -> None:
    token = Signer(SECRET).verp("ada@example.org")
    path = project / "verp.eml"
    path.write_text((HERE / "verp-only.eml").read_text().replace("TOKEN", token))
    (decision,) = bounces(project, str(path))
    assert decision["address"] == "ada@example.org"
    assert (decision["kind"], decision["action"]) == ("permanent", "suppressed")
    assert statuses(project)["ada@example.org"] == "bounced"
    # The next send skips her, saying why.
    result = invoke(project / "config.yaml", "send", "--now", "--dry-run", environ=ENV)
    assert "skipped: ada@example.org: bounced on" in result.output


def test_a_forged_verp_token_attributes_nothing(project: Path) -> None:
    path = project / "verp.eml"
    path.write_text((HERE / "verp-only.eml").read_text().replace("TOKEN", "0123456789abcdef0123"))
    (decision,) = bounces(project, str(path))
    assert decision["action"] == "ignored" and statuses(project)["ada@example.org"] == "active"


def report(project: Path, sample: str, number: int, original: str) -> str:
    """A made-up report ``sample`` (its own id ``number``) about our message ``original``."""
    path = project / f"{Path(sample).stem}-{number}.eml"
    text = (HERE / sample).read_text().replace("MSGNUM", str(number))
    path.write_text(text.replace("ORIGINAL", original))
    return str(path)


def test_temporary_failures_suppress_at_the_soft_limit_and_count_once(project: Path) -> None:
    first = report(project, "undelivered.eml", 1, "digest-1")
    (one,) = bounces(project, first)
    assert (one["kind"], one["action"]) == ("temporary", "counted")
    (again,) = bounces(project, first)  # the same report read twice counts once
    assert again["action"] == "ignored" and "already read" in again["detail"]
    assert statuses(project)["grace@example.org"] == "active"
    (two,) = bounces(project, report(project, "undelivered.eml", 2, "digest-2"))
    assert two["action"] == "suppressed" and "2 temporary failures" in two["detail"]
    assert statuses(project)["grace@example.org"] == "bounced"


def test_a_delay_notice_is_logged_and_never_counted(project: Path) -> None:
    for number in (1, 2, 3):  # more than soft_limit of them
        (decision,) = bounces(project, report(project, "delayed.eml", number, f"d-{number}"))
        assert (decision["kind"], decision["action"]) == ("delayed", "ignored")
        assert "still being retried" in decision["detail"] and "4.2.2" in decision["detail"]
    assert statuses(project)["grace@example.org"] == "active"


def test_reports_about_one_message_count_once(project: Path) -> None:
    (delay,) = bounces(project, report(project, "delayed.eml", 1, "digest-7"))
    (failed,) = bounces(project, report(project, "undelivered.eml", 2, "digest-7"))
    assert delay["action"] == "ignored" and failed["action"] == "counted"
    assert "temporary failure 1 of 2" in failed["detail"]
    (repeat,) = bounces(project, report(project, "undelivered.eml", 3, "digest-7"))
    assert repeat["action"] == "ignored" and "<digest-7@example.org>" in repeat["detail"]
    assert statuses(project)["grace@example.org"] == "active"  # one digest lost, one count


def test_an_arf_complaint_unsubscribes(project: Path) -> None:
    (decision,) = bounces(project, str(HERE / "arf-complaint.eml"))
    assert (decision["address"], decision["kind"]) == ("ada@example.org", "complaint")
    assert decision["action"] == "unsubscribed"
    assert statuses(project)["ada@example.org"] == "complained"


def test_a_maildir_is_read_once_and_its_messages_marked_seen(project: Path) -> None:
    box = mailbox.Maildir(project / "bounces", create=True)
    box.add((HERE / "arf-complaint.eml").read_bytes())
    box.add(b"From: someone@example.net\nSubject: hello\n\nNot a bounce.\n")
    decisions = bounces(project, "--maildir", str(project / "bounces"))
    assert sorted(d["action"] for d in decisions) == ["ignored", "unsubscribed"]
    assert all("S" in message.get_flags() for message in box)
    assert bounces(project, "--maildir", str(project / "bounces")) == []


def test_a_missing_path_is_a_clear_error(project: Path) -> None:
    result = invoke(project / "config.yaml", "bounces", "nowhere.eml", environ=ENV)
    assert result.exit_code == 2 and "nowhere.eml: no such file" in result.output


def test_the_daemon_reads_the_configured_maildir_on_its_interval(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = project / "config.yaml"
    config.write_text(config.read_text() + "  maildir: bounces\n  every: 15\n")
    box = mailbox.Maildir(project / "bounces", create=True)
    box.add((HERE / "arf-complaint.eml").read_bytes())
    daemon = Daemon(config, World(now=lambda: NOW, environ=ENV))
    daemon.reload()
    daemon.schedule_jobs()
    jobs = {job.id: job for job in daemon.scheduler.get_jobs()}
    assert jobs["bounces"].trigger.interval.total_seconds() == 15 * 60
    with caplog.at_level(logging.INFO):
        jobs["bounces"].func()
        shutil.rmtree(project / "bounces")
        jobs["bounces"].func()  # a problem is logged; the daemon goes on
    assert "ada@example.org: complaint, unsubscribed (" in caplog.text
    missing = f"reading bounces failed: {project / 'bounces'}: no such file or folder"
    assert missing in caplog.text
    assert statuses(project)["ada@example.org"] == "complained"
