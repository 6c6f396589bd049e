"""What the templates show: a digest's and each paper's view (the line saying why it is there,
highlights, byline, links), the subject line, and the text layout."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING
from urllib.parse import quote
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

from newsletter.config.settings import RenderSettings
from newsletter.matching.explained import why_line
from newsletter.matching.keywords import one_line
from newsletter.models import Match, Paper, Selection, Subscriber
from newsletter.render.links import DigestLinks

if TYPE_CHECKING:  # (dkimpy and dnspython: imported by workers only when DKIM is on)
    pass


LIST_CHARS = 600  # the keywords listed in the footer, about


TLDR_CHARS = 300  # a source's one-line summary, at most


NO_HTML = Markup("")


NAME_CHARS = 60  # the subscriber's name in the greeting


SUBJECT_CHARS = 100


WIDTH = 72


@dataclass(frozen=True)
class PaperView:
    """One paper as the templates show it (its place in the list is ``loop.index``)."""

    title: str
    url: str
    meta: str  # "6 authors · Aug 20, 2025 · 3 comments · 19 upvotes"
    title_segments: tuple[tuple[str, bool], ...]  # (text, highlighted)
    abstract_segments: tuple[tuple[str, bool], ...]
    abstract_text: str
    matched: str  # "pruning, distillation (title) · sparse networks (abstract)"
    authors: str = ""  # "Ada Lovelace, Grace Hopper, Alan Turing et al." ("" when unknown)
    links: tuple[tuple[str, str], ...] = ()  # (label, URL): arXiv, PDF, Code, Project page
    why_label: str = "Matched"  # ("Trending" for a trending paper)
    trending: bool = False  # one of the reader's trending papers, not a keyword match
    tldr: str = ""  # the source's one-line AI summary ("" when it gave none)
    # The segments as HTML, escaped and highlighted with <mark> (made once per cached view:
    # escaping each segment in the template, every render, was a fifth of rendering).
    title_html: Markup = NO_HTML
    abstract_html: Markup = NO_HTML


@dataclass(frozen=True)
class DigestView:
    """Everything the templates may use, as ``digest``."""

    subject: str
    preheader: str
    brand: str
    greeting: str
    summary: str
    papers: tuple[PaperView, ...]
    left_out: int
    left_out_note: str
    empty: bool
    empty_note: str
    why_note: str
    profile_help: str
    unsubscribe_link: str
    preferences_link: str = ""  # "" when the web app is not configured (public_url)
    archive_link: str = ""  # this digest in a browser
    feed_link: str = ""
    feedback: tuple[tuple[str, str], ...] = ()  # per paper: (more like this, not relevant)
    ranked: int = 0  # the keyword matches among the papers (numbered "1 / ranked")
    trending_heading: str = "Trending today"
    trending_mark: str = "Trending"
    tldr_label: str = "AI summary from Hugging Face"


def digest_view(
    selection: Selection,
    settings: RenderSettings,
    links: DigestLinks,
    keep: int | None = None,
    next_send: datetime | None = None,
) -> DigestView:
    """What the templates show for ``selection`` (its first ``keep`` papers)."""
    matches = selection.matches if keep is None else selection.matches[:keep]
    ranked = sum(not match.trending for match in matches)
    left_out = selection.left_out + selection.ranked - ranked
    papers = tuple(paper_view(m, settings.abstract_chars) for m in matches)
    subscriber = selection.subscriber
    follows = listed([k.text for k in subscriber.keywords])
    if subscriber.authors:
        people = listed(list(subscriber.authors))
        follows = f"{follows}; and the authors {people}" if follows else f"the authors {people}"
    if subscriber.categories:
        follows += f" (in {listed(list(subscriber.categories))})"
    if subscriber.exclude:
        follows += f" (leaving out {listed([k.text for k in subscriber.exclude])})"
    return DigestView(
        subject=subject_line([m for m in matches if not m.trending]),
        preheader=papers[0].title if papers else "Nothing new matched your keywords.",
        brand=display_name(settings.sender),
        greeting=f"Hi {shorten(one_line(subscriber.name), NAME_CHARS)},"
        if subscriber.name
        else "Hello,",
        summary=_summary(matches),
        ranked=ranked,
        papers=papers,
        left_out=left_out,
        left_out_note=_left_out_note(left_out, subscriber, next_send, bool(links.preferences)),
        empty=not ranked,
        empty_note="Nothing new matched your keywords this time. We will write when it does.",
        why_note=f"You receive this because you follow: {follows}.",
        profile_help=settings.profile_help or _profile_help(bool(links.preferences)),
        unsubscribe_link=links.preferred,
        preferences_link=links.preferences or "",
        archive_link=links.archive or "",
        feed_link=links.feed or "",
        feedback=links.feedback[: len(papers)],
    )


@functools.lru_cache(maxsize=1024)
def paper_view(match: Match, abstract_chars: int) -> PaperView:
    """One match as the templates show it. Cached: subscribers with the same keywords get
    equal matches for a paper, and a large send renders each such view once."""
    paper = match.paper
    parts = _paper_parts(paper, abstract_chars)
    title_segments = segments(paper.title, match.title_spans)
    abstract_segments = segments(parts.abstract, match.abstract_spans)
    return PaperView(
        title=paper.title,
        url=parts.url,
        meta=parts.meta,
        title_segments=title_segments,
        abstract_segments=abstract_segments,
        title_html=highlighted(title_segments),
        abstract_html=highlighted(abstract_segments),
        abstract_text=parts.abstract,
        matched=why_line(match),
        authors=parts.authors,
        links=parts.links,
        why_label="Trending" if match.trending else "Matched",
        trending=match.trending,
        tldr=parts.tldr,
    )


@dataclass(frozen=True)
class _PaperParts:
    """What a paper shows whoever gets it."""

    url: str
    meta: str
    abstract: str
    authors: str
    links: tuple[tuple[str, str], ...]
    tldr: str


@functools.lru_cache(maxsize=8192)
def _paper_parts(paper: Paper, abstract_chars: int) -> _PaperParts:
    """A paper's URL, meta line, shortened abstract, author line and other links."""
    links = paper.links
    url = paper_url(paper.title, links)
    labelled = tuple(
        (label, links[kind]) for kind, label in _LINK_LABELS if kind in links and links[kind] != url
    )
    return _PaperParts(
        url=url,
        meta=" · ".join(_meta(paper)),
        abstract=shorten(paper.abstract, abstract_chars),
        authors=byline(paper.details.authors),
        links=labelled,
        tldr=shorten(one_line(paper.details.ai_summary or ""), TLDR_CHARS),
    )


