"""newsletter fetch against a real HTTP server on loopback playing recorded and made-up
responses: written as sent, ingested, conditional, retried, and refused with the URL."""

from __future__ import annotations

import json
import mailbox
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest

from newsletter.config.load import load_config
from newsletter.sources.registry import source_kind
from newsletter.world import World
from tests.digest_text import ABSTRACT, capture, card
from tests.helpers import NOW, ROOT, invoke, shared_sample
from tests.http_server import Reply, SourceServer
from tests.sources.test_arxiv_feed import rss2

HF_PATH = "/api/daily_papers?date=2026-03-12"
FEED_PATH = "/rss/cs.LG+cs.CL"


def hf_day(*titles: str) -> bytes:
    items = [
        {
            "paper": {
                "id": f"2603.0000{n}",
                "title": title,
                "summary": ABSTRACT,
                "authors": [{"name": "Ada"}],
                "submittedOnDailyAt": "2026-03-12T08:00:00.000Z",
                "upvotes": n,
            },
            "title": title,
            "numComments": 0,
        }
        for n, title in enumerate(titles, 1)
    ]
    return json.dumps(items).encode()


def empty_days(target: str) -> Reply | None:
    """Other days than the one a test is about: nothing listed (the fetch asks recent days)."""
    if target.startswith("/api/daily_papers?date="):
        return Reply(200, b"[]")
    if target.startswith("/api/query?"):
        return Reply(200, api_feed())
    return None


FEED = rss2(("2603.10001", "Pruning in the feed", "new", "A. One, B. Two"))


