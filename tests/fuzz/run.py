"""Run one fuzz target under atheris (coverage-guided, libFuzzer):

    python -m tests.fuzz.run TARGET [--seconds S] [--runs N] [--keep]

TARGET is one of tests/fuzz/targets.py's (or ``planted``, the test-only copy with a bug).
Seeds come from tests/fuzz/corpus/TARGET/. By default new inputs go to a temporary
directory and a crash to tests/fuzz/crashers/TARGET/crash-*; with ``--keep`` new inputs
are added to the corpus too (commit what is worth keeping). Memory is capped
(``-rss_limit_mb``, default 1024): a target that grows past it is a crash. Exit 0: the
budget ran out with no crash.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    """Parse the arguments and fuzz (does not return: libFuzzer exits the process)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target")
    parser.add_argument("--seconds", type=int, default=60, help="time budget")
    parser.add_argument("--runs", type=int, default=-1, help="input budget (-1: no cap)")
    parser.add_argument("--rss-mb", type=int, default=1024, help="memory cap, MB")
    parser.add_argument("--keep", action="store_true", help="add new inputs to the corpus")
    parser.add_argument("--seed", type=int, default=0,
                        help="libFuzzer's random seed (0: a new one each run)")
    parser.add_argument("--crashers", type=Path, default=None,
                        help="where a crash is written (default tests/fuzz/crashers/TARGET)")
    args = parser.parse_args()

    import atheris  # type: ignore[import-untyped]  # ships no type information

    with atheris.instrument_imports(include=["processors", "schemas", "stream", "tests.fuzz"]):
        from tests.fuzz.planted import planted
        from tests.fuzz.targets import TARGETS

    targets = {**TARGETS, "planted": planted}
    if args.target not in targets:
        parser.error(f"unknown target {args.target!r}: one of {', '.join(targets)}")
    fn = targets[args.target]
    seeds = HERE / "corpus" / ("feature_value" if args.target == "planted" else args.target)
    crashers = args.crashers or HERE / "crashers" / args.target
    crashers.mkdir(parents=True, exist_ok=True)
    out = seeds if args.keep else Path(tempfile.mkdtemp(prefix=f"fuzz-{args.target}-"))
    dirs = [str(out)] if args.keep else [str(out), str(seeds)]

    def one(data: bytes) -> None:
        fn(data)

    atheris.Setup([sys.argv[0], *dirs, f"-max_total_time={args.seconds}",
                   f"-runs={args.runs}", f"-rss_limit_mb={args.rss_mb}",
                   f"-artifact_prefix={crashers}/", f"-seed={args.seed}",
                   "-print_final_stats=1"], one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
