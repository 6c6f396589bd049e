"""Hostile and huge inputs, end to end: time and peak memory of `newsletter ingest` and
`newsletter send` (and `validate` for the YAML alias bomb), each in a fresh process.

Run:  python bench/long_inputs.py [--cases word,line,digest,bomb] [--word-mb 1] [--line-mb 50]
                                  [--digest-mb 200]

Cases:
- word: a card whose abstract is one "word" of N MB (no spaces), with prefix keywords;
- line: a card whose abstract is one N MB line of ordinary words;
- digest: an N MB capture of ordinary cards (about 1.3 KB each, every title distinct);
- bomb: the 427-byte "billion laughs" subscribers.yaml, through `validate`.

Peak memory is the child's resident set, sampled every 0.1 s (bench/measure.py).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import PeakMemory, child_env

ROOT = Path(__file__).resolve().parent.parent
PROFILES = """\
subscribers:
  - email: ada@example.org
    keywords: [pruning, "compress*", "knowledge distillation"]
  - email: grace@example.org
    keywords: [transformer, "zero-shot", "x*"]
"""
HEADER = "Daily Papers\n\nbyAK and the research community\n\nMar 12\n\n"
ABSTRACT = (
    "We study pruning of transformer networks and propose a compression method that keeps "
    "accuracy. Experiments on several benchmarks show consistent gains over strong baselines, "
    "and ablations explain where the gains come from. The method is simple to implement, "
    "costs little at inference time, and its code is released with the trained models. "
)
BOMB = """\
subscribers:
  - email: a@example.org
    keywords: [x]
    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
    i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def card(title: str, abstract: str) -> str:
    return f"12\n\n{title}\n\n{abstract}\n\n  • 3 authors\n\n·\n\nMar 11\n\n"


def write_case(folder: Path, case: str, args: argparse.Namespace) -> None:
    """The project of one case."""
    (folder / "digests").mkdir(parents=True)
    (folder / "config.yaml").write_text("sender: Research digest <digest@example.org>\n")
    (folder / "subscribers.yaml").write_text(BOMB if case == "bomb" else PROFILES)
    digest = folder / "digests" / "input.txt"
    with digest.open("w") as out:
        out.write(HEADER)
        out.write(card("A normal paper on pruning", ABSTRACT))
        if case == "word":
            out.write(card("One enormous word", "compress" + "x" * (args.word_mb << 20)))
        elif case == "line":
            words = "pruning of compressed transformers "
            out.write(card("One enormous line", words * ((args.line_mb << 20) // len(words))))
        elif case == "digest":
            for number in range((args.digest_mb << 20) // (len(ABSTRACT) * 4 + 80)):
                out.write(card(f"Paper number {number} on pruning", ABSTRACT * 4))


def run(folder: Path, *args: str) -> tuple[float, float, int]:
    """Seconds, peak MB and exit code of `newsletter ARGS` for the project in ``folder``."""
    command = [sys.executable, "-m", "newsletter", "--config", str(folder / "config.yaml")]
    env = child_env()
    start = time.perf_counter()
    child = subprocess.Popen(
        [*command, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT
    )
    with PeakMemory(child.pid) as memory:
        _, errors = child.communicate()
    seconds = time.perf_counter() - start
    if child.returncode not in (0, 1):
        print(errors.decode()[-1500:], file=sys.stderr)
    return seconds, memory.peak_mb, child.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="word,line,digest,bomb")
    parser.add_argument("--word-mb", type=int, default=1)
    parser.add_argument("--line-mb", type=int, default=50)
    parser.add_argument("--digest-mb", type=int, default=200)
    args = parser.parse_args()
    sizes = {"word": f"{args.word_mb} MB word", "line": f"{args.line_mb} MB line"}
    sizes |= {"digest": f"{args.digest_mb} MB digest", "bomb": f"{len(BOMB)}-byte alias bomb"}
    for case in args.cases.split(","):
        with tempfile.TemporaryDirectory() as folder:
            project = Path(folder)
            write_case(project, case, args)
            steps = [("validate",)] if case == "bomb" else [("ingest",), ("send", "--now")]
            for step in steps:
                seconds, peak, code = run(project, *step)
                print(
                    f"{sizes[case]:>22}: {' '.join(step):<10} {seconds:7.2f} s, "
                    f"peak {peak:6.0f} MB, exit {code}"
                )


if __name__ == "__main__":
    main()