class Recorder:
    """The world's sleep: remembers the waits instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def project(folder: Path, url: str, extra: str = "") -> Path:
    (folder / "digests").mkdir(exist_ok=True)
    (folder / "subscribers.yaml").write_text(
        "subscribers:\n  - email: ada@example.org\n    keywords: [pruning]\n"
    )
    (folder / "config.yaml").write_text(
        "sender: Research digest <digest@example.org>\n"
        "fetch:\n  contact: ops@example.org\n  retry_delay: 0.5\n  max_attempts: 3\n"
        "  timeout: 1\n"
        "sources:\n"
        f"  - {{name: hf, type: hf_daily, url: '{url}/api/daily_papers'}}\n"
        f"  - {{name: arxiv, type: arxiv_rss, url: '{url}/rss', categories: [cs.LG, cs.CL]}}\n"
        + extra
    )
    return folder / "config.yaml"


def fetch(config: Path, *args: str, sleep: Recorder | None = None, now: datetime = NOW):
    world = World(now=lambda: now, environ={}, sleep=sleep or Recorder())
    return invoke(config, "fetch", *args, world=world)


def test_fetch_writes_each_response_as_sent_then_ingests_it(tmp_path: Path) -> None:
    hf = hf_day("Pruning at scale", "Zero-shot things")
    routes = {
        HF_PATH: [Reply(200, hf, {"ETag": '"v1"'})],
        FEED_PATH: [Reply(200, FEED, {"Last-Modified": "Mon, 27 Apr 2026 04:00:01 GMT"})],
    }
    with SourceServer(routes, empty_days) as server:
        config = project(tmp_path, server.url)
        first = fetch(config)
        assert first.exit_code == 0, first.output
        assert (tmp_path / "digests" / "hf-2026-03-12.json").read_bytes() == hf
        assert (tmp_path / "digests" / "arxiv-2026-04-27.xml").read_bytes() == FEED
        assert "hf: written, 2 papers -> " in first.stdout
        assert "3 new papers" in first.stdout
        agent = server.requests[0][1]["User-Agent"]
        assert agent.startswith("newsletter/") and "mailto:ops@example.org" in agent
        # Again, the same day: the listing may have grown, so both are asked, conditionally.
        routes[FEED_PATH] = [Reply(304)]
        routes[HF_PATH] = [Reply(304)]
        again = fetch(config)
        assert again.exit_code == 0, again.output
        assert "hf: unchanged (304)" in again.stdout and "arxiv: unchanged (304)" in again.stdout
        assert server.asked(HF_PATH) == 2
        headers = {path: sent for path, sent in server.requests[-2:]}
        assert headers[HF_PATH]["If-None-Match"] == '"v1"'
        assert headers[FEED_PATH]["If-Modified-Since"] == "Mon, 27 Apr 2026 04:00:01 GMT"
        # Two days on, the day is asked once more; once fetched complete, never again.
        later = "--source", "hf", "--date", "2026-03-12"
        assert fetch(config, *later, now=NOW + timedelta(days=2)).exit_code == 0
        settled = fetch(config, *later, now=NOW + timedelta(days=3))
        assert "hf: already fetched" in settled.stdout and server.asked(HF_PATH) == 3
        # --refresh asks again, unconditionally; a 304 writes nothing.
        refreshed = fetch(config, "--refresh", *later, now=NOW + timedelta(days=3))
        assert refreshed.exit_code == 0 and server.asked(HF_PATH) == 4
        assert "If-None-Match" not in server.requests[-1][1]
    sent = invoke(config, "send", "--now", "--json")
    assert [s["subscriber"] for s in json.loads(sent.stdout)["sent"]] == ["ada@example.org"]


def test_429_is_retried_after_the_time_the_server_asks_and_503_with_backoff(
    tmp_path: Path,
) -> None:
    hf = hf_day("Pruning at scale")
    routes = {
        HF_PATH: [Reply(429, b"slow down", {"Retry-After": "7"}), Reply(200, hf)],
        FEED_PATH: [Reply(503, b"busy"), Reply(502, b"busy"), Reply(200, FEED)],
    }
    sleep = Recorder()
    with SourceServer(routes, empty_days) as server:
        result = fetch(project(tmp_path, server.url), sleep=sleep)
    assert result.exit_code == 0, result.output
    assert sleep.waits == [7.0, 0.5, 1.0]


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(404, b"no"), "HTTP 404 Not Found from http://127.0.0.1"),
        (Reply(200, b"<!DOCTYPE html><html>Sign in</html>"), "an HTML page, not a digest"),
        (Reply(200, b'{"error": "Invalid date"}'), "answered with an error instead of papers"),
        (Reply(200, hf_day("Pruning") * 2, cut=40), "the connection failed"),
        (Reply(200, hf_day("Pruning"), hang=3), "no answer within 1 s"),
        (Reply(200, FEED), "answered with arxiv-feed, not hf-daily"),
    ],
    ids=["404", "html", "error-object", "truncated", "silent", "wrong-format"],
)
def test_a_failing_source_names_the_url_and_the_others_still_arrive(
    tmp_path: Path, reply: Reply, message: str
) -> None:
    routes = {HF_PATH: [reply], FEED_PATH: [Reply(200, FEED)]}
    with SourceServer(routes, empty_days) as server:
        result = fetch(project(tmp_path, server.url))
    assert result.exit_code == 1, result.output
    assert "hf: failed: " in result.stderr and message in result.stderr
    assert not (tmp_path / "digests" / "hf-2026-03-12.json").exists()
    assert (tmp_path / "digests" / "arxiv-2026-04-27.xml").exists()
    assert "1 new paper" in result.stdout  # the feed's, ingested


def test_an_entity_bomb_from_a_feed_is_refused_and_never_written(tmp_path: Path) -> None:
    bomb = b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "lol"><!ENTITY b "&a;&a;">]>'
    bomb += b'<rss version="2.0"><channel><title>&b;</title></channel></rss>'
    routes = {HF_PATH: [Reply(200, hf_day("Pruning"))], FEED_PATH: [Reply(200, bomb)]}
    with SourceServer(routes, empty_days) as server:
        result = fetch(project(tmp_path, server.url))
    assert result.exit_code == 1 and "declares entities" in result.stderr
    assert sorted(p.name for p in (tmp_path / "digests").iterdir()) == ["hf-2026-03-12.json"]


def test_an_empty_day_writes_nothing_and_says_so(tmp_path: Path) -> None:
    routes = {HF_PATH: [Reply(200, b"[]")], FEED_PATH: [Reply(200, rss2())]}
    with SourceServer(routes, empty_days) as server:
        result = fetch(project(tmp_path, server.url))
    assert result.exit_code == 0, result.output
    assert result.stdout.count("no papers (not published yet, or a day off)") == 3  # 2 hf days
    assert list((tmp_path / "digests").iterdir()) == []


def test_without_a_date_each_source_asks_its_recent_days(tmp_path: Path) -> None:
    routes = {
        FEED_PATH: [Reply(200, rss2())],
        HF_PATH: [Reply(200, hf_day("Pruning today"))],
        "/api/daily_papers?date=2026-03-11": [
            Reply(200, hf_day("Pruning yesterday").replace(b"2603.00001", b"2603.00099"))
        ],
        api_path(0, 2).replace("20260312", "20260310"): [Reply(200, api_feed("2603.00010"))],
    }
    with SourceServer(routes, empty_days) as server:
        config = project(tmp_path, server.url, QUERY_SOURCE % server.url)
        first = fetch(config, "--json")
        assert first.exit_code == 0, first.output
        asked = [path for path, _ in server.requests]
        # hf: yesterday and today; arXiv API: the last four days (announced up to 3 days late).
        assert [p for p in asked if "daily_papers" in p] == [
            "/api/daily_papers?date=2026-03-11",
            HF_PATH,
        ]
        days = [p.split("submittedDate%3A%5B")[1][:8] for p in asked if "/api/query" in p]
        assert days == ["20260309", "20260310", "20260311", "20260312"]
        assert json.loads(first.stdout)["ingest"]["new_papers"] == 3
        # Two days on, the windows have moved: hf asks the 13th and 14th, the API the 11th
        # to the 14th (the days before were fetched, and left the window).
        server.requests.clear()
        assert fetch(config, now=NOW + timedelta(days=2)).exit_code == 0
        asked = [path for path, _ in server.requests]
    assert [p.rsplit("=", 1)[1] for p in asked if "daily_papers" in p] == [
        "2026-03-13",
        "2026-03-14",
    ]
    days = [p.split("submittedDate%3A%5B")[1][:8] for p in asked if "/api/query" in p]
    assert days == ["20260311", "20260312", "20260313", "20260314"]


def test_since_fetches_each_listing_date(tmp_path: Path) -> None:
    days = ["2026-03-10", "2026-03-11", "2026-03-12"]
    routes = {
        f"/api/daily_papers?date={day}": [Reply(200, hf_day(f"Paper of {day}"))] for day in days
    }
    routes[FEED_PATH] = [Reply(200, FEED)]
    with SourceServer(routes, empty_days) as server:
        config = project(tmp_path, server.url)
        result = fetch(config, "--since", "2026-03-10", "--source", "hf")
    assert result.exit_code == 0, result.output
    assert all(server.asked(f"/api/daily_papers?date={day}") == 1 for day in days)


def test_fetch_without_sources_or_with_an_unknown_one_is_a_config_error(tmp_path: Path) -> None:
    config = project(tmp_path, "http://127.0.0.1:9")
    unknown = invoke(config, "fetch", "--source", "hff")
    assert unknown.exit_code == 2 and "no source 'hff'" in unknown.stderr
    (tmp_path / "config.yaml").write_text("sender: Research digest <digest@example.org>\n")
    none = invoke(config, "fetch")
    assert none.exit_code == 2 and "no sources to fetch" in none.stderr


def test_recorded_responses_fetch_ingest_and_send_end_to_end(tmp_path: Path) -> None:
    hf = shared_sample("hf_daily_papers_api.json").read_bytes()
    feed = shared_sample("arxiv_rss.xml").read_bytes()
    routes = {
        "/api/daily_papers?date=2026-06-12": [Reply(200, hf)],
        FEED_PATH: [Reply(200, feed)],
    }
    with SourceServer(routes, empty_days) as server:
        config = project(tmp_path, server.url)
        result = fetch(config, "--date", "2026-06-12", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [(r["source"], r["papers"]) for r in report["fetched"]] == [("hf", 30), ("arxiv", 3)]
    assert report["ingest"]["new_papers"] == 33


def test_the_daemon_fetches_before_each_run_and_a_failure_does_not_stop_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from newsletter.schedule.daemon import Daemon

    routes = {HF_PATH: [Reply(200, hf_day("Pruning at scale"))], FEED_PATH: [Reply(500, b"")]}
    with SourceServer(routes, empty_days) as server:
        config = project(tmp_path, server.url, "schedule:\n  cron: '0 12 * * *'\n")
        world = World(now=lambda: NOW, environ={}, sleep=Recorder())
        daemon = Daemon(config, world)
        daemon.reload()
        with caplog.at_level(logging.INFO, logger="newsletter.run"):
            daemon.run_due(None)
    text = caplog.text
    assert "fetch hf: written (1 papers)" in text
    assert "fetch arxiv: " in text and "HTTP 500" in text
    assert "1 sent" in text  # the fetched paper reached Ada in the same run
    assert "source arxiv is stale: no new papers since ever" in text


def test_sources_answers_i_got_no_email_with_successes_errors_and_staleness(
    tmp_path: Path,
) -> None:
    routes = {HF_PATH: [Reply(200, hf_day("Pruning at scale", "More"))], FEED_PATH: [Reply(404)]}
    with SourceServer(routes, empty_days) as server:
        config = project(tmp_path, server.url)
        assert fetch(config).exit_code == 1
    result = invoke(config, "sources", "--json")
    assert result.exit_code == 0, result.output
    hf, arxiv = json.loads(result.stdout)
    assert hf["last_success"] == NOW.isoformat() and hf["last_error"] is None
    assert (hf["papers_per_day"], hf["stale"]) == (0.3, False)
    assert arxiv["last_success"] is None and "HTTP 404" in arxiv["last_error"]
    assert arxiv["stale"] and arxiv["papers_per_day"] == 0
    later = invoke(config, "sources", now=NOW.replace(day=20))
    assert "hf (hf_daily" in later.stdout and "STALE: nothing new since 2026-03-12" in later.stdout


def test_the_daemon_fetches_on_its_own_interval_when_asked(tmp_path: Path) -> None:
    from newsletter.schedule.daemon import Daemon

    config = project(tmp_path, "http://127.0.0.1:9")
    text = config.read_text()
    config.write_text(text.replace("fetch:\n", "fetch:\n  every: 30\n"))
    daemon = Daemon(config, World(now=lambda: NOW, environ={}))
    daemon.reload()
    daemon.schedule_jobs()
    jobs = {job.id: job for job in daemon.scheduler.get_jobs()}
    assert jobs["fetch"].trigger.interval.total_seconds() == 30 * 60
    config.write_text(text)  # without fetch.every: fetching only before each send run
    daemon.reload()
    daemon.schedule_jobs()
    assert "fetch" not in {job.id for job in daemon.scheduler.get_jobs()}


def test_papers_can_be_listed_by_source_and_by_first_sighting(tmp_path: Path) -> None:
    routes = {HF_PATH: [Reply(200, hf_day("Pruning at scale"))], FEED_PATH: [Reply(200, FEED)]}
    with SourceServer(routes, empty_days) as server:
        config = project(tmp_path, server.url)
        assert fetch(config).exit_code == 0
    (tmp_path / "digests" / "capture.txt").write_text(capture(card("Captured by hand")))
    later = NOW.replace(day=14)
    assert invoke(config, "ingest", now=later).exit_code == 0

    def titles(*args: str) -> list[str]:
        result = invoke(config, "papers", "--json", *args)
        assert result.exit_code == 0, result.output
        return sorted(p["title"] for p in json.loads(result.stdout))

    assert titles("--source", "hf") == ["Pruning at scale"]
    assert titles("--source", "arxiv") == ["Pruning in the feed"]
    assert titles("--source", "capture.txt") == ["Captured by hand"]
    assert titles("--since", "2026-03-13") == ["Captured by hand"]
    assert len(titles("--since", "2026-03-12")) == 3


def api_feed(*ids: str) -> bytes:
    """An arXiv API answer with one entry per id, submitted on 2026-03-12."""
    entries = "".join(
        f"""<entry><id>http://arxiv.org/abs/{pid}v1</id><title>Pruning paper {pid}</title>
