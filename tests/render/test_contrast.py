"""Colours in the email: every text readable against what is behind it (WCAG AA, 4.5:1),
and no text coloured like its background (spam filters read that as hidden text)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from tests.render_helpers import render

SECRET = {"NEWSLETTER_UNSUBSCRIBE_SECRET": "k2Jx9-TqLw_0aZr7Vn4bYc8uHs1eDf6gPm3"}
_VOID = {"br", "meta", "img", "input", "hr", "link", "col", "area", "base", "wbr", "source"}
_COLOR = re.compile(r"(?:^|;)\s*(color|background-color)\s*:\s*#([0-9a-fA-F]{3,6})\b")


def luminance(hex_colour: str) -> float:
    if len(hex_colour) == 3:
        hex_colour = "".join(c * 2 for c in hex_colour)
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


class Colours(HTMLParser):
    """Each element with text: its text colour and the background it sits on (its own, or
    the nearest set on an element around it), from the inlined styles."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, str, str, str]] = [("", "000000", "ffffff", "")]
        self.pairs: list[tuple[str, str, str, str]] = []  # (text, colour, background, class)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        _, colour, background, _ = self.stack[-1]
        values = dict(attrs)
        for name, value in _COLOR.findall(values.get("style") or ""):
            colour, background = (value, background) if name == "color" else (colour, value)
        if tag not in _VOID:
            self.stack.append((tag, colour, background, values.get("class") or ""))

    def handle_endtag(self, tag: str) -> None:
        if tag not in _VOID and len(self.stack) > 1:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        tag, colour, background, name = self.stack[-1]
        if data.strip() and tag not in {"style", "title"}:
            self.pairs.append((data.strip()[:40], colour, background, name))


def test_every_text_in_the_email_reads_at_4_5_to_1_or_better(tmp_path: Path) -> None:
    extra = "public_url: https://news.example.org\n"
    rendered = render(tmp_path, extra=extra, environ=SECRET)
    colours = Colours()
    colours.feed(rendered.html)
    assert len(colours.pairs) > 20  # (the parser saw the text)
    poor = [
        (text, name, f"#{c} on #{b}: {contrast(c, b):.2f}")
        for text, c, b, name in colours.pairs
        if contrast(c, b) < 4.5
    ]
    assert poor == []
    preheader = [p for p in colours.pairs if p[3] == "preheader"]
    assert preheader  # (seen: its text is the first paper's title)
