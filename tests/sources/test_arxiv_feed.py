"""The arXiv feed reader: listing RSS 2.0 (2024+), the old RSS 1.0, arXiv API Atom; announce
types; identity across sources; hostile XML. Our own made-up feeds always run; the recorded
real ones in ../shared/samples run when that folder is there."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from newsletter.errors import DigestError
from newsletter.sources.read import read_digest_bytes, read_digest_file
from newsletter.store.sqlite import open_store
from tests.digest_text import ABSTRACT, capture, card
from tests.helpers import invoke, shared_sample

TODAY = date(2026, 11, 23)


def rss2(*items: tuple[str, str, str, str]) -> bytes:
    """A 2024+ listing feed; each item is (arXiv id, title, announce type, authors)."""
    body = "".join(
        f"""<item><title>{title}</title><link>https://arxiv.org/abs/{pid}</link>
<description>arXiv:{pid}v2 Announce Type: {kind}{" "}
Abstract: {ABSTRACT}</description>
<guid isPermaLink="false">oai:arXiv.org:{pid}v2</guid><category>cs.LG</category>
<pubDate>Mon, 27 Apr 2026 00:00:00 -0400</pubDate>
<arxiv:announce_type>{kind}</arxiv:announce_type><dc:creator>{authors}</dc:creator></item>"""
        for pid, title, kind, authors in items
    )
    return f"""<?xml version='1.0' encoding='UTF-8'?>
<rss xmlns:arxiv="http://arxiv.org/schemas/atom" xmlns:dc="http://purl.org/dc/elements/1.1/"
 version="2.0"><channel><title>cs.LG updates on arXiv.org</title>
<pubDate>Mon, 27 Apr 2026 00:00:00 -0400</pubDate>
<skipDays><day>Saturday</day><day>Sunday</day></skipDays>{body}</channel></rss>""".encode()


RSS1 = b"""<?xml version="1.0" encoding="UTF-8"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/"
 xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel rdf:about="http://arxiv.org/rss/math"><title>math updates on arXiv.org</title>
<dc:date>2012-09-12T20:30:00-05:00</dc:date></channel>
<item rdf:about="http://arxiv.org/abs/1209.2411">
<title>On the first time. (arXiv:1209.2411v1 [math.PR])</title>
<link>http://arxiv.org/abs/1209.2411</link>
<description rdf:parseType="Literal">&lt;p&gt;This work deals with first hitting times of
Ito processes, in some detail.&lt;/p&gt;</description>
<dc:creator>&lt;a href="http://arxiv.org/a/x"&gt;G. Hernandez&lt;/a&gt;, &lt;a
href="http://arxiv.org/a/y"&gt;A. Other&lt;/a&gt;</dc:creator></item>
<item rdf:about="http://arxiv.org/abs/1101.0001">
<title>Updated one. (arXiv:1101.0001v3 [math.AP] UPDATED)</title>
<description rdf:parseType="Literal">&lt;p&gt;An old paper, replaced.&lt;/p&gt;</description>
</item>
<item rdf:about="http://arxiv.org/abs/1209.9999">
<title>Crossed one. (arXiv:1209.9999v1 [cs.IT] CROSS LISTED)</title>
<description rdf:parseType="Literal">&lt;p&gt;Information theory, too.&lt;/p&gt;</description>
</item>
</rdf:RDF>"""

ATOM = f"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:arxiv="http://arxiv.org/schemas/atom">
<id>https://arxiv.org/api/x</id><title>arXiv Query</title><updated>2026-04-12T22:09:27Z</updated>
<entry><id>http://arxiv.org/abs/2202.12139v1</id>
<title>Testing Deep Learning
  Models</title><updated>2022-02-24T10:00:00Z</updated><published>2022-02-24T10:00:00Z</published>
<summary>  {ABSTRACT}
  Second line.</summary>
<author><name>Helge Spieker</name></author><author><name>Nassim Belmecheri</name></author>
<arxiv:comment>10 pages. Code: https://github.com/example/testing. Project page:
 https://example.org/testing</arxiv:comment>
<category term="cs.LG" scheme="http://arxiv.org/schemas/atom"/>
<arxiv:primary_category term="cs.SE" scheme="http://arxiv.org/schemas/atom"/>
<category term="cs.SE" scheme="http://arxiv.org/schemas/atom"/>
</entry></feed>""".encode()


