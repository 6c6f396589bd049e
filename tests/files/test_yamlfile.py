"""The list items of a profile file, built straight from the parser's events, read exactly
as PyYAML's composer and constructor read them: values, lines, scalars as written, repeated
keys, and errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.errors import ConfigError
from newsletter.files.yamlfile import YamlStream, _Loader, list_pieces

TRICKY_ITEMS = [
    "{email: a@example.org, keywords: [x, 'b c', \"d\\te\"], max_papers: 3, active: no}",
    "email: a@example.org\n    keywords:\n      - x\n      - |\n        two\n        lines\n",
    "email:\n    name: ~\n    when: 2024-01-02\n    score: .inf\n    ratio: 0.5\n    n: 0x1f",
    "{email: a@example.org, email: b@example.org, keywords: [x], keywords: [y]}",
    "{1: one, 2.5: two, true: three, null: four}",  # keys that are not text
    "{? [a, b] : unhashable}",  # refused
    "{email: !!str 123, keywords: !!seq [x], n: !!int '7', f: !!float 1, s: !!set {a}}",
    "&anchor {email: a@example.org, keywords: [x]}",
    "{<<: *anchor, email: b@example.org}",
    "{email: c@example.org, keywords: *anchor}",
    "{email: d@example.org, value: =}",  # the value tag SafeConstructor refuses
    "{email: e@example.org, '<<': quoted merge, '=': quoted value}",
    "plain text item",
    "- nested\n    - [deeper, [deepest, {k: v}]]",
    "{}",
    "[]",
    "{email: f@example.org, keywords: [" + "[" * 120 + "x" + "]" * 120 + "]}",
    "{email: g@example.org,\n     keywords: [multi\n       line, plain]}",
    "{empty: , also: ''}",
]
REFUSED = {TRICKY_ITEMS[5], TRICKY_ITEMS[10]}  # by SafeConstructor: it stops the file there


def read(path: Path, loader: type) -> list:
    """Each item with the lines, scalars as written and repeated keys known while it is
    read; an error as its type and message."""
    stream = YamlStream(path, "subscribers", loader)
    document = stream.document
    found = []
    try:
        for index, item in stream.items():
            found.append((index, item, dict(document.lines), dict(document.raw)))
    except (ConfigError, yaml.YAMLError) as exc:
        found.append((type(exc).__name__, str(exc)))
    return [*found, list(document.duplicates), document.data]


class Composing(_Loader):
    """The fast loader, counting the items its composer had to build."""

    composed = 0

    def compose_node(self, parent: object, index: object) -> yaml.Node:
        if parent is None:
            type(self).composed += 1
        return super().compose_node(parent, index)


def items_file(tmp_path: Path, items: list[str]) -> Path:
    path = tmp_path / "subscribers.yaml"
    body = "".join(f"  - {item}\n" for item in items)
    path.write_text(f"# profiles\nsubscribers:\n{body}other: [1, 2]\n")
    return path


@pytest.mark.parametrize("item", TRICKY_ITEMS)
def test_each_tricky_item_reads_as_the_composer_reads_it(tmp_path: Path, item: str) -> None:
    """Anchors, aliases, merges, tags, keys that are not text, repeats, deep nesting:
    after a plain item, and before one, so that what is handed back is read in order."""
    path = items_file(tmp_path, ["{email: a@example.org, keywords: [x]}", item, "[tail]"])
    assert read(path, _Loader) == read(path, yaml.SafeLoader)


def test_all_the_tricky_items_in_one_file_read_the_same(tmp_path: Path) -> None:
    readable = [item for item in TRICKY_ITEMS if item not in REFUSED]
    path = items_file(tmp_path, readable)
    fast = read(path, _Loader)
    assert len(fast) == len(readable) + 2
    assert read(path, yaml.SafeLoader) == fast


def test_plain_items_are_built_without_the_composer(tmp_path: Path) -> None:
    """The fast path is taken (it is what makes a long file cheap), and given up only for
    what it leaves to the composer."""
    plain = TRICKY_ITEMS[:4]
    Composing.composed = 0
    read(items_file(tmp_path, plain), Composing)
    top_level = Composing.composed  # the keys and value of the file's top level
    Composing.composed = 0
    found = read(items_file(tmp_path, [*plain, "&a [x]", "*a"]), Composing)
    assert found[3][1] == {"email": "b@example.org", "keywords": ["y"]}
    assert found[5][1] == ["x"]
    assert Composing.composed - top_level == 2  # the anchored item and the alias


texts = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=12)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    texts,  # (YAML folds the other line breaks, NEL and the like: they would not read back)
    st.sampled_from(["yes", "No", "~", "2024-05-06", "1e3", "0o17", "<<", "=", "- x", "#"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner),
    max_leaves=20,
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.lists(values, max_size=5), flow=st.sampled_from([None, True, False]))
def test_generated_files_read_as_the_composer_reads_them(
    tmp_path: Path, items: list, flow: bool | None
) -> None:
    path = tmp_path / "subscribers.yaml"
    dumped = yaml.safe_dump({"subscribers": items}, default_flow_style=flow, allow_unicode=True)
    path.write_text(dumped)
    fast = read(path, _Loader)
    assert fast == read(path, yaml.SafeLoader)
    if items and not isinstance(fast[0][0], str):
        assert [item for _, item, *_ in fast[: len(items)]] == items


def test_values_nested_too_deeply_are_refused_with_the_fix(tmp_path: Path) -> None:
    # 900 levels: libyaml refuses 1,000; Python's composer recurses too deep before that
    deep = "{email: a@example.org, keywords: [" + "[" * 900 + "x" + "]" * 900 + "]}"
    path = items_file(tmp_path, [deep])
    with pytest.raises(ConfigError, match="nested too deeply to read; flatten the nested lists"):
        read_strictly(path)


def read_strictly(path: Path) -> list:
    return list(YamlStream(path, "subscribers").items())


def renumbered(by_path: dict, index: int, to: int) -> dict:
    """The entries of ``by_path`` under item ``index`` of the list, as if under item ``to``."""
    mine = ("subscribers", index)
    return {("subscribers", to, *path[2:]): v for path, v in by_path.items() if path[:2] == mine}


def whole_and_pieces(text: str, size: int) -> tuple[list, list | None]:
    """The items of ``text``'s list with their lines and scalars as written, read whole and
    read piece by piece (None when it cannot be cut; an error as its type)."""
    path = Path("subscribers.yaml")

    def read_text(text: str, first: int = 0) -> list:
        stream = YamlStream(path, "subscribers", text=text)
        document, found = stream.document, []
        for index, item in stream.items():
            lines = renumbered(document.lines, index, first + index)
            raw = renumbered(document.raw, index, first + index)
            found.append((item, lines, raw, list(document.duplicates)))
        return found

    whole = read_text(text)
    pieces = list_pieces(text, "subscribers", size)
    if pieces is None:
        return whole, None
    read: list = []
    try:
        for piece in pieces:
            read += read_text(piece.document(), len(read))
    except (ConfigError, yaml.YAMLError) as exc:
        return whole, [type(exc).__name__]
    return whole, read


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    items=st.lists(values, min_size=1, max_size=6),
    flow=st.sampled_from([None, True, False]),
    indent=st.sampled_from([2, 4]),
    size=st.integers(1, 3),
    crlf=st.booleans(),
    comments=st.lists(st.integers(0, 40), max_size=4),
)
def test_pieces_of_a_file_read_as_the_whole_file_reads(
    items: list, flow: bool | None, indent: int, size: int, crlf: bool, comments: list[int]
) -> None:
    """Cut into pieces of ``size`` items, a list reads the same, values and lines, as read
    whole; or a piece does not read at all (the caller then reads the file whole)."""
    dumped = yaml.safe_dump(
        {"subscribers": items}, default_flow_style=flow, allow_unicode=True, indent=indent
    )
    lines = dumped.split("\n")
    for at in comments:  # comment lines at the left edge, and blank ones, anywhere after the key
        lines.insert(1 + at % len(lines), "# a comment" if at % 2 else "")
    text = "\r\n".join(lines) if crlf else "\n".join(lines)
    whole, pieces = whole_and_pieces(text, size)
    assert pieces is None or pieces == whole or pieces in (["ConfigError"], ["ScannerError"])
    if not comments and pieces is not None and len(pieces) == len(whole):
        # (the file says what was dumped; a line put inside a multi-line value changes it)
        assert [item for item, *_ in pieces] == items


def test_a_plain_profile_file_is_cut_at_its_items_with_their_lines() -> None:
    text = (
        "# our readers\nsubscribers:   # all of them\n\n  - email: a@example.org\n"
        "    keywords: [x]\n# team B\n  - {email: b@example.org, keywords: [y]}\n"
        "  - email: c@example.org\n    name: |\n      two\n      lines\n    keywords: [z]\n"
    )
    pieces = list_pieces(text, "subscribers", 2)
    assert pieces is not None
    assert [piece.line for piece in pieces] == [4, 8]
    whole, read = whole_and_pieces(text, 2)
    assert read == whole and len(whole) == 3


@pytest.mark.parametrize(
    "text",
    [
        "subscribers: [{email: a@example.org}]\n",  # a flow list
        "subscribers:\n  - &a {email: a@example.org}\n  - *a\n",  # an anchor ties items
        "subscribers:\n  - {email: a@example.org}\nother: 1\n",  # more at the top level
        "subscribers:\n  - {email: a@example.org}\n other: 1\n",  # left of the items
        "subscribers:\n  - {email: a@example.org}\n  email: b@example.org\n",  # at them
        "subscribers:\n  - {email: a@example.org}\n\t- b\n",  # a tab as indentation
        "subscribers:\n  - {email: a@example.org}\r  - b\n",  # a lone CR breaks a line
        "subscribers:\n    stray\n  - {email: a@example.org}\n",  # before the first item
        "---\nsubscribers:\n  - {email: a@example.org}\n",  # a document marker
        "subscribers:\n",  # no items
    ],
)
def test_a_file_that_cannot_be_cut_plainly_is_read_whole(text: str) -> None:
    assert list_pieces(text, "subscribers", 1) is None


def test_a_cut_inside_a_quoted_value_leaves_a_piece_that_does_not_read() -> None:
    """A line that looks like an item inside a quoted value: its piece ends unfinished."""
    text = 'subscribers:\n  - {email: a@example.org, name: "one\n  - two"}\n  - b\n'
    whole, pieces = whole_and_pieces(text, 1)
    assert len(whole) == 2 and whole[0][0]["name"] == "one - two"
    assert pieces == ["ScannerError"] or pieces == ["ConfigError"]


def test_a_tab_used_for_indentation_is_named_with_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "subscribers.yaml"
    path.write_text("subscribers:\n  - email: a@example.org\n\tkeywords: [x]\n")
    with pytest.raises(ConfigError) as error:
        list(YamlStream(path, "subscribers").items())
    message = str(error.value)
    assert "cannot start any token" not in message
    assert "subscribers.yaml:3:1: tabs are not allowed for indentation" in message, message
    assert "spaces" in message
