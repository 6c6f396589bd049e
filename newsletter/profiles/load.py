"""``subscribers.yaml``: load the hand-edited profiles, reporting every mistake at once."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from newsletter.config.settings import MatchSettings, ScheduleDefaults
from newsletter.errors import ConfigError, KeywordError, ProfileError
from newsletter.files.problems import Problems
from newsletter.files.yamlfile import (
    KeyPath,
    Piece,
    YamlDocument,
    YamlStream,
    did_you_mean_address,
    list_pieces,
    read_text,
)
from newsletter.matching.keywords import (
    LIST_MAX_ENTRIES,
    Keyword,
    entry_problem,
    followed_author_key,
    parse_keyword,
)
from newsletter.matching.trending import TRENDING_MAX
from newsletter.models import FREQUENCIES, WEEKDAYS, Subscriber
from newsletter.profiles.categories import canonical_category, closest_categories
from newsletter.subscribers.addresses import EmailNotValidError, normalized_address

_DAY_ALIASES = {day[:3]: day for day in WEEKDAYS}
KEYS = (
    "email",
    "name",
    "keywords",
    "exclude",
    "require",
    "authors",
    "categories",
    "max_papers",
    "min_score",
    "trending",
    "frequency",
    "day",
    "send_at",
    "timezone",
    "active",
)


@dataclass(frozen=True)
class Profiles:
    """Every subscriber in the file, in file order."""

    path: Path
    subscribers: tuple[Subscriber, ...]

    def find(self, email: str) -> Subscriber | None:
        """The subscriber with this address (any case), if any."""
        wanted = email.strip().casefold()
        return next((s for s in self.subscribers if s.email.casefold() == wanted), None)

    def named(self, emails: Iterable[str]) -> tuple[Subscriber, ...]:
        """The subscribers with these addresses; a ConfigError for one not in the file."""
        chosen = []
        for email in emails:
            subscriber = self.find(email)
            if subscriber is None:
                known = [s.email for s in self.subscribers]
                hint = did_you_mean_address(email, known)
                raise ConfigError(f"no subscriber '{email}' in {self.path.name}{hint}")
            chosen.append(subscriber)
        return tuple(chosen)


Spread = Callable[[Callable[[Any], Any], Iterable[Any]], Iterator[Any]]
SPREAD_CHUNK = 500  # entries checked together elsewhere


def load_profiles(
    path: Path,
    schedule: ScheduleDefaults | None = None,
    matching: MatchSettings | None = None,
    spread: Spread | None = None,
) -> Profiles:
    """Load the profile file at ``path`` (subscribers without ``send_at``/``timezone`` get
    ``schedule``'s; ``matching`` tells which ``min_score`` is reachable); ProfileError lists
    every problem with its line. With ``spread`` (a map over worker processes, such as
    ``send.produce.RenderPool.map_ahead``), the entries are checked there while the file is read."""
    defaults = _Defaults(schedule or ScheduleDefaults(), matching or MatchSettings())
    if not path.exists():
        raise ProfileError(
            f"{path}: no such file; create it or fix 'subscribers' in the config file"
        )
    if spread is not None:
        subscribers = _spread_out(path, defaults, spread)
        if subscribers is not None:
            return Profiles(path, subscribers)
    stream = YamlStream(path, "subscribers")
    problems = Problems(stream.document)
    seen: dict[str, int] = {}
    subscribers = []
    for index, entry in _entries(stream, problems):
        at = ("subscribers", index)
        reader = _ProfileReader(stream.document, problems, defaults, at)
        subscriber = reader.read(entry)
        if reader.address is not None:
            key = reader.address.casefold()
            if key in seen:
                problems.add(
                    (*at, "email"),
                    f"'{reader.address}' is already used on line {seen[key]}; each address "
                    "may appear once (merge the two entries)",
                )
                continue
            seen[key] = stream.document.line(at)
        if subscriber is not None:
            subscribers.append(subscriber)
    problems.repeated_keys()
    if problems.found:
        raise ProfileError(problems.messages())
    return Profiles(path, tuple(subscribers))


def _spread_out(path: Path, defaults: _Defaults, spread: Spread) -> tuple[Subscriber, ...] | None:
    """The subscribers, read and checked by ``spread``: pieces of the file each read and
    checked there (``yamlfile.list_pieces``), or, in a file that cannot be cut so, its
    entries read here and checked there. None when the file has a mistake: the reading in
    one process then reports each with its line (it needs every entry's lines)."""
    text = read_text(path)
    items = list_pieces(text, "subscribers", 1)
    if items is None:
        return _spread_entries(path, text, defaults, spread)
    read = _read_items(path, items, defaults, spread, {})
    return None if read is None else read.profiles.subscribers


# What an entry read as, by its text (its lines, as ``list_pieces`` cuts them): the line
# its item started on then, and its Subscriber.
Known = Mapping[str, tuple[int, Subscriber]]


@dataclass(frozen=True)
class Reread:
    """What ``load_reusing`` read, with what the profile cache keeps of it."""

    profiles: Profiles
    # Each entry's line and place among the subscribers, by its text (for next time);
    # None when the file had to be read whole (a mistake, or a cut that did not hold).
    places: dict[str, tuple[int, int]] | None
    # The subscribers as the workers pickled them, a piece at a time in file order, so the
    # cache does not pickle them again; None when some came from ``known`` instead.
    pickled: tuple[bytes, ...] | None


def load_reusing(
    path: Path,
    schedule: ScheduleDefaults,
    matching: MatchSettings,
    known: Known,
    spread: Spread | None = None,
) -> Reread | None:
    """The profiles of a plainly laid-out file (``yamlfile.list_pieces``), reading and
    checking (on ``spread``, or here) only the entries ``known`` does not hold, as after a
    preferences edit changed one entry of thousands. None when the file cannot be cut so:
    ``load_profiles`` reads it then (as it does here when a piece has a problem, to word
    each mistake with its line)."""
    try:
        items = list_pieces(read_text(path), "subscribers", 1)
    except ConfigError:
        return None
    if items is None:
        return None
    read = _read_items(path, items, _Defaults(schedule, matching), spread or map, known)
    if read is None:
        return Reread(load_profiles(path, schedule, matching), None, None)
    return read


def check_piece_pickled(job: tuple[Path, _Defaults, Piece]) -> bytes:
    """``check_piece``, its result pickled (in a worker, where it is pickled to travel
    anyway: the bytes are then kept for the cache as they came)."""
    return pickle.dumps(check_piece(job), protocol=pickle.HIGHEST_PROTOCOL)


def _read_items(
    path: Path, items: list[Piece], defaults: _Defaults, spread: Spread, known: Known
) -> Reread | None:
    """The subscribers of ``items`` (one a list item): those ``known`` holds as they were
    (moved to their line now), the others read and checked by ``spread`` in pieces of up to
    ``SPREAD_CHUNK`` consecutive items. None if an entry has a problem, or a piece reads as
    other items than its cuts."""
    runs = _unknown_runs(items, known)
    jobs = [(path, defaults, _joined(items, run)) for run in runs]
    found: dict[str, tuple[int, Subscriber]] = {}
    pickled = list(spread(check_piece_pickled, jobs))
    for run, data in zip(runs, pickled, strict=True):
        checked = pickle.loads(data)
        if len(checked) != len(run):  # (a cut inside a quoted value: several make one)
            return None
        for index, subscriber in zip(run, checked, strict=True):
            if subscriber is None:
                return None
            found[items[index].text] = (items[index].line, subscriber)
    listed: list[Subscriber] = []
    places: dict[str, tuple[int, int]] = {}
    for place, item in enumerate(items):
        line, subscriber = found.get(item.text) or known[item.text]
        if line != item.line:
            subscriber = replace(subscriber, line=subscriber.line + item.line - line)
        listed.append(subscriber)
        places[item.text] = (item.line, place)
    # (Two items of the same text are one place here: _gathered sees the address twice.)
    subscribers = _gathered([listed])
    if subscribers is None:
        return None
    all_read = sum(len(run) for run in runs) == len(items)
    return Reread(Profiles(path, subscribers), places, tuple(pickled) if all_read else None)


def _unknown_runs(items: list[Piece], known: Known) -> list[list[int]]:
    """The indexes of the items ``known`` does not hold, in runs of consecutive ones of up
    to ``SPREAD_CHUNK``."""
    runs: list[list[int]] = []
    for index, item in enumerate(items):
        if item.text in known:
            continue
        if runs and runs[-1][-1] == index - 1 and len(runs[-1]) < SPREAD_CHUNK:
            runs[-1].append(index)
        else:
            runs.append([index])
    return runs


def _joined(items: list[Piece], run: list[int]) -> Piece:
    """Consecutive items as one piece (their lines, as they are in the file)."""
    first = items[run[0]]
    return Piece(first.key, first.line, "\n".join(items[index].text for index in run))


def _spread_entries(
    path: Path, text: str, defaults: _Defaults, spread: Spread
) -> tuple[Subscriber, ...] | None:
    """The file read here, its entries checked by ``spread`` as they are read."""
    stream = YamlStream(path, "subscribers", text=text)
    problems = Problems(stream.document)
    chunks = _chunked(stream, problems)
    subscribers = _gathered(spread(check_entries, ((path, defaults, chunk) for chunk in chunks)))
    if problems.found or stream.document.duplicates:
        return None
    return subscribers


def _gathered(checked: Iterable[list[Subscriber | None]]) -> tuple[Subscriber, ...] | None:
    """The subscribers of every list in ``checked``, in order; None if any is None (an
    entry with a problem) or an address comes twice. Every list is taken: ``spread``
    must be run to its end."""
    subscribers: list[Subscriber] = []
    seen: set[str] = set()
    sound = True
    for entries in checked:
        for subscriber in entries:
            if subscriber is None or subscriber.email.casefold() in seen:
                sound = False
            elif sound:
                seen.add(subscriber.email.casefold())
                subscribers.append(subscriber)
    return tuple(subscribers) if sound else None


def _chunked(stream: YamlStream, problems: Problems) -> Iterator[list[tuple[int, object, int]]]:
    """The entries, ``SPREAD_CHUNK`` at a time: (index, value, line)."""
    chunk: list[tuple[int, object, int]] = []
    document = stream.document
    for index, entry in _entries(stream, problems):
        chunk.append((index, entry, document.line(("subscribers", index))))
        if len(chunk) == SPREAD_CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def check_entries(
    job: tuple[Path, _Defaults, list[tuple[int, object, int]]],
) -> list[Subscriber | None]:
    """In a worker: each entry's Subscriber, or None if it has a problem (the caller reads
    the file again to word them: only the entry's own line is known here)."""
    path, defaults, entries = job
    checked: list[Subscriber | None] = []
    for index, entry, line in entries:
        at = ("subscribers", index)
        document = YamlDocument(path, None, {at: line})
        problems = Problems(document)
        subscriber = _ProfileReader(document, problems, defaults, at).read(entry)
        checked.append(None if problems.found else subscriber)
    return checked


def check_piece(job: tuple[Path, _Defaults, Piece]) -> list[Subscriber | None]:
    """In a worker: read a piece of the file and check its entries; [None] when any has a
    problem or the piece does not read as YAML (the caller reads the file again, whole)."""
    path, defaults, piece = job
    stream = YamlStream(path, "subscribers", text=piece.document())
    problems = Problems(stream.document)
    checked: list[Subscriber | None] = []
    try:
        for index, entry in _entries(stream, problems):
            reader = _ProfileReader(stream.document, problems, defaults, ("subscribers", index))
            checked.append(reader.read(entry))
    except ConfigError:
        return [None]
    return [None] if problems.found or stream.document.duplicates else checked


def entries_guess(path: Path) -> int:
    """About how many entries the profile file holds: its ``email`` keys, counted in its
    bytes (comments and the like may add a few); 0 when it cannot be read."""
    try:
        return path.read_bytes().count(b"email")
    except OSError:
        return 0


def _entries(stream: YamlStream, problems: Problems) -> Iterator[tuple[int, object]]:
    """Each entry with its index, streamed; then the checks of the file's top level."""
    yield from stream.items()
    data = stream.document.data
    nobody = "write 'subscribers: []' to send to nobody on purpose"
    if data is None:  # an emptied file is more likely an accident than a decision
        problems.add(
            (), f"the file is empty: list the subscribers under 'subscribers:', or {nobody}"
        )
        return
    if not isinstance(data, dict) or "subscribers" not in data:
        problems.add((), "the file must start with 'subscribers:' followed by a list of entries")
        return
    problems.unknown_keys((), data, ["subscribers"])
    entries = data["subscribers"]
    if entries is None:
        problems.add(("subscribers",), f"'subscribers' has no entries: add some, or {nobody}")
        return
    if not isinstance(entries, list):
        problems.add(("subscribers",), "'subscribers' must be a list; start each entry with '- '")
        return
    yield from enumerate(entries)  # empty when streamed; a list given as an alias is not


@dataclass(frozen=True)
class _Defaults:
    schedule: ScheduleDefaults
    matching: MatchSettings


class _ProfileReader:
    """Checks one entry; records problems and returns a Subscriber only if it is sound."""

    def __init__(
        self, document: YamlDocument, problems: Problems, defaults: _Defaults, at: KeyPath
    ):
        self.document = document
        self.problems = problems
        self.defaults = defaults
        self.at = at
        self.ok = True
        self.address: str | None = None  # the checked address, even if the entry has problems

    def add(self, key: str | int | KeyPath, message: str) -> None:
        path = (*self.at, *(key if isinstance(key, tuple) else (key,)))
        self.problems.add(path, message)
        self.ok = False

    def checked(self, value: object) -> object:
        if value is None:
            self.ok = False
        return value

    def read(self, entry: object) -> Subscriber | None:
        if not isinstance(entry, dict):
            self.add((), "each subscriber must be a mapping of key: value, starting '- email: ...'")
            return None
        self.problems.unknown_keys(self.at, entry, KEYS)
        if any(key not in KEYS for key in entry):
            self.ok = False
        email = self.address = self.email(entry.get("email"))
        authors = self.authors(entry)
        keywords = self.keywords(entry, "keywords", required=not authors)
        exclude = self.keywords(entry, "exclude")
        require = self.keywords(entry, "require")
        self.conflicts(keywords, exclude, require)
        categories = self.categories(entry)
        options = self.options(entry, len(keywords))
        if not self.ok or email is None:
            return None
        return Subscriber(
            email=email,
            keywords=keywords,
            exclude=exclude,
            require=require,
            authors=authors,
            categories=categories,
            line=self.document.line(self.at),
            **options,
        )

    def strings(self, entry: dict, key: str, example: str) -> list[tuple[int, str]]:
        """The (index, text) items of the list under ``key``; problems for anything else."""
        value = entry.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.add(key, f"'{key}' must be a list, e.g. {key}: [{example}]")
            return []
        if not self.short_enough(key, value):
            return []
        found = []
        for index, item in enumerate(value):
            if not isinstance(item, str):
                self.add((key, index), f"each of '{key}' must be text, e.g. {key}: [{example}]")
                continue
            text = self.checked(self.problems.text((*self.at, key, index), item))
            if isinstance(text, str) and (problem := entry_problem(text)):
                self.add((key, index), problem)
            elif isinstance(text, str):
                found.append((index, text))
        return found

    def short_enough(self, key: str, value: list) -> bool:
        """Is the list under ``key`` within LIST_MAX_ENTRIES? (A problem if not.)"""
        if len(value) <= LIST_MAX_ENTRIES:
            return True
        self.add(
            key,
            f"'{key}' lists {len(value)} entries; a profile takes at most {LIST_MAX_ENTRIES} "
            "(a few precise ones match better than many)",
        )
        return False

    def authors(self, entry: dict) -> tuple[str, ...]:
        """Followed people: each a full name, or initials and a last name."""
        kept: dict[str, str] = {}
        for index, name in self.strings(entry, "authors", '"Yann LeCun", "Y. Bengio"'):
            key = followed_author_key(name)
            if len(key.split()) < 2:
                self.add(
                    ("authors", index),
                    f"author '{name}': give a first name (or its initial) and a last name, "
                    'as in "Yann LeCun" or "Y. LeCun" (a last name alone would match strangers)',
                )
            elif key in kept:
                self.add(("authors", index), f"'{name}' repeats '{kept[key]}'; list it once")
            else:
                kept[key] = name
        return tuple(kept.values())

    def categories(self, entry: dict) -> tuple[str, ...]:
        """arXiv categories (cs.LG) or whole archives (cs) to keep papers from."""
        kept: list[str] = []
        for index, written in self.strings(entry, "categories", "cs.LG, stat.ML"):
            category = canonical_category(written)
            if category is None:
                self.add(("categories", index), _not_a_category(written))
            elif category not in kept:
                kept.append(category)
        return tuple(kept)

    def email(self, value: object) -> str | None:
        if value is None:
            self.add((), "missing 'email': every subscriber needs an address")
            return None
        if not isinstance(value, str):
            self.add("email", f"'email' must be an address, not {value!r}")
            return None
        try:
            return normalized_address(value.strip())
        except EmailNotValidError as exc:
            self.add("email", f"invalid address '{value}': {exc}")
            return None

    def keywords(self, entry: dict, key: str, required: bool = False) -> tuple[Keyword, ...]:
        value = entry.get(key)
        if value is None:
            if required:
                self.add(
                    (),
                    f"missing '{key}': give a list, e.g. {key}: [pruning, \"zero-shot\"] "
                    "(or follow people with authors:)",
                )
            return ()
        if not isinstance(value, list):
            self.add(key, f"'{key}' must be a list, e.g. {key}: [{value!r}]")
            return ()
        if required and not value:
            self.add(key, f"'{key}' is empty: give at least one keyword")
            return ()
        if not self.short_enough(key, value):
            return ()
        parsed: dict[tuple[tuple[str, ...], bool], Keyword] = {}
        for index, item in enumerate(value):
            if not isinstance(item, str):
                self.add((key, index), self._not_text(item, (*self.at, key, index)))
                continue
            try:
                keyword = parse_keyword(item)
            except KeywordError as exc:
                self.add((key, index), f"bad keyword {exc}")
                continue
            same = parsed.get(keyword.key)
            if same is not None:
                self.add((key, index), f"'{item}' repeats '{same.text}' in '{key}'; list it once")
                continue
            parsed[keyword.key] = keyword
        return tuple(parsed.values())

    def _not_text(self, item: object, at: KeyPath) -> str:
        """Why a keyword that YAML read as something else is refused, and the fix."""
        written = self.document.raw.get(at, str(item))
        if isinstance(item, bool) or item is None:
            read_as = str(item).lower() if isinstance(item, bool) else "empty (null)"
        elif isinstance(item, int | float):
            read_as = "a number"
        else:
            return f'keyword {written!r} must be text, e.g. [pruning, "zero-shot"]'
        return (
            f"keyword '{written}' is read by YAML as {read_as}, not as text: "
            f'quote it, as in "{written}"'
        )

    def conflicts(self, *lists: tuple[Keyword, ...]) -> None:
        """An excluded keyword that is also wanted or required would silently block mail."""
        keywords, exclude, require = lists
        if not exclude:
            return
        wanted = {k.key: k.text for k in (*keywords, *require)}
        for index, keyword in enumerate(exclude):
            if keyword.key in wanted:
                self.add(
                    ("exclude", index),
                    f"'{keyword.text}' is excluded but also wanted ('{wanted[keyword.key]}'): "
                    "no paper with it would ever be sent; remove one of them",
                )

    def options(self, entry: dict, keyword_count: int) -> dict[str, object]:
        problems, defaults = self.problems, self.defaults.schedule
        at = self.at

        def get(key: str, check: Callable[[KeyPath, object], object], default: object) -> object:
            return self.checked(check((*at, key), entry[key])) if key in entry else default

        name = get("name", problems.text, None)
        max_papers = get("max_papers", lambda p, v: problems.integer(p, v, 1, 100), 10)
        min_score = get("min_score", lambda p, v: problems.integer(p, v, 1, 100_000), 1)
        trending = get("trending", lambda p, v: problems.integer(p, v, 0, TRENDING_MAX), 0)
        frequency = get("frequency", lambda p, v: problems.choice(p, v, FREQUENCIES), "daily")
        day = get("day", self.weekday, None)
        options = {
            "name": name,
            "max_papers": max_papers,
            "min_score": min_score,
            "trending": trending,
            "frequency": frequency,
            "day": day or ("monday" if frequency == "weekly" else None),
            "send_at": get("send_at", problems.clock, defaults.send_at),
            "timezone": get("timezone", problems.timezone, defaults.timezone),
            "active": get("active", problems.flag, True),
        }
        self.reachable(min_score, keyword_count)
        return options

    def weekday(self, key_path: KeyPath, value: object) -> str | None:
        word = str(value).strip().lower()
        return self.problems.choice(key_path, _DAY_ALIASES.get(word, word), WEEKDAYS)

    def reachable(self, min_score: object, keyword_count: int) -> None:
        """A min_score no paper can reach would silently send nothing: say so."""
        weights = self.defaults.matching
        best = keyword_count * (weights.title_weight + weights.abstract_weight)
        if isinstance(min_score, int) and keyword_count and min_score > best:
            count = f"{keyword_count} keyword{'s' if keyword_count > 1 else ''}"
            each = f"title {weights.title_weight} + abstract {weights.abstract_weight} each"
            self.add(
                "min_score",
                f"'min_score' {min_score} can never be reached: {count} score at most {best} "
                f"({each}); lower it or add keywords",
            )


def _not_a_category(written: str) -> str:
    close = closest_categories(written)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    return (
        f"'{written}' is not an arXiv category{hint}: write one as arXiv does (cs.LG, math.PR, "
        "hep-th) or a whole archive such as cs"
    )