# The links shown under a paper, in this order (the title already links to its page).
_LINK_LABELS = (("arxiv", "arXiv"), ("pdf", "PDF"), ("github", "Code"), ("project", "Project"))


# Names shown before "et al."
AUTHORS_SHOWN = 3


def paper_url(title: str, links: Mapping[str, str]) -> str:
    """The paper's page: on Hugging Face when it is there, else on arXiv, else a Hugging Face
    papers search for the title (a text capture knows no more)."""
    return (
        links.get("hf") or links.get("arxiv") or f"https://huggingface.co/papers?q={quote(title)}"
    )


def byline(authors: Sequence[str]) -> str:
    """The first few author names, then "et al." when there are more."""
    if len(authors) <= AUTHORS_SHOWN + 1:  # "et al." would hide no more than one name
        return ", ".join(authors)
    return ", ".join(authors[:AUTHORS_SHOWN]) + " et al."


def _meta(paper: Paper) -> list[str]:
    parts = []
    if paper.organization:
        parts.append(paper.organization)
    elif paper.authors_count is not None:
        parts.append(_count(paper.authors_count, "author", "authors"))
    if paper.published:
        parts.append(_day(paper.published))
    if paper.comments:
        parts.append(_count(paper.comments, "comment", "comments"))
    if paper.upvotes is not None:
        parts.append(_count(paper.upvotes, "upvote", "upvotes"))
    return parts


def segments(text: str, spans: Sequence[tuple[int, int]]) -> tuple[tuple[str, bool], ...]:
    """``text`` cut into (piece, highlighted) runs by character ``spans`` (clipped to it)."""
    out: list[tuple[str, bool]] = []
    position = 0
    for start, end in spans:
        start, end = max(start, position), min(end, len(text))
        if start >= end:
            continue
        if start > position:
            out.append((text[position:start], False))
        out.append((text[start:end], True))
        position = end
    if position < len(text):
        out.append((text[position:], False))
    return tuple(out)


def highlighted(pieces: Sequence[tuple[str, bool]]) -> Markup:
    """``segments`` as HTML: each piece escaped, the highlighted ones in ``<mark>``."""
    return Markup("").join(
        Markup("<mark>%s</mark>") % text if hit else escape(text) for text, hit in pieces
    )


