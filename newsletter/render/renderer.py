"""Selections into emails: Jinja2 templates, CSS inlined once per template, text and HTML.

premailer is slow (tens of milliseconds a page), so it never runs per email. At start-up the
HTML template's Jinja tags are swapped for inert placeholders, premailer inlines the CSS into
that source once, the tags are put back, and the result is compiled as the template that
every email renders with: the per-email cost is a plain Jinja render.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import hashlib
import importlib.metadata
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote
from zoneinfo import ZoneInfo

import jinja2

from newsletter.config.settings import RenderSettings
from newsletter.errors import TemplateError
from newsletter.files.state_cache import read_cached, write_cached
from newsletter.matching.keywords import one_line
from newsletter.models import Envelope, Match, Paper, RenderedEmail, Selection, Subscriber
from newsletter.render.envelope import digest_key, envelope_for, message_id_for
from newsletter.render.links import DigestLinks, Links, return_path
from newsletter.render.mime import Composer, Headers
from newsletter.render.tokens import Signer

if TYPE_CHECKING:  # (dkimpy and dnspython: imported by workers only when DKIM is on)
    from newsletter.render.dkim import DkimSigner

HTML_TEMPLATE = "digest.html.j2"
TEXT_TEMPLATE = "digest.txt.j2"
HTML_BUDGET = 100_000  # bytes; Gmail clips messages whose HTML passes ~102 KB
LIST_CHARS = 600  # the keywords listed in the footer, about
NAME_CHARS = 60  # the subscriber's name in the greeting
SUBJECT_CHARS = 100
WIDTH = 72

_JINJA_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)
_JINJA_COMMENT = re.compile(r"\{#.*?#\}", re.DOTALL)
_PLACEHOLDER = re.compile(r"jinjaplaceholder(\d{5})x")


@dataclass(frozen=True)
class PaperView:
    """One paper as the templates show it (its place in the list is ``loop.index``)."""

    title: str
    url: str
    meta: str  # "6 authors · Aug 20, 2025 · 3 comments · 19 upvotes"
    title_segments: tuple[tuple[str, bool], ...]  # (text, highlighted)
    abstract_segments: tuple[tuple[str, bool], ...]
    abstract_text: str
    matched: str  # "pruning (title), distillation (abstract)"
    authors: str = ""  # "Ada Lovelace, Grace Hopper, Alan Turing et al." ("" when unknown)
    links: tuple[tuple[str, str], ...] = ()  # (label, URL): arXiv, PDF, Code, Project page


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


class Renderer:
    """Compiled templates for one look; ``render`` turns a Selection into an email."""

    def __init__(
        self,
        settings: RenderSettings,
        templates: Templates,
        signer: Signer | None = None,
        dkim: DkimSigner | None = None,
    ) -> None:
        self.settings = settings
        self.signer = signer
        self.dkim = dkim
        self.links = Links(settings, signer)
        self.templates = templates
        loader = _loader(templates.folder)  # for templates that {% include %} others
        html_env = _environment(loader, autoescape=True)
        text_env = _environment(loader, autoescape=False)
        self.html = _Compiled(html_env, templates.html, templates.html_name, templates.html_lines)
        self.text = _Compiled(text_env, templates.text, templates.text_name)
        self.composer = Composer(settings)

    def __reduce__(self) -> tuple:
        # Sent to a worker process as its sources; it compiles them again there.
        return (Renderer, (self.settings, self.templates, self.signer, self.dkim))

    def envelope(self, email: str) -> Envelope:
        """The SMTP envelope of ``email``'s digests (a VERP return path when configured)."""
        path = return_path(self.settings, self.signer, email)
        return envelope_for(self.settings.sender, email, path)

    def render(
        self,
        selection: Selection,
        now: datetime,
        next_send: datetime | None = None,
        message_id: str | None = None,
    ) -> RenderedEmail | None:
        """The email for ``selection``, or None when it has no matches and send_empty is off;
        ``next_send`` (the digest after this one) tells when what did not fit will come.
        ``message_id``: the recorded one, when a pending digest is rendered again."""
        if not selection.matches and not self.settings.send_empty:
            return None
        subscriber, sender = selection.subscriber, self.settings.sender
        chosen = tuple(match.paper.id for match in selection.matches)
        message_id = message_id or message_id_for(sender, subscriber.email, chosen)
        links = self.links.for_digest(subscriber.email, digest_key(message_id), chosen, now.date())
        view, html = self._fitting_html(selection, links, next_send)
        text = self.text.render(view)
        sent = chosen[: len(view.papers)]
        envelope = self.envelope(subscriber.email)
        headers = Headers(
            to_name=one_line(subscriber.name or ""),
            to_address=envelope.recipient,
            subject=view.subject,
            date=now,
            message_id=message_id,
        )
        data = self.composer.compose(headers, text, html, links)
        if self.dkim is not None:
            data = self.dkim.sign(data, now)  # (dated like the message: a resend is the same)
        return RenderedEmail(
            subscriber=subscriber.email,
            subject=view.subject,
            html=html,
            text=text,
            message_id=message_id,
            paper_ids=sent,
            data=data,
            envelope=envelope,
        )

    def _fitting_html(
        self, selection: Selection, links: DigestLinks, next_send: datetime | None
    ) -> tuple[DigestView, str]:
        """The view and HTML with as many papers as fit ``HTML_BUDGET``.

        Gmail clips bigger messages; dropping trailing papers (and saying so) is better."""

        def attempt(keep: int | None) -> tuple[DigestView, str]:
            view = digest_view(selection, self.settings, links, keep, next_send)
            return view, self.html.render(view)

        view, html = attempt(None)
        if _size(html) <= HTML_BUDGET or len(view.papers) <= 1:
            return view, html
        low, high = 1, len(view.papers) - 1  # low always fits (or is the least we send)
        while low < high:
            middle = (low + high + 1) // 2
            if _size(attempt(middle)[1]) <= HTML_BUDGET:
                low = middle
            else:
                high = middle - 1
        return attempt(low)