<published>2026-03-12T10:00:00Z</published><updated>2026-03-12T10:00:00Z</updated>
<summary>{ABSTRACT}</summary><author><name>Ada Lovelace</name></author>
<arxiv:primary_category term="cs.LG"/><category term="cs.LG"/></entry>"""
        for pid in ids
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:arxiv="http://arxiv.org/schemas/atom"
 xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/"><id>https://arxiv.org/api/x</id>
<title>arXiv Query</title><updated>2026-03-20T02:00:00Z</updated>
<opensearch:totalResults>{len(ids)}</opensearch:totalResults>{entries}</feed>""".encode()


API_ERROR = b"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>arXiv Query</title>
<entry><id>http://arxiv.org/api/errors#incorrect_id_format_for_1234</id><title>Error</title>
<summary>incorrect id format for 1234</summary><updated>2026-03-12T00:00:00Z</updated>
</entry></feed>"""


def api_path(start: int, size: int) -> str:
    query = (
        "(abs:pruning) AND (cat:cs.LG OR cat:stat.ML) "
        "AND submittedDate:[202603120000 TO 202603122359]"
    )
    return "/api/query?" + urlencode(
        {
            "search_query": query,
            "sortBy": "submittedDate",
            "sortOrder": "descending",
            "start": start,
            "max_results": size,
        }
    )


QUERY_SOURCE = (
    "  - {name: q, type: arxiv_query, url: '%s/api/query', query: 'abs:pruning',\n"
    "     categories: [cs.LG, stat.ML], page_size: 2, max_results: 5}\n"
)


def test_an_arxiv_query_pages_through_the_day_one_request_every_three_seconds(
    tmp_path: Path,
) -> None:
    routes = {
        api_path(0, 2): [Reply(200, api_feed("2603.00001", "2603.00002"))],
        api_path(2, 2): [Reply(200, api_feed("2603.00003", "2603.00004"))],
        api_path(4, 1): [Reply(200, api_feed())],  # nothing more: no file
    }
    sleep = Recorder()
    with SourceServer(routes, empty_days) as server:
        config = project(tmp_path, server.url, QUERY_SOURCE % server.url)
        result = fetch(config, "--source", "q", "--date", "2026-03-12", "--json", sleep=sleep)
    assert result.exit_code == 0, result.output
    assert [path for path, _ in server.requests] == [api_path(0, 2), api_path(2, 2), api_path(4, 1)]
    assert sleep.waits == [3.0, 3.0]  # the clock stands still: each wait is the full interval
    report = json.loads(result.stdout)
    assert [r["status"] for r in report["fetched"]] == ["written", "written", "empty"]
    assert sorted(p.name for p in (tmp_path / "digests").iterdir()) == [
        "q-2026-03-12.p2.xml",
        "q-2026-03-12.xml",
    ]
    assert report["ingest"]["new_papers"] == 4
    papers = json.loads(invoke(config, "papers", "--json", "--source", "q").stdout)
    assert {p["listing_date"] for p in papers} == {"2026-03-12"}  # the day, not the asking
    assert {tuple(p["categories"]) for p in papers} == {("cs.LG",)}


def test_an_arxiv_api_error_names_the_url_and_what_arxiv_said(tmp_path: Path) -> None:
    routes = {api_path(0, 2): [Reply(200, API_ERROR)]}
    with SourceServer(routes, empty_days) as server:
        config = project(tmp_path, server.url, QUERY_SOURCE % server.url)
        result = fetch(config, "--source", "q")
    assert result.exit_code == 1
    assert "q: failed: " in result.stderr and "/api/query?search_query=" in result.stderr
    assert "arXiv API answered with an error instead of papers: incorrect id format" in (
        result.stderr
    )


def test_a_source_can_keep_replacements_when_its_config_asks(tmp_path: Path) -> None:
    feed = rss2(
        ("2603.10001", "Pruning anew", "new", "A"), ("2501.00002", "Pruning v2", "replace", "B")
    )
    routes = {FEED_PATH: [Reply(200, feed)]}
    with SourceServer(routes, empty_days) as server:
        config = project(tmp_path, server.url)
        text = config.read_text().replace(
            "categories: [cs.LG, cs.CL]}",
            "categories: [cs.LG, cs.CL],\n     announce_types: [new, replace]}",
        )
        config.write_text(text)
        assert fetch(config, "--source", "arxiv").exit_code == 0
    titles = sorted(p["title"] for p in json.loads(invoke(config, "papers", "--json").stdout))
    assert titles == ["Pruning anew", "Pruning v2"]
    copied = rss2(
        ("2603.20001", "Copied anew", "new", "A"), ("2501.20002", "Copied v2", "replace", "B")
    )
    (tmp_path / "digests" / "copied.xml").write_bytes(copied)
    invoke(config, "ingest")  # a file no source fetched: new and cross-lists only
    titles = sorted(p["title"] for p in json.loads(invoke(config, "papers", "--json").stdout))
    assert titles == ["Copied anew", "Pruning anew", "Pruning v2"]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{name: a, type: arxiv_rss}", "an arxiv_rss source needs 'categories'"),
        ("{name: a, type: arxiv_rss, categories: [CS LG]}", "'CS LG' is not an arXiv category"),
        ("{name: a, type: arxiv_query}", "an arxiv_query source needs a 'query'"),
        ("{name: a, type: hf_daily, categories: [cs.LG]}", "'categories' is for arXiv sources"),
        ("{name: a, type: hf_daily, query: 'x'}", "'query' is for arxiv_query sources"),
        (
            "{name: a, type: arxiv_rss, categories: [cs.LG], announce_types: [new, updated]}",
            "'announce_types' takes some of new, cross, replace, replace-cross, not 'updated'",
        ),
        ("{name: a, type: arxiv_rss, categories: cs.LG}", "'categories' must be a list"),
        ("{name: a b, type: hf_daily}", "each source needs a 'name' of letters"),
        ("{name: a, type: rss}", "hf_daily, arxiv_rss, arxiv_query"),
        ("{name: a, url: 'ftp://x'}", "'url' must start with https://"),
    ],
)
def test_a_wrong_source_entry_names_its_line_and_the_fix(
    tmp_path: Path, entry: str, message: str
) -> None:
    (tmp_path / "digests").mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(f"sender: Digest <d@example.org>\nsources:\n  - {entry}\n")
    result = invoke(config, "fetch")
    assert result.exit_code == 2
    assert "config.yaml:3" in result.stderr and message in result.stderr, result.stderr


def test_a_followed_author_fetched_from_arxiv_arrives_explained_and_linked(
    tmp_path: Path,
) -> None:
    routes = {api_path(0, 2): [Reply(200, api_feed("2603.00007"))]}
    with SourceServer(routes, empty_days) as server:
        config = project(tmp_path, server.url, QUERY_SOURCE % server.url)
        assert fetch(config, "--source", "q", "--date", "2026-03-12").exit_code == 0
    (tmp_path / "subscribers.yaml").write_text(
        "subscribers:\n  - email: bo@example.org\n    authors: [A. Lovelace]\n"
        "    categories: [cs]\n"
    )
    sent = invoke(config, "send", "--now")
    assert sent.exit_code == 0, sent.output
    (message,) = mailbox.Maildir(tmp_path / "outbox", create=False)
    text = message.get_payload()[0].get_payload(decode=True).decode()
    assert (
        "Pruning paper 2603.00007\n   https://arxiv.org/abs/2603.00007\n   Ada Lovelace\n" in text
    )
    assert "Matched: A. Lovelace (an author you follow)" in text


def test_the_readme_sources_example_is_a_valid_config(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    example = readme.split("```yaml\nsources:", 1)[1].split("```", 1)[0]
    (tmp_path / "digests").mkdir()
    (tmp_path / "config.yaml").write_text("sender: D <d@example.org>\nsources:" + example)
    config = load_config(tmp_path / "config.yaml")
    assert [(s.name, s.type) for s in config.sources] == [
        ("hf", "hf_daily"),
        ("arxiv-ml", "arxiv_rss"),
        ("pruning", "arxiv_query"),
    ]
    query = config.sources[2]
    assert source_kind(query.type).base_url(query) == "https://export.arxiv.org/api/query"
    assert query.query


def test_a_recorded_arxiv_api_answer_fetches_and_ingests(tmp_path: Path) -> None:
    body = shared_sample("arxiv_api/arxivpy_2026_q_testing_s0_m10.body.DERIVED.xml").read_bytes()
    source = QUERY_SOURCE.replace("page_size: 2, max_results: 5", "page_size: 10, max_results: 10")
    with SourceServer({api_path(0, 10): [Reply(200, body)]}, empty_days) as server:
        config = project(tmp_path, server.url, source % server.url)
        result = fetch(config, "--source", "q", "--date", "2026-03-12", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [(r["status"], r["papers"]) for r in report["fetched"]] == [("written", 10)]
    assert report["ingest"]["new_papers"] == 10
    papers = json.loads(invoke(config, "papers", "--json").stdout)
    assert all(p["authors"] and p["categories"] and p["links"]["pdf"] for p in papers)
