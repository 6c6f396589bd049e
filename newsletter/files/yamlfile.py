"""Safe YAML loading that remembers the line of every value, for errors people can act on."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml
import yaml.cyaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from newsletter.errors import ConfigError

KeyPath = tuple[str | int, ...]

# An alias repeats its anchor's values; aliases of aliases multiply them ("billion laughs": a
# few hundred bytes that stand for billions of values). One entry, or one top-level value, may
# stand for at most this many values once aliases are expanded.
EXPANSION_MAX = 1_000_000


@dataclass
class YamlDocument:
    """Plain Python data from a YAML file plus the 1-based line of each key path."""

    path: Path
    data: object
    lines: dict[KeyPath, int] = field(default_factory=dict)
    duplicates: list[tuple[KeyPath, int]] = field(default_factory=list)  # (key, its 2nd line)
    raw: dict[KeyPath, str] = field(default_factory=dict)  # scalars as written

    def line(self, key_path: KeyPath) -> int:
        """The line of ``key_path``, or of its closest ancestor that has one."""
        while key_path:
            if key_path in self.lines:
                return self.lines[key_path]
            key_path = key_path[:-1]
        return self.lines.get((), 1)

    def where(self, key_path: KeyPath) -> str:
        """``file:line`` for a key path, as error messages start."""
        return f"{self.path.name}:{self.line(key_path)}"


def load_yaml(path: Path) -> YamlDocument:
    """Load ``path`` with the safe loader; raise ConfigError naming the file and line."""
    stream = YamlStream(path)
    for _ in stream.items():
        pass
    return stream.document


def read_text(path: Path) -> str:
    """The text of a YAML file; a ConfigError saying why it cannot be read."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc})") from exc


def _yaml_problem(path: Path, exc: yaml.MarkedYAMLError) -> str:
    """What is wrong where, in words: a tab gets its own (PyYAML calls it "found character
    '\\t' that cannot start any token", libyaml "a tab character that violates indentation")."""
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark else 1
    problem = exc.problem or exc.context or "invalid YAML"
    if "tab character" in problem or "'\\t'" in problem:
        column = mark.column + 1 if mark else 1
        return (
            f"{path.name}:{line}:{column}: tabs are not allowed for indentation in YAML: "
            "indent with spaces (two per level, as the rest of the file)"
        )
    return f"{path.name}:{line}: invalid YAML: {problem} (check indentation and quoting)"


class YamlStream:
    """A YAML file whose top-level ``key`` may hold a long list, read one item at a time.

    Only the current item's nodes and lines are in memory: a 100,000-entry subscribers.yaml
    loads in seconds within tens of MB, where composing the whole node tree first took over
    a minute and 2 GB (bench/run.py). ``document`` holds the top level and, while an item is
    yielded, that item's lines; once ``items()`` is done, ``data[key]`` is an empty list if
    the list was streamed."""

    def __init__(
        self,
        path: Path,
        key: str | None = None,
        loader: type | None = None,
        text: str | None = None,
    ) -> None:
        self.document = YamlDocument(path, None)
        self.key = key
        self.loader = loader or _Loader  # yaml.SafeLoader gives the same, slower
        self.text = text  # (the file's, or a ``Piece``'s document; None: read the file)

    def items(self) -> Iterator[tuple[int, object]]:
        """Each item of the top-level ``key`` list, with its index; then the rest is read."""
        path = self.document.path
        text = read_text(path) if self.text is None else self.text
        loader = self.loader(text)
        try:
            yield from self._read(loader)
        except RecursionError as exc:
            raise ConfigError(
                f"{path.name}: values nested too deeply to read; flatten the nested lists"
            ) from exc
        except yaml.MarkedYAMLError as exc:
            raise ConfigError(_yaml_problem(path, exc)) from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path.name}: invalid YAML: {exc}") from exc
        finally:
            loader.dispose()

    def _read(self, loader: _Loader) -> Iterator[tuple[int, object]]:
        document = self.document
        loader.get_event()  # stream start
        if loader.check_event(yaml.StreamEndEvent):
            return
        loader.get_event()  # document start
        loader.anchors = {}
        if loader.check_event(yaml.MappingStartEvent) and self.key is not None:
            document.data = yield from self._top_mapping(loader)
        else:
            node = loader.compose_node(None, None)
            _collect_bounded(node, (), document, loader)
            document.data = loader.construct_document(node)
        loader.get_event()  # document end
        if not loader.check_event(yaml.StreamEndEvent):
            event = loader.get_event()
            raise yaml.composer.ComposerError(
                "expected a single document in the stream",
                None,
                "but found another document",
                event.start_mark,
            )

    def _top_mapping(self, loader: _Loader) -> Iterator[tuple[int, object]]:
        """The top-level mapping, streaming the items of ``key`` when it holds a list."""
        document, top = self.document, {}
        start = loader.get_event()
        document.lines[()] = start.start_mark.line + 1
        while not loader.check_event(yaml.MappingEndEvent):
            key_node = loader.compose_node(None, None)
            key = loader.construct_document(key_node)
            here = (str(key),)
            if key in top:
                document.duplicates.append((here, key_node.start_mark.line + 1))
            document.lines[here] = key_node.start_mark.line + 1
            if key == self.key and loader.check_event(yaml.SequenceStartEvent):
                loader.get_event()
                yield from self._list(loader, here)
                top[key] = []
            else:
                value_node = loader.compose_node(None, None)
                _collect_bounded(value_node, here, document, loader)
                document.lines[here] = key_node.start_mark.line + 1
                top[key] = loader.construct_document(value_node)
        loader.get_event()  # mapping end
        return top

    def _list(self, loader: _Loader, here: KeyPath) -> Iterator[tuple[int, object]]:
        document = self.document
        top_lines, top_raw = document.lines, document.raw
        index = 0
        fast = isinstance(loader, _Replaying)
        while not loader.check_event(yaml.SequenceEndEvent):
            at = (*here, index)
            document.lines, document.raw = dict(top_lines), dict(top_raw)
            value = _built(loader, at, document) if fast else _SLOW
            if value is _SLOW:
                document.lines, document.raw = dict(top_lines), dict(top_raw)
                node = loader.compose_node(None, None)
                _collect_bounded(node, at, document, loader)
                value = loader.construct_document(node)
            yield index, value
            index += 1
        loader.get_event()  # sequence end
        document.lines, document.raw = top_lines, top_raw