def read(data: bytes):
    return read_digest_bytes(data, today=TODAY)


def test_the_listing_rss_keeps_new_and_cross_lists_not_replacements() -> None:
    digest = read(
        rss2(
            ("2604.21952", "Accelerating Foundation Models", "new", "A. One, B. Two, C. Three"),
            ("2604.00001", "Crossed over", "cross", "D. Four"),
            ("2501.00002", "Replaced again", "replace", "E. Five"),
            ("2501.00003", "Replaced and crossed", "replace-cross", "F. Six"),
        )
    )
    assert digest.format == "arxiv-feed" and digest.warnings == ()
    assert digest.listing_date == date(2026, 4, 27)  # arXiv's day, not UTC's
    assert [c.arxiv_id for c in digest.cards] == ["2604.21952", "2604.00001"]
    first = digest.cards[0]
    assert first.title == "Accelerating Foundation Models" and first.abstract == ABSTRACT
    assert first.authors_count == 3
    assert first.details.authors == ("A. One", "B. Two", "C. Three")
    assert (first.details.categories, first.details.announce_type) == (("cs.LG",), "new")
    assert digest.cards[1].details.announce_type == "cross"


def test_config_chooses_the_announce_types_kept() -> None:
    feed = rss2(("2604.00001", "New one", "new", "A"), ("2501.00002", "Replaced", "replace", "B"))
    kept = read_digest_bytes(feed, today=TODAY, keep={"replace"})
    assert [c.title for c in kept.cards] == ["Replaced"]


def test_an_empty_weekend_feed_is_no_papers_and_no_error() -> None:
    digest = read(rss2())
    assert digest.cards == () and digest.warnings == ()


def test_the_old_rss_1_0_listing_reads_types_from_titles() -> None:
    digest = read(RSS1)
    assert digest.listing_date == date(2012, 9, 12)
    assert [(c.arxiv_id, c.title) for c in digest.cards] == [
        ("1209.2411", "On the first time"),
        ("1209.9999", "Crossed one"),
    ]
    first = digest.cards[0]
    assert (
        first.abstract
        == "This work deals with first hitting times of Ito processes, in some detail."
    )
    assert first.authors_count == 2
    assert first.details.authors == ("G. Hernandez", "A. Other")  # the links taken off
    assert digest.cards[1].details.categories == ("cs.IT",)  # from the title


def test_an_arxiv_api_response_reads_every_entry() -> None:
    (only,) = read(ATOM).cards
    assert (only.arxiv_id, only.title, only.authors_count) == (
        "2202.12139",
        "Testing Deep Learning Models",
        2,
    )
    assert only.published == date(2022, 2, 24) and only.abstract.endswith("Second line.")
    assert only.details.authors == ("Helge Spieker", "Nassim Belmecheri")
    assert only.details.categories == ("cs.SE", "cs.LG")  # the primary one first
    assert dict(only.details.links) == {
        "github": "https://github.com/example/testing",
        "project": "https://example.org/testing",
    }


def test_an_entity_bomb_is_refused_before_parsing() -> None:
    bomb = b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "lol">'
    bomb += b"".join(b'<!ENTITY %s "%s">' % (b"b%d" % i, b"&a;" * 10) for i in range(9))
    bomb += b']><rss version="2.0"><channel><title>&b8;</title></channel></rss>'
    with pytest.raises(DigestError, match="declares entities"):
        read(bomb)


def test_xml_that_is_not_a_feed_says_what_digests_can_be() -> None:
    with pytest.raises(DigestError, match="not an RSS or Atom feed; digests are"):
        read(b"<?xml version='1.0'?><svg/>")


