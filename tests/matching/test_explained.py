"""What matched, kept with a digest: read back as it was, by paper id, or not at all."""

from __future__ import annotations

from newsletter.matching.explained import explained, explanations, pack, unpack
from newsletter.matching.matcher import Matcher
from tests.render_helpers import NOW, ada, fixed_papers, project_config


def test_explanations_come_back_as_they_were_kept_by_paper_id(tmp_path) -> None:
    config = project_config(tmp_path)
    papers = fixed_papers()
    (selection,) = Matcher([ada()], config.matching).select(papers, NOW)
    matches = selection.matches
    assert len(matches) >= 2 and any(m.title_spans for m in matches)
    kept = explanations(matches)
    ids = [m.paper.id for m in matches]
    assert explained(ids, [m.paper for m in matches], kept) == matches
    # One paper no longer stored: the others keep their own explanation.
    assert explained(ids, [matches[1].paper], kept) == (matches[1],)


def test_nothing_kept_or_a_mismatch_gives_none(tmp_path) -> None:
    papers = fixed_papers()[:1]
    assert explained([papers[0].id], papers, None) is None  # (a digest of 0.1)
    assert explained([papers[0].id], papers, "not json") is None
    assert explained([papers[0].id], papers, "[]") is None
    assert explained([papers[0].id], papers, '[["x"]]') is None


def test_explanations_are_kept_packed_and_a_damaged_pack_explains_nothing() -> None:
    text = '[[3,["pruning"],[],[[0,7]],[],[]]]'
    assert unpack(pack(text)) == text and len(pack(text * 20)) < len(text * 20) / 4
    assert unpack(b"not zlib") is None and unpack(None) is None
