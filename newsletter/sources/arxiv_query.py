"""The arXiv API: each day's submissions matching a query (and categories), newest first,
a page at a time, read by ``arxiv_feed``; arXiv asks for a request every three seconds at
most."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from newsletter.sources import arxiv_feed
from newsletter.sources.kinds import SourceKind

if TYPE_CHECKING:
    from newsletter.config.settings import SourceSettings


class ArxivQuery(SourceKind):
    """``<url>?search_query=(<query>) AND (cat:A OR cat:B) AND submittedDate:[...]``."""

    name = "arxiv_query"
    default_url = "https://export.arxiv.org/api/query"
    reader = arxiv_feed.READER
    extension = "xml"
    recent_days = 4  # a day's submissions show only once announced: 3 days over a weekend
    paged = True
    interval = 3.0  # seconds between requests, as arXiv asks of API clients

    def request_url(self, source: SourceSettings, day: date) -> str:
        return self.page_url(source, day, 0, min(source.page_size, source.max_results))

    def page_url(self, source: SourceSettings, day: date, start: int, size: int) -> str:
        """The papers submitted on ``day`` that ``source`` asks for, newest first, ``size``
        of them from ``start``."""
        terms = [f"({source.query})"] if source.query else []
        if source.categories:
            terms.append("(" + " OR ".join(f"cat:{c}" for c in source.categories) + ")")
        stamp = day.strftime("%Y%m%d")
        terms.append(f"submittedDate:[{stamp}0000 TO {stamp}2359]")
        query = {
            "search_query": " AND ".join(terms),
            "sortBy": "submittedDate",
            "sortOrder": "descending",
            "start": start,
            "max_results": size,
        }
        return f"{self.base_url(source)}?{urlencode(query)}"

    def problem(self, source: SourceSettings) -> str | None:
        if not (source.categories or source.query):
            return (
                "an arxiv_query source needs a 'query' (the API's search_query, e.g. "
                "'abs:diffusion') or 'categories', or both"
            )
        return None


KIND = ArxivQuery()
