"""The arXiv listing feed ``<url>/<cat+cat>``: the latest announcement of some categories
(empty on weekends and holidays, which is no error), read by ``arxiv_feed``."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from newsletter.sources import arxiv_feed
from newsletter.sources.kinds import SourceKind

if TYPE_CHECKING:
    from newsletter.config.settings import SourceSettings


class ArxivRss(SourceKind):
    """A feed has no days: each fetch asks for its latest and names the file by its date."""

    name = "arxiv_rss"
    default_url = "https://rss.arxiv.org/rss"
    reader = arxiv_feed.READER
    extension = "xml"
    dated = False

    def request_url(self, source: SourceSettings, day: date) -> str:
        return f"{self.base_url(source)}/{'+'.join(source.categories)}"

    def problem(self, source: SourceSettings) -> str | None:
        if not source.categories:
            return "an arxiv_rss source needs 'categories', e.g. [cs.LG, cs.CL]"
        if source.query:
            return f"'query' is for arxiv_query sources, not {self.name}"
        return None


KIND = ArxivRss()
