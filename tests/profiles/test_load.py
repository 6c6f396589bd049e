"""The profile file: defaults, and every mistake reported at once with its line."""

from __future__ import annotations

import os
from datetime import time
from pathlib import Path

import pytest

from newsletter.config.load import load_config
from newsletter.errors import ConfigError
from newsletter.files.yamlfile import YamlStream
from newsletter.profiles.load import ProfileError, load_profiles
from tests.helpers import ROOT
from tests.profile_samples import EXPECTED, TEN_MISTAKES


def write_project(tmp_path: Path, profiles: str, config: str = "") -> Path:
    (tmp_path / "digests").mkdir(exist_ok=True)
    (tmp_path / "config.yaml").write_text(config)
    (tmp_path / "subscribers.yaml").write_text(profiles)
    return tmp_path / "config.yaml"


def load(tmp_path: Path, profiles: str, config: str = ""):
    settings = load_config(write_project(tmp_path, profiles, config))
    return load_profiles(settings.subscribers, settings.schedule, settings.matching)


def test_every_mistake_is_reported_at_once_with_its_line(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as caught:
        load(tmp_path, TEN_MISTAKES)
    problems = caught.value.problems
    assert len(problems) == len(EXPECTED), "\n".join(problems)
    for problem, (line, text) in zip(problems, EXPECTED, strict=True):
        assert problem.startswith(f"subscribers.yaml:{line}: "), problem
        assert text in problem, problem


def test_defaults_and_config_defaults(tmp_path: Path) -> None:
    profiles = load(
        tmp_path,
        "subscribers:\n  - email: Ada@Example.ORG\n    keywords: [x]\n",
        "schedule:\n  send_at: '06:30'\n  timezone: Europe/Paris\n",
    )
    (ada,) = profiles.subscribers
    assert ada.email == "Ada@example.org"
    assert (ada.max_papers, ada.min_score, ada.frequency, ada.day, ada.active) == (
        10,
        1,
        "daily",
        None,
        True,
    )
    assert (ada.send_at, ada.timezone) == (time(6, 30), "Europe/Paris")
    assert profiles.find("ADA@example.org") is ada


def test_all_options_are_read(tmp_path: Path) -> None:
    text = """\
subscribers:
  - email: grace@example.org
    name: Grace Hopper
    keywords: [compilers, "zero-shot"]
    exclude: [survey]
    require: [code]
    max_papers: 3
    min_score: 2
    frequency: Weekly
    day: Fri
    send_at: 7:05
    timezone: America/New_York
    active: false
"""
    (grace,) = load(tmp_path, text).subscribers
    assert grace.name == "Grace Hopper"
    assert [k.text for k in grace.keywords] == ["compilers", "zero-shot"]
    assert [k.text for k in grace.exclude] == ["survey"]
    assert [k.text for k in grace.require] == ["code"]
    assert (grace.max_papers, grace.min_score) == (3, 2)
    assert (grace.frequency, grace.day) == ("weekly", "friday")
    assert grace.send_at == time(7, 5)  # unquoted 7:05 is a YAML number; read as written
    assert grace.timezone == "America/New_York"
    assert not grace.active and not grace.receives


def test_categories_are_read_in_any_case_and_kept_as_arxiv_spells_them(tmp_path: Path) -> None:
    text = """\
subscribers:
  - email: grace@example.org
    keywords: [x]
    categories: [cs.lg, CS.CV, Stat, cond-mat.STAT-MECH, cs.LG]
"""
    (grace,) = load(tmp_path, text).subscribers
    assert grace.categories == ("cs.LG", "cs.CV", "stat", "cond-mat.stat-mech")


def test_following_authors_needs_no_keywords_and_categories_filter(tmp_path: Path) -> None:
    text = """\
subscribers:
  - email: grace@example.org
    authors: ["Yann LeCun", Y. Bengio]
    categories: [cs.LG, stat]
"""
    (grace,) = load(tmp_path, text).subscribers
    assert grace.keywords == () and grace.authors == ("Yann LeCun", "Y. Bengio")
    assert grace.categories == ("cs.LG", "stat")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("keywords: [GAN, gan]", "'gan' repeats 'GAN' in 'keywords'"),
        ("keywords: [GAN]\n    exclude: [GAN]", "'GAN' is excluded but also wanted"),
        ("keywords: [a]\n    min_score: 5", "'min_score' 5 can never be reached"),
        ("keywords: pruning", "'keywords' must be a list"),
        ("keywords: [a]\n    day: funday", "'day' cannot be 'funday' (did you mean 'sunday'?)"),
        ("keywords: [a]\n    keywords: [b]", "'keywords' is set twice"),
        ("keywords: [a]\n    max_papers: true", "'max_papers' must be a whole number"),
        ("keywords: [a]\n    name: [x]", "'name' must be text"),
        (
            'keywords: [a]\n    name: "Ada\\0 Lovelace"',
            "subscribers.yaml:4: 'name' must be one line of plain text, but it holds the "
            "control character U+0000",
        ),
        ('keywords: [a]\n    name: "Ada\\u202e"', "control character U+202E"),
        ('keywords: ["prun\\x1bing"]', "subscribers.yaml:3: bad keyword 'prun\\x1bing' holds"),
        ("authors: [LeCun]", "subscribers.yaml:3: author 'LeCun': give a first name"),
        ("authors: [Yann LeCun, yann lecun]", "'yann lecun' repeats 'Yann LeCun'"),
        ("authors: Yann LeCun", "'authors' must be a list"),
        ("authors: [2024]", "each of 'authors' must be text"),
        ("keywords: [a]\n    categories: [cs.LGG]", "subscribers.yaml:4: 'cs.LGG' is not an arXiv"),
        ("keywords: [a]\n    categories: [cs.LGG]", "(did you mean 'cs.LG'"),
        ("keywords: [a]\n    categories: [cs.ML]", "not an arXiv category"),
        ("keywords: [a]\n    categories: [c.s.LG]", "not an arXiv category"),
        ("categories: [cs.LG]", "missing 'keywords'"),
    ],
)
def test_single_mistakes(tmp_path: Path, entry: str, message: str) -> None:
    with pytest.raises(ProfileError) as caught:
        load(tmp_path, f"subscribers:\n  - email: a@example.org\n    {entry}\n")
    assert any(message in p for p in caught.value.problems), caught.value.problems


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "subscribers:\n  - email: a@example.org\n    keywords: [a\n",
            "subscribers.yaml:4: invalid YAML",
        ),
        ("people:\n  - email: a@example.org\n", "must start with 'subscribers:'"),
        ("subscribers: ada\n", "'subscribers' must be a list"),
        ("subscribers:\n  - just a string\n", "each subscriber must be a mapping"),
    ],
)
def test_file_shape_mistakes(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(Exception) as caught:
        load(tmp_path, text)
    assert message in str(caught.value)


def test_nobody_must_be_said_an_emptied_file_is_an_error(tmp_path: Path) -> None:
    """Issue 13, 5: an emptied file would silently stop all mail."""
    assert load(tmp_path, "subscribers: []\n").subscribers == ()
    for text, message in [
        ("", "subscribers.yaml:1: the file is empty"),
        ("# all gone\n", "subscribers.yaml:1: the file is empty"),
        ("subscribers:\n", "subscribers.yaml:1: 'subscribers' has no entries"),
    ]:
        with pytest.raises(ProfileError) as caught:
            load(tmp_path, text)
        assert caught.value.problems[0].startswith(message)
        assert "subscribers: []" in caught.value.problems[0]


def test_shipped_profiles_are_valid() -> None:
    config = load_config(ROOT / "config.yaml")
    profiles = load_profiles(config.subscribers, config.schedule, config.matching)
    assert len(profiles.subscribers) >= 2


def test_a_long_file_streams_with_lines_right_to_the_end(tmp_path: Path) -> None:
    """Entries are read one at a time; problems deep in the file still get their own lines,
    and repeated keys and top-level mistakes after the list are still found."""
    entries = "".join(f"  - email: r{i}@example.org\n    keywords: [k{i}]\n" for i in range(2000))
    text = (
        "subscribers:\n"
        + entries
        + "  - email: late@example.org\n    keywords: [x]\n    max_papers: 0\n"
        + "  - email: twice@example.org\n    keywords: [x]\n    keywords: [y]\n"
        + "  - email: r7@example.org\n    keywords: [x]\n"
        + "extra: 1\n"
    )
    with pytest.raises(ProfileError) as caught:
        load(tmp_path, text)
    first = 2 + 2 * 2000  # line of the first entry after the generated ones
    assert caught.value.problems == [
        f"subscribers.yaml:{first + 2}: 'max_papers' must be from 1 to 100, not 0",
        f"subscribers.yaml:{first + 5}: 'keywords' is set twice in the same entry; keep one",
        f"subscribers.yaml:{first + 6}: 'r7@example.org' is already used on line 16; "
        "each address may appear once (merge the two entries)",
        f"subscribers.yaml:{first + 8}: unknown key 'extra' (known keys: subscribers)",
    ]


def test_anchors_aliases_and_a_second_document(tmp_path: Path) -> None:
    text = """\
defaults: &common {keywords: [pruning], max_papers: 3}
subscribers:
  - email: a@example.org
    <<: *common
  - email: b@example.org
    keywords: [x]
"""
    with pytest.raises(ProfileError) as caught:
        load(tmp_path, text)
    assert caught.value.problems == [
        "subscribers.yaml:1: unknown key 'defaults' (known keys: subscribers)"
    ]
    listed = "people: &all\n  - email: a@example.org\n    keywords: [x]\nsubscribers: *all\n"
    with pytest.raises(ProfileError, match="unknown key 'people'"):
        load(tmp_path, listed)
    good = "subscribers:\n  - &a {email: a@example.org, keywords: [x], max_papers: 2}\n"
    good += "  - {<<: *a, email: b@example.org}\n"
    a, b = load(tmp_path, good).subscribers
    assert (a.max_papers, b.max_papers, b.email) == (2, 2, "b@example.org")
    with pytest.raises(ConfigError, match="2: invalid YAML: but found another document"):
        load(tmp_path, "subscribers:\n---\nsubscribers:\n")


def test_libyaml_and_pure_python_parsers_read_the_same(tmp_path: Path) -> None:
    """The fast path (libyaml events) and PyYAML's own parser give equal items and lines."""
    import yaml

    from newsletter.files.yamlfile import YamlStream

    path = tmp_path / "subscribers.yaml"
    path.write_text(TEN_MISTAKES + "  - {email: z@example.org, keywords: [a, 'b c'], day: 1}\n")

    def read(loader: type | None) -> list:
        stream = YamlStream(path, "subscribers", loader)
        return [
            (index, entry, dict(stream.document.lines), dict(stream.document.raw))
            for index, entry in stream.items()
        ]

    fast = read(None)
    assert len(fast) == 6 and fast[-1][2][("subscribers", 5, "keywords", 1)] == 19
    assert read(yaml.SafeLoader) == fast


@pytest.mark.parametrize(
    ("written", "read_as"),
    [("NO", "false"), ("yes", "true"), ("on", "true"), ("2024", "a number"), ("3.5", "a number")],
)
def test_a_keyword_yaml_turned_into_a_boolean_or_number_must_be_quoted(
    tmp_path: Path, written: str, read_as: str
) -> None:
    """`keywords: [NO]` is read by YAML as false: say so and how to fix it, with the line."""
    with pytest.raises(ProfileError) as caught:
        load(tmp_path, f"subscribers:\n  - email: a@example.org\n    keywords: [x, {written}]\n")
    (problem,) = caught.value.problems
    assert problem.startswith("subscribers.yaml:3: ")
    assert f"'{written}'" in problem and read_as in problem
    assert f'"{written}"' in problem  # the fix: quote it


def alias_bomb(levels: int = 9) -> str:
    """The classic "billion laughs": each level is nine aliases of the one before."""
    lines = ['    lol0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels):
        refs = ",".join([f"*l{level - 1}"] * 9)
        lines.append(f"    lol{level}: &l{level} [{refs}]")
    return "subscribers:\n  - email: a@example.org\n    keywords: [x]\n" + "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_with_its_line_not_expanded(tmp_path: Path) -> None:
    """The line named is the first value over the budget: lol6, 9**7 values."""
    bomb = alias_bomb()
    assert len(bomb) < 600  # a few hundred bytes that stand for 9**9 values
    with pytest.raises(ConfigError, match=r"subscribers.yaml:10: .*expand to more than 1,000,000"):
        load(tmp_path, bomb)
    recursive = "subscribers:\n  - email: a@example.org\n    keywords: &k [x, *k]\n"
    with pytest.raises(ConfigError, match=r"subscribers.yaml:3: .*alias of itself"):
        load(tmp_path, recursive)
    config_bomb = "x:\n" + alias_bomb().split("keywords: [x]\n")[1]
    with pytest.raises(ConfigError, match=r"config.yaml:8: .*expand to more than"):
        load(tmp_path, "subscribers: []\n", config=config_bomb)
    # Aliases that stay small are fine, shared keyword lists included.
    shared = "subscribers:\n  - {email: a@example.org, keywords: &ml [llm, rlhf]}\n"
    shared += "  - {email: b@example.org, keywords: *ml}\n"
    assert [s.keywords for s in load(tmp_path, shared).subscribers][1][1].text == "rlhf"


def test_the_daemon_keeps_running_the_last_good_profiles_after_a_bomb_edit(tmp_path: Path) -> None:
    from newsletter.schedule.daemon import Daemon
    from newsletter.world import World

    config = write_project(tmp_path, "subscribers:\n  - email: a@example.org\n    keywords: [x]\n")
    daemon = Daemon(config, World(environ={}))
    assert daemon.reload()
    (tmp_path / "subscribers.yaml").write_text(alias_bomb())
    os.utime(tmp_path / "subscribers.yaml", (1, 1))  # a changed stamp, whatever the clock
    assert not daemon.reload()
    assert [s.email for s in daemon.loaded.profiles.subscribers] == ["a@example.org"]


def many_entries(count: int, anchors: bool = True) -> str:
    """``count`` sound entries in the shapes people write them (with ``anchors``, an alias
    among them; without, comments and a quoted value across lines)."""
    entries = ["subscribers:\n  - &first {email: a0@example.org, keywords: [pruning, 'LLM*']}\n"]
    if not anchors:
        entries[0] = entries[0].replace("&first ", "")
    for i in range(1, count):
        if not anchors and i % 3 == 0:
            entries.append(f"# team {i}\n  - {{email: a{i}@example.org, keywords: [x*, 'R&D']\n")
            entries.append(f"     , name: 'two\n       lines', max_papers: {1 + i % 9}}}\n")
        elif i % 3 == 0:
            papers = 1 + i % 9
            entries.append(f"  - {{<<: *first, email: a{i}@example.org, max_papers: {papers}}}\n")
        else:
            entries.append(
                f"  - email: A{i}@Example.org\n    keywords: [graph {i % 7}, 'zero-shot']\n"
                f"    authors: [Yann LeCun]\n    categories: [cs.LG]\n    exclude: [medical]\n"
                f"    frequency: weekly\n    day: tue\n    send_at: '07:{i % 60:02d}'\n"
            )
    return "".join(entries)


@pytest.mark.parametrize(
    "tail",
    [
        "",  # all sound
        TEN_MISTAKES.removeprefix("subscribers:\n"),  # mistakes after two chunks
        "  - email: a5@example.org\n    keywords: [again]\n",  # an address two chunks back
        "  - {email: z@example.org, keywords: [x], keywords: [y]}\n",  # a key set twice
        "defaults: {max_papers: 3}\n",  # a mistake of the file's top level
    ],
)
@pytest.mark.parametrize("anchors", [True, False], ids=["read-here", "read-in-pieces"])
def test_entries_checked_in_the_workers_read_the_same(
    tmp_path: Path, tail: str, anchors: bool
) -> None:
    """Checked on worker processes, a file gives the same profiles, or the same problems,
    each with its line, as read in one process: its entries read here and checked there
    (a file with anchors), or read and checked there in pieces."""
    from newsletter.files.yamlfile import list_pieces
    from newsletter.profiles.load import SPREAD_CHUNK
    from newsletter.send.produce import RenderPool

    text = many_entries(2 * SPREAD_CHUNK + 100, anchors) + tail
    cut = list_pieces(text, "subscribers", SPREAD_CHUNK)
    assert (cut is None) == (anchors or tail.startswith("defaults"))
    config = load_config(write_project(tmp_path, text))

    def outcome(spread) -> object:
        try:
            return load_profiles(config.subscribers, config.schedule, config.matching, spread)
        except ProfileError as exc:
            return exc.problems

    alone = outcome(None)
    with RenderPool(2) as pool:
        assert outcome(pool.map_ahead) == alone
    if tail:
        assert isinstance(alone, list) and len(alone) >= 1
    else:
        assert len(alone.subscribers) == 2 * SPREAD_CHUNK + 100
        third = alone.subscribers[3]
        assert third.max_papers == 4 and third.line == (19 if anchors else 20)


def test_a_cut_inside_a_quoted_value_falls_back_to_reading_the_file_whole(
    tmp_path: Path,
) -> None:
    """The line where a piece would end is inside a quoted value (it looks like an item):
    that piece does not read, so the file is read whole, and gives what it gives read so."""
    from newsletter.files.yamlfile import list_pieces
    from newsletter.profiles.load import SPREAD_CHUNK

    text = many_entries(SPREAD_CHUNK - 1, anchors=False)
    text += '  - {email: q@example.org, keywords: [x], name: "one\n  - two"}\n'
    text += "  - {email: r@example.org, keywords: [y]}\n"
    config = load_config(write_project(tmp_path, text))
    pieces = list_pieces(text, "subscribers", SPREAD_CHUNK)
    assert pieces is not None and len(pieces) == 2
    with pytest.raises(ConfigError, match="invalid YAML"):
        list(YamlStream(config.subscribers, "subscribers", text=pieces[0].document()).items())
    in_turn = load_profiles(
        config.subscribers, config.schedule, config.matching, lambda work, jobs: map(work, jobs)
    )
    assert in_turn == load_profiles(config.subscribers, config.schedule, config.matching)
    assert in_turn.subscribers[-2].name == "one - two"
    assert in_turn.subscribers[-1].email == "r@example.org"


def test_the_guess_of_a_files_length_counts_its_addresses(tmp_path: Path) -> None:
    """What decides whether a send starts its workers before reading the file."""
    from newsletter.profiles.load import entries_guess

    path = tmp_path / "subscribers.yaml"
    path.write_text(many_entries(40))
    assert entries_guess(path) == 40
    assert entries_guess(tmp_path / "missing.yaml") == 0