def listed(texts: Sequence[str], limit: int = LIST_CHARS) -> str:
    """``texts`` joined with commas up to about ``limit`` characters, then how many more (a
    profile of 100,000 keywords must not blow the HTML budget in the footer)."""
    shown: list[str] = []
    used = 0
    for text in texts:
        text = shorten(text, limit // 4)
        if shown and used + len(text) > limit:
            break
        shown.append(text)
        used += len(text) + 2
    more = len(texts) - len(shown)
    return ", ".join(shown) + (f" and {more:,} more" if more else "")


def shorten(text: str, limit: int) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters, with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    if cut < limit // 2:
        cut = limit - 1
    return text[:cut].rstrip(" ,;:.-") + "…"


def subject_line(matches: Sequence[Match]) -> str:
    """ "7 new papers: <top title>", one line, cut at a word to a sensible length (with an
    ASCII "...": an ASCII subject needs no RFC 2047 encoding, which is slow to fold)."""
    if not matches:
        return "No new papers matched your keywords"
    head = f"{_count(len(matches), 'new paper', 'new papers')}: "
    title = one_line(matches[0].paper.title)
    room = SUBJECT_CHARS - len(head)
    return head + (title if len(title) <= room else shorten(title, room - 2)[:-1] + "...")


def _summary(matches: Sequence[Match]) -> str:
    ranked = [m for m in matches if not m.trending]
    trending = len(matches) - len(ranked)
    extra = f", and {_count(trending, 'trending paper', 'trending papers')}" if trending else ""
    if not ranked:
        return "No new papers matched your keywords" + (
            f"; here {'is' if trending == 1 else 'are'} {extra[6:]}." if trending else "."
        )
    listings = sorted({m.paper.listing_date for m in ranked})
    if len(listings) == 1:
        where = f"the {_day(listings[0])} listing"
    else:
        where = f"the listings of {_day(listings[0])} to {_day(listings[-1])}"
    count = _count(len(ranked), "new paper", "new papers")
    return f"{count} from {where} matched your keywords{extra}."


# Sized so a paper's wrapped abstract survives between subscribers who get it, while the
# per-subscriber lines ("Matched: ...") churn through.
@functools.lru_cache(maxsize=8192)
def wrap(text: str, indent: int = 0, first: bool = False) -> str:
    """Fold ``text`` at 72 columns; continuation lines (and the first, if ``first``) are
    indented; words longer than a line, such as URLs, are never broken."""
    pad = " " * indent
    rest = " ".join(text.split())
    room = WIDTH - (indent if first else 0)  # columns left for words on this line
    lines: list[str] = []
    # Cut at the last space that fits: a step per line, not per word.
    while len(rest) > room:
        cut = rest.rfind(" ", 0, room + 1)
        if cut < 0:  # the first word alone is too long: it gets a line of its own
            cut = rest.find(" ", room)
            if cut < 0:
                break
        lines.append(rest[:cut])
        rest = rest[cut + 1 :]
        room = WIDTH - indent
    lines.append(rest)
    return (pad if first else "") + ("\n" + pad).join(lines)


def display_name(sender: str) -> str:
    """The name part of the sender (``Research digest`` when it has none)."""
    name = sender.split("<")[0].strip().strip('"')
    return name or "Research digest"


def _left_out_note(
    left_out: int, subscriber: Subscriber, next_send: datetime | None, preferences: bool
) -> str:
    """What did not fit, and when it comes: it stays a candidate for the next digests."""
    when = ""
    if next_send is not None:
        local = next_send.astimezone(ZoneInfo(subscriber.timezone))
        when = f", on {local:%A} {local.day} {local:%B}"
    them = "It stays" if left_out == 1 else "They stay"
    more = (
        "raise “Papers per digest” in your preferences"
        if preferences
        else "reply to this email and ask for more papers per digest"
    )
    return (
        f"{_count(left_out, 'more match', 'more matches')} did not fit in this email. "
        f"{them} in line for your next digest{when}; {more} to get more at once."
    )


def _profile_help(preferences: bool) -> str:
    """Where a reader changes what they get: the preferences page, or (without the web app)
    a reply, which the sender reads."""
    if preferences:
        return "Change your keywords, how many papers you get and how often in Preferences below."
    return "To change your keywords or how often you hear from us, reply to this email."


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


def _day(day: date) -> str:
    return f"{day:%b} {day.day}, {day.year}"
