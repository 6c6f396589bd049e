"""Fetching sources: each response, once a reader accepts it, written into the digests folder
as the exact bytes the server sent, where ``ingest`` reads it like any other digest file.

One request per Hugging Face listing date (``?date=YYYY-MM-DD``), one per arXiv feed, and for
an arXiv API query one per page of the day's submissions, at most one every three seconds. A
day fetched once it was complete is not asked again unless refreshed; a day that may still
grow (today, yesterday) is asked again, conditionally. Requests are conditional (ETag,
Last-Modified: a 304 writes nothing); 429, 5xx, timeouts and dropped connections are retried
with backoff, honouring Retry-After; any other 4xx, and a body that is not what the source
serves (an HTML page, an error object, a cut-off download), fail that request only, with the
URL and the reason.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx

from newsletter import __version__
from newsletter.config.settings import FetchSettings, SourceSettings
from newsletter.errors import DigestError, FetchFailure
from newsletter.models import Digest
from newsletter.reports import FetchResult
from newsletter.sources.read import read_digest_bytes
from newsletter.sources.registry import source_kind
from newsletter.store.papers import FetchOutcome, Store

_RETRY = frozenset({408, 425, 429, 500, 502, 503, 504})
# A day's listing may still grow until the day after it is over; fetched later than this
# after its start, it is complete and is not asked again (unless refreshed).
SETTLED_AFTER = timedelta(days=2)


def make_client(settings: FetchSettings) -> httpx.Client:
    """The HTTP client for fetching: timeouts, redirects, a User-Agent naming the project
    and, when configured, a contact address (as arXiv and Hugging Face ask of robots)."""
    agent = f"newsletter/{__version__}"
    if settings.contact:
        agent += f" (mailto:{settings.contact})"
    return httpx.Client(
        timeout=settings.timeout, follow_redirects=True, headers={"User-Agent": agent}
    )


@dataclass
class Fetcher:
    """Fetches sources over ``client`` into ``folder``, noting validators in ``store``."""

    settings: FetchSettings
    client: httpx.Client
    store: Store
    folder: Path
    now: Callable[[], datetime]
    sleep: Callable[[float], None]
    # When each kind that keeps its requests apart (``SourceKind.interval``) was last asked.
    last_asked: dict[str, datetime] = field(default_factory=dict)

    def fetch(self, source: SourceSettings, day: date, refresh: bool = False) -> list[FetchResult]:
        """Fetch ``source`` (for ``day``, where the source has days) into the folder: one
        result per request."""
        kind = source_kind(source.type)
        if not kind.dated:
            return [self._request(source, kind.request_url(source, day), None, refresh)]
        if not refresh and self._settled(source, day):
            path = str(self.folder / kind.file_name(source, day))
            url = kind.request_url(source, day)
            return [FetchResult(source.name, url, "already fetched", path)]
        if not kind.paged:
            return [self._request(source, kind.request_url(source, day), day, refresh)]
        return self._pages(source, day, refresh)

    def _settled(self, source: SourceSettings, day: date) -> bool:
        """Was ``day`` fetched once it could no longer change (so asking again is useless)?"""
        kind = source_kind(source.type)
        fetched_at = self.store.last_success(kind.request_url(source, day))
        start = datetime.combine(day, datetime.min.time(), UTC)
        complete = fetched_at is not None and fetched_at >= start + SETTLED_AFTER
        return complete and (self.folder / kind.file_name(source, day)).exists()

    def _pages(self, source: SourceSettings, day: date, refresh: bool) -> list[FetchResult]:
        """A paged kind's listing of ``day``, page by page until a short page or
        max_results."""
        kind = source_kind(source.type)
        results = []
        for page, start in enumerate(range(0, source.max_results, source.page_size), 1):
            size = min(source.page_size, source.max_results - start)
            url = kind.page_url(source, day, start, size)
            result = self._request(source, url, day, refresh, page)
            results.append(result)
            if result.papers < size:
                break
        return results

    def _request(
        self, source: SourceSettings, url: str, day: date | None, refresh: bool, page: int = 1
    ) -> FetchResult:
        """Ask ``url``; write what it answers (named by ``day``, else by the feed's own day)."""
        try:
            data = self._get(source, url, refresh)
            if data is None:
                return FetchResult(source.name, url, "unchanged (304)")
            digest = _check(url, data, self.now().date(), source)
        except FetchFailure as exc:
            self.store.record_fetch(FetchOutcome(url, source.name, error=str(exc)), self.now())
            return FetchResult(source.name, url, "failed", error=str(exc))
        if not digest.cards:
            return FetchResult(source.name, url, "empty")
        name = source_kind(source.type).file_name(source, day or digest.listing_date, page)
        path = self.folder / name
        status = "written" if _write(path, data) else "unchanged"
        return FetchResult(source.name, url, status, str(path), len(digest.cards))

    def _get(self, source: SourceSettings, url: str, refresh: bool) -> bytes | None:
        """The body of a 200 (None for a 304), after retries; FetchFailure otherwise."""
        headers = {} if refresh else _conditional(self.store.validators(url))
        settings, problem, wait = self.settings, "", 0.0
        for attempt in range(1, settings.max_attempts + 1):
            if attempt > 1:
                self.sleep(wait)
            try:
                self._pace(source)
                response = self.client.get(url, headers=headers)
            except httpx.TimeoutException:
                problem = f"no answer within {settings.timeout:g} s"
            except httpx.TransportError as exc:
                problem = f"the connection failed ({exc or type(exc).__name__})"
            else:
                if response.status_code == 304:
                    self._remember(source, url, response)
                    return None
                if response.is_success:
                    self._remember(source, url, response)
                    return response.content
                if response.status_code not in _RETRY:
                    raise FetchFailure(_refusal(url, response))
                problem = f"HTTP {response.status_code} {response.reason_phrase}"
                retry_after = _retry_after(response, self.now())
                if retry_after is not None:
                    wait = min(retry_after, settings.max_retry_after)
                    continue
            wait = settings.retry_delay * 2 ** (attempt - 1)
        raise FetchFailure(f"{url}: {problem} ({settings.max_attempts} attempts)")

    def _pace(self, source: SourceSettings) -> None:
        """Keep the requests of a kind that asks it (the arXiv API: 3 s) apart."""
        kind = source_kind(source.type)
        if not kind.interval:
            return
        last = self.last_asked.get(kind.name)
        if last is not None:
            wait = kind.interval - (self.now() - last).total_seconds()
            if wait > 0:
                self.sleep(wait)
        self.last_asked[kind.name] = self.now()

    def _remember(self, source: SourceSettings, url: str, response: httpx.Response) -> None:
        etag, modified = response.headers.get("ETag"), response.headers.get("Last-Modified")
        self.store.record_fetch(FetchOutcome(url, source.name, etag, modified), self.now())


def _conditional(validators: tuple[str | None, str | None]) -> dict[str, str]:
    etag, modified = validators
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if modified:
        headers["If-Modified-Since"] = modified
    return headers


def _retry_after(response: httpx.Response, now: datetime) -> float | None:
    """Seconds the server asks us to wait (Retry-After: seconds, or an HTTP date)."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, (parsedate_to_datetime(value) - now).total_seconds())
    except (TypeError, ValueError):
        return None


def _refusal(url: str, response: httpx.Response) -> str:
    hint = {
        401: "the source wants a login",
        403: "the source refuses us (check the URL, and set fetch.contact)",
        404: "no such page: check the source's url (and the date)",
    }.get(response.status_code, "check the source's url")
    return f"HTTP {response.status_code} {response.reason_phrase} from {url}: {hint}"


def _check(url: str, data: bytes, today: date, source: SourceSettings) -> Digest:
    """The response read as the digest it must be; FetchFailure saying what came instead."""
    try:
        digest = read_digest_bytes(data, today=today, keep=source.announce_types)
    except DigestError as exc:
        raise FetchFailure(f"{url} did not answer with papers: {exc}") from exc
    fmt = source_kind(source.type).reader.name
    if digest.format != fmt:
        raise FetchFailure(f"{url} answered with {digest.format}, not {fmt}")
    return digest


def _write(path: Path, data: bytes) -> bool:
    """Write ``data`` at ``path`` whole or not at all; False when it is already there."""
    if path.exists() and path.read_bytes() == data:
        return False
    temporary = path.with_name(f".{path.name}.{os.getpid()}.part")  # hidden: never ingested
    try:
        with temporary.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return True
