"""Build capture text from parts, for tests."""

from __future__ import annotations

HEADER = [
    "new",
    "Get trending papers in your email inbox!",
    "Subscribe",
    "Daily Papers",
    "byAK and the research community",
]

ABSTRACT = (
    "We study a problem that matters and propose a method that works. Experiments on several "
    "benchmarks show consistent gains over strong baselines, and ablations explain where the "
    "gains come from. The method is simple to implement, costs little at inference time, and "
    "its code is released together with the trained models and the evaluation scripts."
)


def capture(*cards: list[str], listing: str = "Dec 17", header: list[str] | None = None) -> str:
    """A capture with one line per element and a blank line between them."""
    lines = [*(HEADER if header is None else header), listing]
    for card in cards:
        lines.extend(card)
    return "\n\n".join(lines) + "\n"


def card(
    title: str,
    abstract: str = ABSTRACT,
    byline: str | None = "  • 3 authors",
    date: str | None = "Aug 20",
    upvotes: str | None = None,
) -> list[str]:
    """The lines of one card; None leaves an element out."""
    lines = [upvotes] if upvotes is not None else []
    lines += [title, abstract]
    if byline is not None:
        lines.append(byline)
    if date is not None:
        lines += ["·", date]
    return lines