def test_one_paper_from_a_capture_the_hf_api_and_arxiv(project: Path) -> None:
    title = "Accelerating Foundation Models"
    digests = project / "digests"
    (digests / "a-capture.txt").write_text(capture(card(title)))
    paper = {"id": "2604.21952", "title": title, "summary": ABSTRACT, "authors": []}
    (digests / "b-hf.json").write_text(json.dumps([{"paper": paper, "title": title}]))
    (digests / "c-arxiv.xml").write_bytes(rss2(("2604.21952", title, "new", "A. One")))
    result = invoke(project / "config.yaml", "ingest")
    assert result.exit_code == 0, result.output
    with open_store(project / "state") as store:
        (only,) = store.papers()
    assert (only.title, only.arxiv_id) == (title, "2604.21952")
    # Each source adds what it knows: the HF page from the API, authors from arXiv.
    assert only.details.authors == ("A. One",) and only.details.categories == ("cs.LG",)
    (shown,) = json.loads(invoke(project / "config.yaml", "papers", "--json").stdout)
    assert shown["authors"] == ["A. One"] and shown["announce_type"] == "new"
    assert shown["links"] == {
        "hf": "https://huggingface.co/papers/2604.21952",
        "arxiv": "https://arxiv.org/abs/2604.21952",
        "pdf": "https://arxiv.org/pdf/2604.21952",
    }


EXPECTED = {
    "arxiv_rss.xml": 3,  # 4 items, one a replacement
    "arxiv_rss/arxivhaiku_2012-09-12_math_rss1.0.xml": 72,  # 71 new, 1 cross, 54 updated
    "arxiv_rss/distill_arxiv_cs_ai.xml": 3,
    "arxiv_rss/distill_arxiv_cs_cl.xml": 3,
    "arxiv_rss/distill_arxiv_cs_lg.xml": 3,
    "arxiv_api_atom.xml": 5,
    "arxiv_api/arxivpy_2016_search_au_del_maestro.xml": 10,
    "arxiv_api/arxivpy_2016_search_au_del_maestro_ANDNOT.xml": 10,
    "arxiv_api/arxivpy_2026_q_testing_s0_m10.body.DERIVED.xml": 10,
    "arxiv_api/arxivpy_2026_q_testing_s0_m100.body.DERIVED.xml": 100,
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recorded_feeds_read_completely_without_warnings(name: str) -> None:
    digest = read_digest_file(shared_sample(name), today=TODAY)
    assert len(digest.cards) == EXPECTED[name] and digest.warnings == ()
    assert all(c.arxiv_id and c.title and c.abstract for c in digest.cards)
    assert all("Announce Type" not in c.abstract and "<p>" not in c.abstract for c in digest.cards)


ATOM_LISTING = f"""<?xml version='1.0' encoding='UTF-8'?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:arxiv="http://arxiv.org/schemas/atom"
 xmlns:dc="http://purl.org/dc/elements/1.1/">
<id>http://rss.arxiv.org/atom/cs.LG</id><title>cs.LG updates on arXiv.org</title>
<updated>2026-04-27T04:00:00.000000+00:00</updated>
<entry><id>oai:arXiv.org:2604.21952v1</id><title>Accelerating Foundation Models</title>
<updated>2026-04-27T04:00:00.000000+00:00</updated>
<link href="https://arxiv.org/abs/2604.21952" rel="alternate" type="text/html"/>
<summary>arXiv:2604.21952v1 Announce Type: new
Abstract: {ABSTRACT}</summary><category term="cs.LG"/><category term="cs.AR"/>
<published>2026-04-27T00:00:00-04:00</published>
<arxiv:announce_type>new</arxiv:announce_type>
<dc:creator>A. One, B. Two</dc:creator></entry>
<entry><id>oai:arXiv.org:2501.00002v3</id><title>Replaced again</title>
<summary>arXiv:2501.00002v3 Announce Type: replace
Abstract: {ABSTRACT}</summary><arxiv:announce_type>replace</arxiv:announce_type>
<dc:creator>E. Five</dc:creator></entry>
</feed>""".encode()


def test_the_atom_flavour_of_the_listing_reads_like_the_rss() -> None:
    digest = read(ATOM_LISTING)
    (only,) = digest.cards
    assert digest.listing_date == date(2026, 4, 27) and digest.warnings == ()
    assert (only.arxiv_id, only.title, only.abstract) == (
        "2604.21952",
        "Accelerating Foundation Models",
        ABSTRACT,
    )
    assert only.details.authors == ("A. One", "B. Two")
    assert only.details.categories == ("cs.LG", "cs.AR")
