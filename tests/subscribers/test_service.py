"""The subscribers' side from the command line: who gets what and why, an unsubscribe and
its lifting, and one subscriber's history."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import invoke

PROFILES = """\
subscribers:
  - email: ada@example.org
    keywords: [pruning]
  - email: grace@example.org
    keywords: [transformer]
    active: false
"""


def project(samples_project: Path) -> Path:
    (samples_project / "subscribers.yaml").write_text(PROFILES)
    return samples_project / "config.yaml"


def statuses(config: Path) -> dict[str, dict]:
    result = invoke(config, "subscribers", "--json")
    assert result.exit_code == 0, result.output
    return {row["address"]: row for row in json.loads(result.stdout)}


def test_each_address_says_its_status_and_why(samples_project: Path) -> None:
    config = project(samples_project)
    rows = statuses(config)
    assert rows["ada@example.org"]["status"] == "active"
    assert rows["ada@example.org"]["why"].startswith("daily at 07:00")
    assert rows["grace@example.org"]["status"] == "paused"
    # (the line of grace's entry)
    assert rows["grace@example.org"]["why"] == "active: false in subscribers.yaml:4"


def test_an_unsubscribe_stops_the_next_send_until_it_is_lifted(samples_project: Path) -> None:
    config = project(samples_project)
    assert invoke(config, "unsubscribe", "Ada@Example.org").exit_code == 0
    assert statuses(config)["ada@example.org"]["status"] == "unsubscribed"
    sent = json.loads(invoke(config, "send", "--now", "--json").stdout)
    assert sent["sent"] == []
    assert invoke(config, "resubscribe", "ada@example.org").exit_code == 0
    sent = json.loads(invoke(config, "send", "--now", "--json").stdout)
    assert [item["subscriber"] for item in sent["sent"]] == ["ada@example.org"]
    assert statuses(config)["ada@example.org"]["papers_sent"] == len(sent["sent"][0]["papers"])


def test_the_history_lists_the_digests_with_their_titles_and_the_events(
    samples_project: Path,
) -> None:
    config = project(samples_project)
    invoke(config, "send", "--now")
    invoke(config, "unsubscribe", "ada@example.org")
    result = invoke(config, "history", "--subscriber", "ada@example.org", "--json")
    assert result.exit_code == 0, result.output
    history = json.loads(result.stdout)
    (digest,) = history["digests"]
    assert digest["titles"] and all(digest["titles"])
    assert [event["event"] for event in history["events"]] == ["unsubscribed"]
    assert history["suppressed"].startswith("unsubscribed")


def test_an_address_that_is_none_is_a_usage_error(samples_project: Path) -> None:
    result = invoke(project(samples_project), "unsubscribe", "not an address")
    assert result.exit_code == 2
    assert "'not an address' is not an address" in result.output


def test_an_operator_subscribes_an_address_and_the_next_send_mails_it(
    samples_project: Path,
) -> None:
    config = project(samples_project)
    added = invoke(config, "subscribe", "Turing@Example.org", "--keywords", "zero-shot, pruning")
    assert added.exit_code == 0, added.output
    # (the domain is lowercased; the local part stays the reader's own)
    assert "added Turing@example.org at subscribers.yaml:7; first digest" in added.output
    assert "email: Turing@example.org" in (samples_project / "subscribers.yaml").read_text()
    sent = json.loads(invoke(config, "send", "--now", "--json").stdout)
    assert {item["subscriber"] for item in sent["sent"]} == {
        "ada@example.org",
        "Turing@example.org",
    }


def test_a_weekly_day_may_be_given_short(samples_project: Path) -> None:
    config = project(samples_project)
    result = invoke(
        config, "subscribe", "t@example.org", "--keywords", "x", "--frequency", "weekly",
        "--day", "fri",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "first digest Fri" in result.output
    assert statuses(config)["t@example.org"]["why"].startswith("weekly on Friday")


def test_subscribing_refuses_what_validate_refuses_and_writes_nothing(
    samples_project: Path,
) -> None:
    config = project(samples_project)
    again = invoke(config, "subscribe", "ada@example.org", "--keywords", "x")
    assert again.exit_code == 2 and "ada@example.org is subscribed already" in again.output
    bad = invoke(config, "subscribe", "t@example.org", "--keywords", "ok, *compress")
    assert bad.exit_code == 2
    assert "the new entry for t@example.org: bad keyword '*compress'" in bad.output
    assert (samples_project / "subscribers.yaml").read_text() == PROFILES


def test_subscribing_a_suppressed_address_says_what_still_holds_it_back(
    samples_project: Path,
) -> None:
    config = project(samples_project)
    invoke(config, "unsubscribe", "t@example.org")
    result = invoke(config, "subscribe", "t@example.org", "--keywords", "pruning")
    assert result.exit_code == 0
    assert "note: t@example.org is unsubscribed" in result.stderr
    assert "newsletter resubscribe t@example.org" in result.stderr