def _size(html: str) -> int:
    """UTF-8 size of ``html``; cheap when it is obviously small (at most 4 bytes a char)."""
    return len(html) if 4 * len(html) <= HTML_BUDGET else len(html.encode("utf-8"))


@dataclass(frozen=True)
class Templates:
    """The digest templates' sources, the HTML one with its CSS already inlined. Picklable:
    worker processes get them ready and never import premailer (18 MB a process)."""

    folder: Path  # the user's template folder (searched first, also for includes)
    html: str
    html_name: str
    text: str
    text_name: str
    # (line in ``html``, line in the file) for each Jinja tag: errors name the file's line
    html_lines: tuple[tuple[int, int], ...] = ()


def load_templates(folder: Path, cache: Path | None = None) -> Templates:
    """The templates (``folder`` first, then the package's), the HTML one inlined; a template
    that does not compile is a TemplateError naming its file and line. ``cache``: a file
    keeping the inlined HTML template between runs."""
    loader = _loader(folder)
    html, html_name, _ = loader.get_source(_environment(loader, False), HTML_TEMPLATE)
    text, text_name, _ = loader.get_source(_environment(loader, False), TEXT_TEMPLATE)
    html_name, text_name = html_name or HTML_TEMPLATE, text_name or TEXT_TEMPLATE
    # Syntax errors at the file's own lines, before inlining moves them (the text template
    # is compiled as it is by the Renderer).
    _Compiled(_environment(loader, True), html, html_name)
    inlined, lines = _inlined(html, html_name, cache)
    return Templates(folder, inlined, html_name, text, text_name, lines)


def _inlined(source: str, name: str, cache: Path | None) -> tuple[str, tuple[tuple[int, int], ...]]:
    """``inline_css``, or what it gave for this very template last time: importing and
    running premailer took a third of a second of every send's start."""
    if cache is None:
        return inline_css(source, name)
    key = hashlib.sha256(f"{_inliner_version()}\0{name}\0{source}".encode()).hexdigest()
    stored = read_cached(cache, key)
    if isinstance(stored, tuple):
        return stored
    inlined = inline_css(source, name)
    with contextlib.suppress(OSError):
        write_cached(cache, key, inlined)
    return inlined


@functools.cache
def _inliner_version() -> str:
    """What the inlining depends on besides the template: this code and premailer's."""
    code = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    return f"{code} premailer {importlib.metadata.version('premailer')}"


def _loader(folder: Path) -> jinja2.BaseLoader:
    return jinja2.ChoiceLoader(
        [jinja2.FileSystemLoader(folder), jinja2.PackageLoader("newsletter")]
    )


