"""Rendering: golden output, the MIME message, escaping, injection, sizes, templates."""

from __future__ import annotations

import os
import re
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.errors import ConfigError, TemplateError
from newsletter.render.renderer import HTML_BUDGET
from newsletter.render.views import shorten, wrap
from tests.helpers import ROOT
from tests.render_helpers import (
    ada,
    fixed_papers,
    parse,
    parts,
    render,
)

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("NEWSLETTER_UPDATE_GOLDEN") == "1"


@pytest.mark.parametrize(("kind", "name"), [("html", "digest.html"), ("text", "digest.txt")])
def test_golden_output(tmp_path: Path, kind: str, name: str) -> None:
    rendered = render(tmp_path)
    output = rendered.html if kind == "html" else rendered.text
    golden = GOLDEN / name
    if UPDATE:
        golden.write_text(output, encoding="utf-8")
    assert output == golden.read_text(encoding="utf-8"), (
        f"{name} changed; if on purpose, rerun with NEWSLETTER_UPDATE_GOLDEN=1 and review the diff"
    )


def test_script_in_title_and_abstract_arrives_escaped(tmp_path: Path) -> None:
    evil = fixed_papers()
    evil[0] = replace(
        evil[0],
        title="Pruning <script>alert(1)</script>",
        abstract="We prune. <script>steal()</script> <img src=x onerror=alert(2)>",
    )
    html = parts(parse(render(tmp_path, papers=evil).data))[1]
    assert "<script" not in html.lower() and "<img" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html


def test_html_stays_under_the_size_budget_with_100_papers(tmp_path: Path) -> None:
    base = fixed_papers()[0]
    words = "sparse networks train faster when pruning happens early and often ".split()
    papers = [
        replace(base, id=f"p{i}", title=f"Pruning study {i}", abstract=" ".join(words * 25))
        for i in range(150)
    ]
    rendered = render(
        tmp_path,
        subscriber=ada(max_papers=100),
        papers=papers,
        extra="abstract_chars: 20000\n",
    )
    assert len(rendered.html.encode("utf-8")) < HTML_BUDGET
    shown = len(rendered.paper_ids)
    assert 1 <= shown < 100
    assert f"{150 - shown} more matches did not fit" in rendered.html
    assert f"{150 - shown} more matches did not fit" in rendered.text
    assert rendered.subject.startswith(f"{shown} new papers:")


def test_the_footer_speaks_the_readers_words_not_the_programs(tmp_path: Path) -> None:
    secret = {"NEWSLETTER_UNSUBSCRIBE_SECRET": "k2Jx9-TqLw_0aZr7Vn4bYc8uHs1eDf6gPm3"}
    served = render(
        tmp_path,
        subscriber=ada(max_papers=1),
        extra="public_url: https://news.example.org\n",
        environ=secret,
    )
    for body in (served.text, served.html):
        flat = " ".join(body.split())
        assert "reply to this email" not in flat and "max_papers" not in flat
        assert "in Preferences below" in flat and "“Papers per digest” in your preferences" in flat
    mailed = render(tmp_path, subscriber=ada(max_papers=1))  # (no web app: a reply it is)
    flat = " ".join(mailed.text.split())
    assert "max_papers" not in flat and "reply to this email" in flat


def test_a_profile_of_100000_keywords_keeps_the_html_under_budget(tmp_path: Path) -> None:
    from newsletter.matching.keywords import parse_keyword

    many = (parse_keyword("pruning"), *(parse_keyword(f"topic{i}") for i in range(100_000)))
    long_name = "Ada " + "L" * 5000
    rendered = render(tmp_path, subscriber=ada(keywords=many, name=long_name))
    assert len(rendered.html.encode("utf-8")) < HTML_BUDGET
    assert rendered.paper_ids  # the papers are there, not squeezed out by the footer
    footer = re.search(r"you follow: (.*?)\.\n", rendered.text, re.DOTALL)
    assert footer and "pruning, topic0, topic1" in footer.group(1)
    more = int(re.search(r"and ([\d,]+) more", rendered.text).group(1).replace(",", ""))
    shown = footer.group(1).count("topic")
    assert shown + more == 100_000 and more > 99_000


def test_no_matches_no_email_unless_send_empty(tmp_path: Path) -> None:
    assert render(tmp_path, papers=[]) is None
    empty = render(tmp_path, papers=[], extra="send_empty: true\n")
    assert empty is not None and empty.paper_ids == ()
    assert empty.subject == "No new papers matched your keywords"
    assert "Nothing new matched your keywords" in empty.text
    assert "Nothing new matched your keywords" in empty.html


def test_text_is_wrapped_at_72_and_urls_are_never_broken(tmp_path: Path) -> None:
    papers = fixed_papers()
    papers[1] = replace(papers[1], title="Knowledge distillation " + "word " * 40)
    text = render(tmp_path, papers=papers).text
    for line in text.splitlines():
        assert len(line) <= 72 or "://" in line, line
    urls = re.findall(r"https?://\S+", text)
    assert "https://huggingface.co/papers/2603.01234" in urls
    assert "https://arxiv.org/abs/2603.05555" in urls  # not on Hugging Face: its arXiv page
    assert "   Code: https://github.com/example/prune-early" in text
    assert "   Ada Lovelace, Grace Hopper, Alan Turing et al.\n" in text
    assert any(
        u.startswith("https://huggingface.co/papers?q=Knowledge%20distillation") for u in urls
    )


