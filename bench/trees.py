"""Two trees side by side: one measurement alternating between an earlier commit and this
checkout, each run in a fresh interpreter importing its own tree, in both orders (a host
that drifts slower over a sequence makes whichever runs second look slower).

Run:  python bench/trees.py --before REV [--pairs 4] [--point scale outbox warm]

Each point is a function of the trees' own bench/ (``scale.measure``,
``pipeline.measure``), so REV must have them. Prints each run, the means and after/before.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from run import in_child  # noqa: E402

POINTS = {
    "scale": ("scale.measure", {"subscribers": 10_000, "papers": 1_000}),
    "outbox": ("pipeline.measure", {"subscribers": 10_000, "papers": 100, "where": "outbox"}),
    "warm": (
        "pipeline.measure",
        {"subscribers": 5_000, "papers": 1_000, "where": "outbox", "warm": True},
    ),
}


def seconds(tree: Path, call: str, kwargs: dict) -> float:
    """``call`` with ``kwargs`` in a fresh interpreter that imports ``tree``; its seconds."""
    return float(in_child(call, tree=tree, **kwargs)["seconds"])


def alternate(trees: dict[str, Path], call: str, kwargs: dict, pairs: int) -> dict[str, list]:
    """``pairs`` runs of each tree, before first for half the pairs and after first for the
    other half."""
    runs: dict[str, list[float]] = {name: [] for name in trees}
    for pair in range(pairs):
        order = ["before", "after"] if pair % 2 == 0 else ["after", "before"]
        for name in order:
            runs[name].append(seconds(trees[name], call, kwargs))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the earlier commit")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--point", nargs="+", choices=sorted(POINTS), default=sorted(POINTS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trees-") as scratch:
        before = Path(scratch) / "before"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "-q", str(before), args.before],
            cwd=ROOT,
            check=True,
        )
        try:
            trees = {"before": before, "after": ROOT}
            print(
                "| point | before runs (s) | after runs (s) | before / after mean | after/before |"
            )
            print("|---|---|---|---:|---:|")
            for name in args.point:
                call, kwargs = POINTS[name]
                runs = alternate(trees, call, kwargs, args.pairs)
                b, a = statistics.mean(runs["before"]), statistics.mean(runs["after"])
                each = {k: ", ".join(f"{v:.2f}" for v in runs[k]) for k in runs}
                row = f"| {name} | {each['before']} | {each['after']} | {b:.2f} / {a:.2f} |"
                print(f"{row} {a / b:.2f} |", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT)


if __name__ == "__main__":
    main()
