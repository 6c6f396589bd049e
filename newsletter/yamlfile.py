"""Safe YAML loading that remembers the line of every value, for errors people can act on."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from newsletter.errors import ConfigError

KeyPath = tuple[str | int, ...]


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
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc})") from exc
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(
            f"{path.name}:{line}: invalid YAML: {problem} (check indentation and quoting)"
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path.name}: invalid YAML: {exc}") from exc
    finally:
        loader.dispose()
    document = YamlDocument(path, data)
    if node is not None:
        _collect(node, (), document)
    return document


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


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