def test_html_content_and_highlights(tmp_path: Path) -> None:
    html = render(tmp_path).html
    assert 'href="https://huggingface.co/papers/2603.01234"' in html
    assert re.search(
        r'<a class="a" href="https://github.com/example/prune-early"[^>]*>Code</a>', html
    )
    assert 'href="https://arxiv.org/pdf/2603.01234"' in html
    assert "Ada Lovelace, Grace Hopper, Alan Turing et al.</p>" in html
    assert "Barbara Liskov</p>" in html
    assert "https://huggingface.co/papers?q=Teacher%2C%20Interrupted" in html
    # The highlight is declared once in <head> (not inlined on every mark: bytes).
    assert "<mark>" in html and re.search(r"mark \{[^}]*background-color: #fff1b8", html)
    assert html.count('class="card"') == 3
    assert "UniLeiden Universiteit Leiden" in html and "42 upvotes" in html
    assert "Matched:</b> pruning (title) · knowledge distillation (abstract)</p>" in html
    assert '<meta name="color-scheme" content="light dark">' in html
    assert "@media (max-width: 480px)" in html and "@media (prefers-color-scheme: dark)" in html


def test_a_followed_author_is_named_in_the_explanation_and_the_footer(tmp_path: Path) -> None:
    follower = ada(authors=("Barbara Liskov",), categories=("cs",))
    rendered = render(tmp_path, subscriber=follower)
    assert "Barbara Liskov (an author you follow) · compressing (title)" in rendered.text
    footer = (
        "follow: pruning, knowledge distillation, compress*; and the authors Barbara Liskov (in cs)"
    )
    assert footer in " ".join(rendered.text.split())


def test_every_text_colour_comes_with_a_background_colour() -> None:
    source = (ROOT / "newsletter/templates/digest.html.j2").read_text()
    css = re.search(r"<style>\n(.*?)</style>", source, re.DOTALL).group(1)
    rules = re.findall(r"([^{}]+)\{([^{}]*)\}", css)
    assert rules
    for selector, body in rules:
        if re.search(r"(^|;)\s*color\s*:", body):
            assert "background-color" in body, selector.strip()


def test_user_templates_win_over_the_package_defaults(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "digest.txt.j2").write_text(
        "Custom for {{ digest.greeting }} {{ digest.papers | length }}\n"
    )
    rendered = render(tmp_path)
    assert rendered.text == "Custom for Hi Ada, 3\n"
    assert "<html" in rendered.html  # the HTML still comes from the package


def test_template_mistakes_are_config_errors_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "digest.txt.j2").write_text("line one\n{{ digest.greeting \n")
    with pytest.raises(ConfigError, match=r"digest.txt.j2:2: template error"):
        render(tmp_path)
    (tmp_path / "templates" / "digest.txt.j2").write_text("\n{{ digest.no_such_thing }}\n")
    with pytest.raises(TemplateError, match=r"templates/digest\.txt\.j2:2: .*no_such_thing"):
        render(tmp_path)


def test_html_template_errors_name_the_line_of_the_file_not_of_the_inlined_copy(
    tmp_path: Path,
) -> None:
    """The HTML template is compiled from its CSS-inlined copy, whose lines differ; errors
    still point at the line the operator wrote."""
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "digest.html.j2").write_text(
        "{# a comment\n   over two lines #}\n"
        "<html><head><style>\np { color: black; background-color: white; }\n"
        ".x { font-weight: bold; }\n</style></head>\n<body>\n"
        '<p class="x">{{ digest.greeting }}</p>\n'
        "<p>{{ digest.summary }}</p>\n"
        "<p>{{ digest.oops }}</p>\n"
        "</body></html>\n"
    )
    with pytest.raises(TemplateError, match=r"templates/digest\.html\.j2:10: .*oops"):
        render(tmp_path)


def test_wrap_and_shorten() -> None:
    assert wrap("a " * 50) == ("a " * 36).strip() + "\n" + ("a " * 14).strip()
    url = "https://example.org/" + "x" * 100
    assert wrap(f"see {url} now", 3).splitlines() == ["see", f"   {url}", "   now"]
    assert shorten("one two three four", 12) == "one two…"
    assert shorten("short", 12) == "short"


def test_html_document_structure_survives_inlining(tmp_path: Path) -> None:
    html = render(tmp_path).html
    assert html.startswith("<!DOCTYPE html>")
    head, body = html.split("<body", 1)
    assert '<meta name="color-scheme" content="light dark">' in head and "<style>" in head
    assert "<meta" not in body


def test_inlining_never_fetches_anything(tmp_path: Path) -> None:
    import http.server
    import threading

    from newsletter.render.templates import inline_css

    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"p { color: red; background-color: white; }")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/remote.css"
        source = (
            f'<html><head><link rel="stylesheet" href="{url}"></head>'
            "<body><p>{{ x }}</p></body></html>"
        )
        inlined, _ = inline_css(source, "t.html.j2")
    finally:
        server.shutdown()
    assert requests == []
    assert "<p>{{ x }}</p>" in inlined


@given(
    st.text(alphabet=st.sampled_from("ab \n"), max_size=300),
    st.integers(min_value=0, max_value=8),
    st.booleans(),
)
def test_wrap_is_greedy_filling_like_textwrap(text: str, indent: int, first: bool) -> None:
    """Reference: textwrap with the same rules (whitespace runs are one space, long words
    stay whole, no breaks at hyphens)."""
    pad = " " * indent
    lines = textwrap.wrap(
        " ".join(text.split()),
        width=72,
        initial_indent=pad if first else "",
        subsequent_indent=pad,
        break_long_words=False,
        break_on_hyphens=False,
    )
    expected = "\n".join(lines) if lines else (pad if first else "")
    assert wrap(text, indent, first) == expected
