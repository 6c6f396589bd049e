"""A subscriber's own Atom feed (RFC 4287): one entry per paper they were sent."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from xml.etree import ElementTree

from newsletter.matching.explained import explained, why_line
from newsletter.models import Paper, SentDigest
from newsletter.render.views import paper_url

ATOM = "http://www.w3.org/2005/Atom"
# Characters XML 1.0 cannot hold at all (a feed with one is unreadable to every reader).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def atom_feed(
    brand: str,
    address: str,
    self_url: str,
    digests: Sequence[SentDigest],
    papers: Mapping[str, Paper],
    now: datetime,
) -> bytes:
    """The feed of ``digests`` (newest first) for ``address``: each paper of each digest."""
    ElementTree.register_namespace("", ATOM)
    feed = ElementTree.Element(f"{{{ATOM}}}feed")
    _text(feed, "title", f"{brand}: papers for {address}")
    _text(feed, "id", _urn("feed", address.casefold()))
    newest = max((d.sent_at or d.created_at for d in digests), default=now)
    _text(feed, "updated", newest.isoformat())
    ElementTree.SubElement(feed, f"{{{ATOM}}}link", rel="self", href=self_url)
    author = ElementTree.SubElement(feed, f"{{{ATOM}}}author")
    _text(author, "name", brand)
    for digest in digests:
        when = (digest.sent_at or digest.created_at).isoformat()
        found = [papers[paper_id] for paper_id in digest.papers if paper_id in papers]
        matches = explained(digest.papers, found, digest.explained)
        why = [why_line(m) for m in matches] if matches else [""] * len(found)
        for paper, reasons in zip(found, why, strict=True):
            _entry(feed, paper, digest, when, reasons)
    return ElementTree.tostring(feed, encoding="utf-8", xml_declaration=True)


def _entry(
    feed: ElementTree.Element, paper: Paper, digest: SentDigest, when: str, reasons: str
) -> None:
    entry = ElementTree.SubElement(feed, f"{{{ATOM}}}entry")
    _text(entry, "title", paper.title)
    _text(entry, "id", _urn("paper", digest.key, paper.id))
    _text(entry, "updated", when)
    _text(entry, "published", when)
    url = paper_url(paper.title, paper.links)
    ElementTree.SubElement(entry, f"{{{ATOM}}}link", rel="alternate", href=url)
    for name in paper.details.authors:
        author = ElementTree.SubElement(entry, f"{{{ATOM}}}author")
        _text(author, "name", name)
    # (what matched the day it was sent, first: the reader's feed says why, as the email did)
    text = f"Matched: {reasons}\n\n{paper.abstract}" if reasons else paper.abstract
    summary = _text(entry, "summary", text)
    summary.set("type", "text")


def _text(parent: ElementTree.Element, tag: str, value: str) -> ElementTree.Element:
    element = ElementTree.SubElement(parent, f"{{{ATOM}}}{tag}")
    element.text = _NOT_XML.sub("", value)
    return element


def _urn(*parts: str) -> str:
    """A stable, opaque entry id (an address must not show in the feed's ids)."""
    return "urn:sha256:" + hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()[:40]
