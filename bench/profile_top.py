"""Top functions by self and inclusive samples in a py-spy ``--format raw`` profile.

    .venv/bin/python -m bench.profile_top bench/results/logs/streaminfer-alo.profile.txt [--n 30]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def main() -> None:
    """Print the tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--thread", default="", help="only stacks whose first frame has this")
    args = parser.parse_args()
    self_count: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in args.path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or (args.thread and args.thread not in stack.split(";", 1)[0]):
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        self_count[frames[-1]] += n
        for frame in set(frames):
            incl[frame] += n
    print(f"{total} samples")
    print("--- self ---")
    for frame, n in self_count.most_common(args.n):
        print(f"{n / total:6.1%}  {frame}")
    print("--- inclusive ---")
    for frame, n in incl.most_common(args.n):
        print(f"{n / total:6.1%}  {frame}")


if __name__ == "__main__":
    main()
