"""The source kinds, by config.yaml's ``type``, and the readers of the ingest path in the
order a file's content is tried against them. A new kind is a module declaring its
``SourceKind`` (see ``sources.kinds``) and a line in ``SOURCE_KINDS``; its reader joins the
ingest path with it."""

from __future__ import annotations

from newsletter.sources import arxiv_query, arxiv_rss, hf_daily, hf_listing
from newsletter.sources.kinds import Reader, SourceKind

SOURCE_KINDS: dict[str, SourceKind] = {
    hf_daily.KIND.name: hf_daily.KIND,
    arxiv_rss.KIND.name: arxiv_rss.KIND,
    arxiv_query.KIND.name: arxiv_query.KIND,
}
# Tried when no kind's reader recognises a file: the Daily Papers page captured as text.
LAST_READER = hf_listing.READER


def source_kind(name: str) -> SourceKind:
    """The kind config.yaml's ``type`` names (the config reader has checked it is one)."""
    return SOURCE_KINDS[name]


def readers() -> list[Reader]:
    """The readers of the kinds, each once, in the registry's order."""
    found: list[Reader] = []
    for kind in SOURCE_KINDS.values():
        if kind.reader not in found:
            found.append(kind.reader)
    return found
