"""Suggestions from feedback: three papers marked not relevant that came only through one
keyword get a change that would have kept them out, counted on the reader's past papers."""

from __future__ import annotations

from newsletter.config.load import load_config
from newsletter.config.settings import MatchSettings
from newsletter.matching.matcher import Matcher
from newsletter.profiles.edit import edit_profile, read_profile
from newsletter.profiles.suggest import suggest
from tests.matching_helpers import NOW, paper, subscriber

LIKED = [
    ("Tumour segmentation in brain MRI", "Medical image segmentation of gliomas in MRI scans."),
    ("Organ segmentation for CT", "Medical segmentation of abdominal organs in clinical CT."),
]
OFF_TOPIC = [
    ("Lane segmentation for driving", "Road lane segmentation from dashcam video for driving."),
    ("Road scene segmentation", "Urban road segmentation for autonomous driving cars."),
    ("Satellite segmentation", "Land cover segmentation of satellite images near road networks."),
]
OTHER = [("Segmentation without labels", "Segmentation of everyday photos without labels.")]


def past_of(reader, rows):
    papers = [paper(t, a, pid=f"p{i}") for i, (t, a) in enumerate(rows)]
    (selection,) = Matcher([reader], MatchSettings()).select(papers, NOW)
    return selection.matches


def test_three_papers_marked_through_one_keyword_get_an_exclusion_the_liked_ones_lack():
    reader = subscriber("segmentation", "tumour")
    past = past_of(reader, LIKED + OFF_TOPIC + OTHER)
    found = suggest(past, less=["p2", "p3", "p4"], more=["p0", "p1"])
    assert found and found[0].change == "exclude" and found[0].value == "road"
    best = found[0]
    assert (best.marked, best.removes_marked, best.removes_liked) == (3, 3, 0)
    assert (best.removes_past, best.past) == (3, 6)
    assert best.text == (
        "3 papers you marked not relevant came only through “segmentation”: add “road” to your "
        "exclusions. Of your last 6 papers it would have kept out 3, 3 of the 3 you marked, "
        "and none you liked."
    )
    phrase = next(s for s in found if s.change == "phrase")
    assert phrase.value == "medical segmentation" and phrase.removes_marked == 3
    assert phrase.removes_past == 4  # (the unlabelled photo paper goes too: it is said)


def test_fewer_than_three_or_papers_of_several_keywords_suggest_nothing():
    reader = subscriber("segmentation", "road")
    past = past_of(reader, LIKED + OFF_TOPIC)
    # Each came through "segmentation" and "road": not one keyword's doing.
    assert suggest(past, less=["p2", "p3", "p4"], more=["p0", "p1"]) == ()
    only = past_of(subscriber("segmentation"), LIKED + OFF_TOPIC)
    assert suggest(only, less=["p2", "p3"], more=["p0"]) == ()
    assert suggest(only, less=["p2", "p3", "p4"], more=["p0"])  # (three: a suggestion)


def test_no_change_that_would_keep_out_a_liked_paper_is_offered():
    reader = subscriber("segmentation")
    rows = LIKED + OFF_TOPIC + [("Cell segmentation", "Cell segmentation in microscopy.")]
    past = past_of(reader, rows)
    found = suggest(past, less=["p2", "p3", "p4"], more=["p0", "p1", "p5"])
    assert found and all(s.removes_liked == 0 for s in found)
    # "medical segmentation" would have kept out the cell paper the reader liked.
    assert "medical segmentation" not in {s.value for s in found}
    assert "road" in {s.value for s in found}


PROFILE_FILE = """\
# Profiles: the operator's notes stay.
subscribers:
  - email: ada@example.org   # Ada, medical imaging
    keywords: [segmentation, tumour]   # what she reads
    max_papers: 5
"""


def test_a_suggestion_is_applied_through_the_profile_writer_keeping_the_comments(project):
    (project / "subscribers.yaml").write_text(PROFILE_FILE)
    config = load_config(project / "config.yaml")
    reader = read_profile(config, "ada@example.org")
    past = past_of(reader, LIKED + OFF_TOPIC + OTHER)
    found = suggest(past, less=["p2", "p3", "p4"], more=["p0", "p1"])
    exclude = next(s for s in found if s.change == "exclude")
    edited = edit_profile(config, "ada@example.org", exclude.change_to_make())
    assert [k.text for k in edited.exclude] == ["road"]
    text = config.subscribers.read_text()
    assert "# Profiles: the operator's notes stay." in text and "# what she reads" in text
    assert "    exclude: [road]\n" in text
    phrase = next(s for s in found if s.change == "phrase")
    edited = edit_profile(config, "ada@example.org", phrase.change_to_make())
    assert [k.text for k in edited.keywords] == ["tumour", phrase.value]
    # Applied, the suggestions would have kept the marked papers out of the next digest.
    (again,) = Matcher([edited], MatchSettings()).select(
        [paper(t, a, pid=f"p{i}") for i, (t, a) in enumerate(LIKED + OFF_TOPIC)], NOW
    )
    assert {m.paper.id for m in again.matches} == {"p0", "p1"}