class _Replaying:
    """A loader that can be handed back events already read: the composer reads those first.

    ``_built`` reads a list item's events straight from the parser and gives up on the few
    things it leaves to PyYAML's composer; the events it read then go back (``put_back``)."""

    _replayed: list = []  # noqa: RUF012 (never mutated: put_back gives each loader its own)

    def put_back(self, events: list) -> object:
        """Read ``events`` again, first; returns _SLOW, for ``_built`` to give up with."""
        self._replayed = events[::-1]
        return _SLOW

    def check_event(self, *choices: type) -> bool:
        if self._replayed:
            return not choices or isinstance(self._replayed[-1], choices)
        return super().check_event(*choices)  # type: ignore[misc]

    def peek_event(self) -> yaml.Event:
        if self._replayed:
            return self._replayed[-1]
        return super().peek_event()  # type: ignore[misc]

    def get_event(self) -> yaml.Event:
        if self._replayed:
            return self._replayed.pop()
        return super().get_event()  # type: ignore[misc]


if yaml.__with_libyaml__:

    class _Loader(_Replaying, yaml.cyaml.CParser, Composer, SafeConstructor, Resolver):
        """libyaml's C parser makes the events (10x faster than the Python one); Python
        builds one list item at a time from them."""

        def __init__(self, text: str) -> None:
            yaml.cyaml.CParser.__init__(self, text)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

else:  # PyYAML built without libyaml: the same, slower

    class _Loader(_Replaying, yaml.SafeLoader):  # type: ignore[no-redef]
        """PyYAML's own parser, with the same fast building of list items."""


_SLOW = object()  # what ``_built`` gives when the composer must build the item
_KEY = object()  # an open mapping's next event is a key
_DEPTH_MAX = 100  # deeper than this, the composer builds it (and says when it is too deep)
_STR = "tag:yaml.org,2002:str"


