"""A fixed store-like set of papers and profiles for rendering tests."""

from __future__ import annotations

import email
from datetime import UTC, date, datetime
from email import policy
from pathlib import Path

from newsletter.config.load import load_config
from newsletter.config.settings import Config
from newsletter.matching.keywords import parse_keyword
from newsletter.matching.matcher import Matcher
from newsletter.models import Details, Paper, Selection, Subscriber
from newsletter.send.wiring import make_renderer
from tests.helpers import NOW

SEEN = datetime(2026, 3, 12, 6, 0, tzinfo=UTC)

ABSTRACT = (
    "Pruning neural networks before training promises cheaper training and inference. We "
    "revisit magnitude pruning at initialization and show that knowledge distillation from a "
    "dense teacher closes most of the remaining gap. Experiments cover image classification "
    "and language modelling at 90% sparsity, and a cheap criterion predicts which layers "
    "tolerate aggressive pruning before any training happens."
)


def fixed_papers() -> list[Paper]:
    def paper(pid: str, title: str, **fields: object) -> Paper:
        values: dict[str, object] = {
            "abstract": ABSTRACT,
            "authors_count": 4,
            "organization": None,
            "published": date(2026, 3, 7),
            "comments": 0,
            "upvotes": None,
            "listing_date": date(2026, 3, 10),
            "source": "mar-10.txt",
            "first_seen": SEEN,
        }
        values.update(fields)
        return Paper(id=pid, title=title, **values)  # type: ignore[arg-type]

    return [
        paper(
            "2603.01234",
            "Prune Early, Prune Often: Magnitude Pruning at Initialization",
            arxiv_id="2603.01234",
            upvotes=42,
            comments=3,
            authors_count=5,
            details=Details(
                authors=(
                    "Ada Lovelace",
                    "Grace Hopper",
                    "Alan Turing",
                    "Emmy Noether",
                    "Kurt Gödel",
                ),
                links=(
                    ("hf", "https://huggingface.co/papers/2603.01234"),
                    ("github", "https://github.com/example/prune-early"),
                ),
            ),
        ),
        paper(
            "t-distil",
            "Teacher, Interrupted: Knowledge Distillation with Partial Access",
            organization="UniLeiden Universiteit Leiden",
            authors_count=None,
            published=None,
            listing_date=date(2026, 3, 12),
        ),
        paper(
            "t-compress",
            "Compressing KV Caches with Learned Low-Rank Projections",
            abstract="We compress key-value caches. " + ABSTRACT,
            upvotes=0,
            authors_count=1,
            arxiv_id="2603.05555",
            details=Details(authors=("Barbara Liskov",), categories=("cs.LG",)),
        ),
    ]


def ada(**fields: object) -> Subscriber:
    values: dict[str, object] = {
        "email": "ada@example.org",
        "name": "Ada",
        "keywords": tuple(
            parse_keyword(k) for k in ("pruning", "knowledge distillation", "compress*")
        ),
        "exclude": (parse_keyword("medical"),),
    }
    values.update(fields)
    return Subscriber(**values)  # type: ignore[arg-type]


def project_config(tmp_path: Path, extra: str = "") -> Config:
    (tmp_path / "digests").mkdir(exist_ok=True)
    (tmp_path / "config.yaml").write_text("sender: Research digest <digest@example.org>\n" + extra)
    return load_config(tmp_path / "config.yaml")


def selection_for(subscriber: Subscriber, papers: list[Paper], config: Config) -> Selection:
    (selection,) = Matcher([subscriber], config.matching).select(papers, NOW)
    return selection


def render(tmp_path: Path, subscriber=None, papers=None, extra: str = "", environ=None):
    config = project_config(tmp_path, extra)
    papers = fixed_papers() if papers is None else papers
    selection = selection_for(subscriber or ada(), papers, config)
    return make_renderer(config, environ or {}).render(selection, NOW)


def parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=policy.default)  # type: ignore[return-value]


def parts(message) -> tuple[str, str]:
    text, html = (part.get_content() for part in message.iter_parts())
    return text, html
