"""A whole project on disk for the pipeline benchmarks: a digest capture of M papers, a
subscribers.yaml of N profiles and a config.yaml delivering to an outbox or an SMTP sink.

The papers and profiles are bench/match.py's (20 keywords each from a 2,000-term vocabulary,
Zipf-like term use in the text), written out in the formats users have, so the pipeline reads
them the way it reads real input.
"""

from __future__ import annotations

import json
from pathlib import Path

from match import build

from newsletter.models import Paper

LISTING = "Mar 12"  # the capture's listing date (bench/match.py's papers are from March 2026)
SENDER = "Research digest <digest@example.org>"


def capture(papers: list[Paper]) -> str:
    """The papers as a plain-text capture of the Hugging Face Daily Papers page."""
    lines = ["Daily Papers", "byAK and the research community", LISTING]
    for paper in papers:
        lines.append(str(paper.upvotes))
        lines += [paper.title, paper.abstract, f"  • {paper.authors_count} authors", "·"]
        lines.append(f"{paper.published:%b} {paper.published.day}")
    return "\n\n".join(lines) + "\n"


def profiles(count: int, papers: int) -> str:
    """``count`` subscriber entries as a person would write them."""
    subscribers, _ = build(count, 0)
    out = ["subscribers:"]
    for subscriber in subscribers:
        out.append(f"  - email: {subscriber.email}")
        out.append(f"    keywords: [{', '.join(json.dumps(k.text) for k in subscriber.keywords)}]")
        wanted = {k.key for k in subscriber.keywords}
        exclude = [k.text for k in subscriber.exclude if k.key not in wanted]  # else invalid
        if exclude:
            out.append(f"    exclude: [{', '.join(map(json.dumps, exclude))}]")
    return "\n".join(out) + "\n"


def write_project(
    folder: Path, subscribers: int, papers: int, smtp_port: int | None = None, ca_file: str = ""
) -> Path:
    """Write the project into ``folder``; returns its config.yaml. With ``smtp_port`` it
    delivers to that loopback SMTP server (STARTTLS when ``ca_file``), else to an outbox."""
    (folder / "digests").mkdir(parents=True)
    _, items = build(0, papers)
    (folder / "digests" / "bench.txt").write_text(capture(items), encoding="utf-8")
    (folder / "subscribers.yaml").write_text(profiles(subscribers, papers), encoding="utf-8")
    config = [f"sender: {SENDER}"]
    if smtp_port is None:
        config += ["delivery: outbox"]
    else:
        security = f"starttls\n  ca_file: {ca_file}" if ca_file else "none"
        config += ["delivery: smtp", "smtp:", "  host: 127.0.0.1", f"  port: {smtp_port}"]
        config += [f"  security: {security}", "  connections: 2"]
    (folder / "config.yaml").write_text("\n".join(config) + "\n", encoding="utf-8")
    return folder / "config.yaml"
