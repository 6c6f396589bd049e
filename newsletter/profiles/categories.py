"""arXiv's category taxonomy (shipped as data in ``data/arxiv_categories.txt``): a profile's
categories are read in any case and kept as arXiv spells them (``cs.lg`` is ``cs.LG``, which
is what papers carry), and one that is not arXiv's is refused with the closest ones."""

from __future__ import annotations

import difflib
from functools import cache
from importlib.resources import files


@cache
def arxiv_categories() -> dict[str, str]:
    """Every archive and category, by its casefolded name."""
    text = files("newsletter.profiles").joinpath("data/arxiv_categories.txt").read_text("utf-8")
    names = [
        name for line in text.splitlines() if not line.startswith("#") for name in line.split()
    ]
    return {name.casefold(): name for name in names}


def canonical_category(name: str) -> str | None:
    """``name`` as arXiv spells it, or None when arXiv has no such archive or category."""
    return arxiv_categories().get(name.casefold())


def closest_categories(name: str) -> list[str]:
    """The arXiv categories ``name`` most likely means (at most two): the same subject in
    another archive (cs.ML: stat.ML), then those spelled most like it (cs.LGG: cs.LG)."""
    known = arxiv_categories()
    key = name.casefold()
    subject = key.partition(".")[2]
    same = [k for k in known if subject and k.partition(".")[2] == subject]
    close = difflib.get_close_matches(key, list(known), n=2, cutoff=0.8)
    return [known[k] for k in dict.fromkeys(same + close)][:2]
