"""The digest's Jinja2 templates (the user's in templates/ over the shipped ones), strict and
autoescaped, with the HTML template's CSS inlined once: premailer is slow (tens of
milliseconds a page), so the tags are swapped for inert placeholders, premailer inlines that
source once (cached in the state folder), the tags are put back, and every email is a plain
Jinja render."""

from __future__ import annotations

import bisect
import contextlib
import functools
import hashlib
import importlib.metadata
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2

from newsletter.errors import TemplateError
from newsletter.files.state_cache import read_cached, write_cached
from newsletter.render.views import DigestView, wrap

if TYPE_CHECKING:  # (dkimpy and dnspython: imported by workers only when DKIM is on)
    pass


HTML_TEMPLATE = "digest.html.j2"


TEXT_TEMPLATE = "digest.txt.j2"


_JINJA_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)


_JINJA_COMMENT = re.compile(r"\{#.*?#\}", re.DOTALL)


_PLACEHOLDER = re.compile(r"jinjaplaceholder(\d{5})x")


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
    loader = template_loader(folder)
    html, html_name, _ = loader.get_source(template_environment(loader, False), HTML_TEMPLATE)
    text, text_name, _ = loader.get_source(template_environment(loader, False), TEXT_TEMPLATE)
    html_name, text_name = html_name or HTML_TEMPLATE, text_name or TEXT_TEMPLATE
    # Syntax errors at the file's own lines, before inlining moves them (the text template
    # is compiled as it is by the Renderer).
    CompiledTemplate(template_environment(loader, True), html, html_name)
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


def template_loader(folder: Path) -> jinja2.BaseLoader:
    return jinja2.ChoiceLoader(
        [jinja2.FileSystemLoader(folder), jinja2.PackageLoader("newsletter")]
    )


def template_environment(loader: jinja2.BaseLoader, autoescape: bool) -> jinja2.Environment:
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


class CompiledTemplate:
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
        # (bgcolor only means something on body, table and td: the templates write it
        # there; on every styled p and a it was ~15% of a digest's bytes)
        disable_basic_attributes=["bgcolor"],
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
