"""``validate``: every problem a send would meet, found in one run: the config, the
environment (secrets, DKIM), the templates, the profile file (with its categories checked
against arXiv's) and the store (opened as it is, never created or migrated)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from newsletter.config.load import read_config
from newsletter.config.settings import Config
from newsletter.errors import ConfigError, StoreError
from newsletter.ledger.suppression import SubscriberState
from newsletter.models import Subscriber
from newsletter.profiles.cache import profiles_of
from newsletter.render.capacity import papers_that_fit
from newsletter.render.renderer import HTML_BUDGET
from newsletter.reports import ValidateReport
from newsletter.send.wiring import dkim_record, make_renderer, setup_problems
from newsletter.store.backend import existing_store_for
from newsletter.store.schema import MIGRATIONS
from newsletter.world import World


def validate(path: Path, world: World) -> ValidateReport:
    """Check everything a send from the config at ``path`` needs; every problem found."""
    config, problems = read_config(path)
    problems += _unique(setup_problems(config, world.environ), problems)
    config_ok = not problems
    try:
        profiles = profiles_of(config)
    except ConfigError as exc:
        store_problems, _ = _store_check(config, world, [])
        return ValidateReport(str(path), tuple(problems + exc.problems + store_problems))
    subscribers = profiles.subscribers
    receives = [s for s in subscribers if s.receives]
    store_problems, held = _store_check(config, world, receives)
    problems += store_problems
    notes = _too_many_papers(config, world, receives) if config_ok else ()
    return ValidateReport(
        str(path),
        tuple(problems),
        str(profiles.path),
        len(subscribers),
        len(receives) - sum(held.values()),
        tuple(sorted(held.items())),
        dkim_record(config, world.environ) if not problems else None,
        config_ok,
        notes,
    )


# Digests of this many papers always fit (bench: ~60 long papers do), so most profile
# files need no trial render.
SURELY_FITS = 20


def _too_many_papers(config: Config, world: World, receives: list[Subscriber]) -> tuple[str, ...]:
    """A note for the profiles whose ``max_papers`` one email cannot hold (the rest of their
    matches wait for the next digest), with what fits."""
    asking = [s for s in receives if s.max_papers > SURELY_FITS]
    if not asking:
        return ()
    chars = config.render.abstract_chars
    fits = papers_that_fit(make_renderer(config, world.environ), chars)
    over = [s for s in asking if s.max_papers > fits]
    if not over:
        return ()
    named = ", ".join(f"{s.email} (line {s.line}: {s.max_papers})" for s in over[:5])
    more = f" and {len(over) - 5} more" if len(over) > 5 else ""
    return (
        f"max_papers: about {fits} papers of {chars}-character abstracts fit in one email "
        f"under Gmail's clipping size ({HTML_BUDGET // 1000} KB of encoded HTML); "
        f"{named}{more} ask for more, and their digests will hold about {fits}, the rest "
        "coming in the next digest. Lower max_papers, or 'abstract_chars' in the config to "
        "fit more",
    )


def _store_check(
    config: Config, world: World, receives: list[Subscriber]
) -> tuple[list[str], Counter[str]]:
    """What is wrong with the store, and how many of ``receives`` it suppresses, by reason
    (counted only in a sound store of the current schema: an older one, or an empty
    database, is migrated by the next send)."""
    held: Counter[str] = Counter()
    try:
        with existing_store_for(config, world.environ) as store:
            if store is None:
                return [], held
            problems = store.db.integrity_problems()
            if not problems and store.schema_version == len(MIGRATIONS):
                suppressed = SubscriberState(store).suppressed()
                keys = (s.email.casefold() for s in receives)
                held.update(suppressed[key].reason for key in keys if key in suppressed)
            return problems, held
    except (StoreError, ConfigError) as exc:
        return [str(exc)], held


def _unique(found: list[str], known: list[str]) -> list[str]:
    return [problem for problem in found if problem not in known]