def _built(loader: _Loader, here: KeyPath, document: YamlDocument) -> object:
    """The next value, built straight from the parser's events, with its lines and scalars
    as written recorded as ``_collect`` records them; or _SLOW, its events put back, if it
    has an anchor, an alias, a tag, a key that is not plain text, or deep nesting.

    Composing a node tree and constructing from it took three times as long as reading the
    events (a 20,000-entry file: 1.5 s against 0.4 s); profile files have none of what is
    left to the composer, except by mistake or on purpose, and those read the same."""
    read = super(_Replaying, loader).get_event  # the parser's own, not the replaying one
    resolve, first_chars = loader.resolve, loader.yaml_implicit_resolvers
    lines, raw, duplicates = document.lines, document.raw, []
    events: list = []
    stack: list[list] = []  # each open collection: [value, path, key, key text, key line, seen]
    while True:
        event = read()
        events.append(event)
        kind = type(event)
        if kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
            value = stack.pop()[0]
            if not stack:
                document.duplicates.extend(duplicates)
                return value
            continue
        if kind is yaml.AliasEvent or event.anchor is not None or event.tag is not None:
            return loader.put_back(events)
        frame = stack[-1] if stack else None
        if kind is yaml.ScalarEvent:
            text = event.value
            tag = _STR
            if event.implicit[0] and (not text or text[0] in first_chars or None in first_chars):
                tag = resolve(yaml.ScalarNode, text, event.implicit)
            if frame is not None and frame[2] is _KEY:
                if tag != _STR:  # a merge (<<), a number or a date as a key: rare
                    return loader.put_back(events)
                if text in frame[5]:
                    duplicates.append(((*frame[1], text), event.start_mark.line + 1))
                frame[5].add(text)
                frame[2:5] = text, text, event.start_mark.line + 1
                continue
            if tag == _STR:
                value = text
            else:
                node = yaml.ScalarNode(tag, text, event.start_mark, event.end_mark, event.style)
                value = loader.construct_object(node)
                loader.constructed_objects.clear()
        elif len(stack) >= _DEPTH_MAX or (frame is not None and frame[2] is _KEY):
            return loader.put_back(events)  # too deep, or a list or mapping as a key
        else:
            value = {} if kind is yaml.MappingStartEvent else []
        if frame is None:
            path, line = here, event.start_mark.line + 1
        elif frame[2] is None:  # an item of a list
            path, line = (*frame[1], len(frame[0])), event.start_mark.line + 1
            frame[0].append(value)
        else:  # a mapping's value: its line is its key's
            path, line = (*frame[1], frame[3]), frame[4]
            frame[0][frame[2]] = value
            frame[2] = _KEY
        lines[path] = line
        if kind is yaml.ScalarEvent:
            raw[path] = text
            if frame is None:
                return value
        else:
            key = _KEY if kind is yaml.MappingStartEvent else None
            stack.append([value, path, key, None, 0, set()])


def _collect_bounded(
    node: yaml.Node, here: KeyPath, document: YamlDocument, loader: _Loader
) -> None:
    """``_collect``, once ``node`` is known to expand to a bounded number of values."""
    if not loader.anchors:  # no anchor yet, so no alias: nothing can multiply (the usual case)
        _collect(node, here, document)
        return
    sizes = expanded_sizes(node)
    if sizes[id(node)][0] > EXPANSION_MAX:
        # Name the smallest value over the budget: the line where the multiplying starts.
        size, culprit = min(
            (entry for entry in sizes.values() if entry[0] > EXPANSION_MAX),
            key=lambda entry: (entry[0], -entry[1].start_mark.line),
        )
        where = f"{document.path.name}:{culprit.start_mark.line + 1}"
        if size == float("inf"):
            raise ConfigError(
                f"{where}: this value contains an alias of itself (*name inside &name), "
                "which never ends; remove the alias"
            )
        raise ConfigError(
            f"{where}: this value's aliases (*name) expand to more than {EXPANSION_MAX:,} "
            "values (aliases of aliases multiply); write the values out, or use fewer "
            "nested aliases"
        )
    _collect(node, here, document)