def _environment(loader: jinja2.BaseLoader, autoescape: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=loader,
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["wrap"] = wrap
    return env


class _Compiled:
    """A template compiled under its file's name; its errors become TemplateErrors that name
    that file and the line in it."""

    def __init__(
        self,
        env: jinja2.Environment,
        source: str,
        filename: str,
        lines: tuple[tuple[int, int], ...] = (),
    ) -> None:
        self.filename = filename
        self.lines = lines
        try:
            code = env.compile(source, name=filename, filename=filename)
        except jinja2.TemplateSyntaxError as exc:
            line = self.file_line(exc.lineno)
            raise TemplateError(f"{filename}:{line}: template error: {exc.message}") from exc
        self.template = env.template_class.from_code(env, code, env.make_globals(None))

    def render(self, view: DigestView) -> str:
        """The template rendered for ``view``."""
        try:
            return self.template.render(digest=view)
        except Exception as exc:
            line = self._error_line(exc)
            if line is None:
                raise  # not the template's fault: a bug of ours, with its traceback
            message = exc.message if isinstance(exc, jinja2.TemplateError) else str(exc)
            raise TemplateError(
                f"{self.filename}:{self.file_line(line)}: template error: {message}"
            ) from exc

    def _error_line(self, exc: BaseException) -> int | None:
        """The line of this template where ``exc`` was raised (None: not in the template)."""
        line, trace = None, exc.__traceback__
        while trace is not None:
            if trace.tb_frame.f_code.co_filename == self.filename:
                line = trace.tb_lineno
            trace = trace.tb_next
        return line

    def file_line(self, line: int) -> int:
        """The line in the template file of ``line`` in the compiled source."""
        if not self.lines:
            return line
        index = bisect.bisect_right(self.lines, (line, 1 << 30)) - 1
        return self.lines[max(index, 0)][1]


def inline_css(source: str, name: str) -> tuple[str, tuple[tuple[int, int], ...]]:
    """Inline the CSS of a Jinja HTML template into its elements, once, with premailer.

    Returns the inlined source and, for each Jinja tag, its line there and in ``source``."""
    tags: list[str] = []
    source_lines: list[int] = []
    # Comments render to nothing; as placeholders they would be stray text before <html>.
    # They are blanked to their line breaks, so lines keep their numbers.
    blanked = _JINJA_COMMENT.sub(lambda m: "\n" * m.group().count("\n"), source)
    body = blanked.lstrip()
    skipped = blanked.count("\n", 0, len(blanked) - len(body))

    def protect(match: re.Match[str]) -> str:
        tags.append(match.group())
        source_lines.append(1 + skipped + body.count("\n", 0, match.start()))
        return f"jinjaplaceholder{len(tags) - 1:05d}x"

    protected = _JINJA_TAG.sub(protect, body)
    import premailer  # here, not at the top: worker processes get inlined templates

    inlined = premailer.Premailer(
        protected,
        allow_network=False,  # never fetch anything
        strip_important=False,  # @media rules need !important to beat inline styles
        disable_validation=True,
        cssutils_logging_level="CRITICAL",
    ).transform()
    found = list(_PLACEHOLDER.finditer(inlined))
    if [int(m.group(1)) for m in found] != list(range(len(tags))):
        raise TemplateError(
            f"{name}: inlining the CSS moved or dropped Jinja tags; keep Jinja statements "
            "inside elements (not between table rows or in <head> outside elements)"
        )
    pieces, lines, position, line = [], [], 0, 1
    for match, tag, source_line in zip(found, tags, source_lines, strict=True):
        before = inlined[position : match.start()]
        line += before.count("\n")
        lines.append((line, source_line))
        pieces += [before, tag]
        line += tag.count("\n")
        position = match.end()
    pieces.append(inlined[position:])
    return "".join(pieces), tuple(lines)


# -- the view model -------------------------------------------------------------------------


def digest_view(
    selection: Selection,
    settings: RenderSettings,
    links: DigestLinks,
    keep: int | None = None,
    next_send: datetime | None = None,
) -> DigestView:
    """What the templates show for ``selection`` (its first ``keep`` papers)."""
    matches = selection.matches if keep is None else selection.matches[:keep]
    left_out = selection.left_out + len(selection.matches) - len(matches)
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
        subject=subject_line(matches),
        preheader=papers[0].title if papers else "Nothing new matched your keywords.",
        brand=display_name(settings.sender),
        greeting=f"Hi {shorten(one_line(subscriber.name), NAME_CHARS)},"
        if subscriber.name
        else "Hello,",
        summary=_summary(matches),
        papers=papers,
        left_out=left_out,
        left_out_note=_left_out_note(left_out, subscriber, next_send),
        empty=not papers,
        empty_note="Nothing new matched your keywords this time. We will write when it does.",
        why_note=f"You receive this because you follow: {follows}.",
        profile_help=settings.profile_help,
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
    reasons = [f"{name} (an author you follow)" for name in match.authors]
    reasons += [f"{k} (title)" for k in match.title_keywords]
    reasons += [f"{k} (abstract)" for k in match.abstract_keywords]
    return PaperView(
        title=paper.title,
        url=parts.url,
        meta=parts.meta,
        title_segments=segments(paper.title, match.title_spans),
        abstract_segments=segments(parts.abstract, match.abstract_spans),
        abstract_text=parts.abstract,
        matched=", ".join(reasons),
        authors=parts.authors,
        links=parts.links,
    )


@dataclass(frozen=True)
class _PaperParts:
    """What a paper shows whoever gets it."""

    url: str
    meta: str
    abstract: str
    authors: str
    links: tuple[tuple[str, str], ...]


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
    if not matches:
        return "No new papers matched your keywords."
    listings = sorted({m.paper.listing_date for m in matches})
    if len(listings) == 1:
        where = f"the {_day(listings[0])} listing"
    else:
        where = f"the listings of {_day(listings[0])} to {_day(listings[-1])}"
    return f"{_count(len(matches), 'new paper', 'new papers')} from {where} matched your keywords."


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


def _left_out_note(left_out: int, subscriber: Subscriber, next_send: datetime | None) -> str:
    """What did not fit, and when it comes: it stays a candidate for the next digests."""
    when = ""
    if next_send is not None:
        local = next_send.astimezone(ZoneInfo(subscriber.timezone))
        when = f", on {local:%A} {local.day} {local:%B}"
    them = "It stays" if left_out == 1 else "They stay"
    return (
        f"{_count(left_out, 'more match', 'more matches')} did not fit in this email. "
        f"{them} in line for your next digest{when}; raise max_papers in your profile to "
        "get more at once."
    )


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


def _day(day: date) -> str:
    return f"{day:%b} {day.day}, {day.year}"