def expanded_sizes(node: yaml.Node) -> dict[int, tuple[float, yaml.Node]]:
    """For ``node`` and each node under it (by id): how many values it stands for with every
    alias expanded (infinite for an alias of itself), found in time linear in the nodes."""
    sizes: dict[int, tuple[float, yaml.Node]] = {}
    pending = [(node, False)]
    while pending:  # iterative, post-order: deep nesting must not exhaust the stack
        current, children_done = pending.pop()
        key = id(current)
        children = _children(current)
        if children_done:
            sizes[key] = (1 + sum(sizes[id(child)][0] for child in children), current)
            continue
        if key in sizes:
            continue
        sizes[key] = (float("inf"), current)  # in progress: a cycle back to it is infinite
        pending.append((current, True))
        pending.extend((child, False) for child in children if id(child) not in sizes)
    return sizes


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _collect(node: yaml.Node, here: KeyPath, document: YamlDocument) -> None:
    """Record the line of every key and item, scalars as written, and repeated keys."""
    lines, duplicates = document.lines, document.duplicates
    lines[here] = node.start_mark.line + 1
    if isinstance(node, yaml.ScalarNode):
        document.raw[here] = str(node.value)
    elif isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                duplicates.append(((*here, key), key_node.start_mark.line + 1))
            seen.add(key)
            _collect(value_node, (*here, key), document)
            lines[(*here, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _collect(item, (*here, index), document)


@dataclass(frozen=True, slots=True)
class Piece:
    """Consecutive items of a file's top-level list (``list_pieces``), readable on their own
    as ``document()``: the same values on the same lines as in the whole file."""

    key: str  # the top-level key holding the list
    line: int  # the 1-based line of its first item in the file
    text: str  # its items' lines, as written

    def document(self) -> str:
        """A YAML document of the key and these items only, each on its line of the file
        (blank lines stand for what comes before them: libyaml skips 300,000 in 5 ms)."""
        return f"{self.key}:\n" + "\n" * (self.line - 2) + self.text


# An anchor (&name; an alias, *name, needs one) may tie one item to another. (Written so
# that the scan is for "&" first: the lookbehind only runs where one is.)
_ANCHOR = re.compile(r"&(?<=[\s\[\]{},]&)[^\s\[\]{},]")
_QUIET = r"[ \t\r]*(?:#[^\n]*)?"  # what a blank or comment-only line holds


def list_pieces(text: str, key: str, size: int) -> list[Piece] | None:
    """The items of the list under ``key``, ``size`` at a time, as pieces that read on their
    own the same as in the whole file (``text``, a YAML file: its own processes may each
    read some); None unless the file is laid out as one plainly can be cut: ``key:`` alone
    at the top, then the items at one indentation, with nothing else at or left of it but
    comments, and no anchor or alias (which may tie one item to another).

    A cut is made only at a line that starts an item at the list's indentation. Inside a
    quoted or flow value such a line is text, and the piece before it ends with that value
    unfinished, so it does not read: the caller must read the file whole then (it does when
    any piece has a problem)."""
    header = re.match(rf"(?:{_QUIET}\n)*{re.escape(key)}:(?:[ \t\r]+#[^\n]*|[ \t\r]*)\n", text)
    if header is None or _other_breaks(text) or ("&" in text and _ANCHOR.search(text)):
        return None
    lines = text[header.end() :].split("\n")
    starts = _item_lines(lines)
    if not starts:
        return None
    pieces, line = [], text.count("\n", 0, header.end()) + 1
    for number in range(0, len(starts), size):
        first = starts[number]
        end = starts[number + size] if number + size < len(starts) else len(lines)
        pieces.append(Piece(key, line + first, "\n".join(lines[first:end])))
    return pieces


def _other_breaks(text: str) -> bool:
    """Whether ``text`` holds a line break of YAML that is not "\\n" (a lone CR, NEL, LS
    or PS): lines would then be counted apart from YAML's."""
    lone = text.count("\r") != text.count("\r\n")
    return lone or any(mark in text for mark in "\x85\u2028\u2029")


def _item_lines(lines: list[str]) -> list[int]:
    """The indexes of the ``lines`` (after a list's key) that start its items; none unless
    the first line that is not blank or a comment starts one, and every later one at its
    indentation starts one, none is left of it, and none is indented with a tab."""
    starts: list[int] = []
    indent = -1
    for number, line in enumerate(lines):
        content = line.lstrip(" ")
        bare = content.strip(" \t\r")
        if not bare or bare[0] == "#":
            continue
        depth = len(line) - len(content)
        if indent < 0:
            indent = depth
        item = content[0] == "-" and (len(content) == 1 or content[1] in " \t\r")
        if depth == indent and item:
            starts.append(number)
        elif depth <= indent or content[0] == "\t" or not starts:
            return []
    return starts


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def did_you_mean_address(address: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for a known address whose local part and domain are each
    close to ``address``'s (a shared domain alone is no resemblance), or an empty string."""
    local, _, domain = address.casefold().rpartition("@")
    best, best_score = "", 0.6
    for candidate in known:
        their_local, _, their_domain = candidate.casefold().rpartition("@")
        score = min(
            difflib.SequenceMatcher(None, local, their_local).ratio(),
            difflib.SequenceMatcher(None, domain, their_domain).ratio(),
        )
        if score >= best_score and (score > best_score or not best):
            best, best_score = candidate, score
    return f" (did you mean '{best}'?)" if best else ""
