"""Fuzzing in the suite: every target runs under atheris for a bounded budget with no
crash; a planted bug (a test-only copy of a target) is found, so the harness is shown to
work; every kept corpus and crasher file is classified by its target (regressions).
The longer run: `bash tests/fuzz/run.sh` (docs/security.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz.targets import TARGETS

FUZZ = Path(__file__).resolve().parents[1] / "fuzz"
BUDGET_S = 2


def fuzz(target: str, seconds: int, crashers: Path, seed: int = 0
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.fuzz.run", target, "--seconds", str(seconds),
         "--rss-mb", "1024", "--crashers", str(crashers), "--seed", str(seed)],
        capture_output=True, text=True, timeout=120, check=False,
        cwd=FUZZ.parents[1])


def test_each_target_survives_its_budget(tmp_path: Path) -> None:
    """All targets at once (one process each: libFuzzer owns its process), 2 s each."""
    procs = {}
    for target in sorted(TARGETS):
        (tmp_path / target).mkdir()
        procs[target] = subprocess.Popen(
            [sys.executable, "-m", "tests.fuzz.run", target, "--seconds", str(BUDGET_S),
             "--rss-mb", "1024", "--crashers", str(tmp_path / target)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=FUZZ.parents[1])
    for target, proc in procs.items():
        output, _ = proc.communicate(timeout=120)
        crashes = sorted(p.name for p in (tmp_path / target).iterdir())
        assert proc.returncode == 0, (f"{target}: the fuzzer found a crash {crashes} (keep it "
                                      f"in tests/fuzz/crashers/{target}/):\n{output[-3000:]}")
        runs = [line for line in output.splitlines() if "number_of_executed_units" in line]
        assert runs, output[-2000:]
        assert int(runs[-1].rsplit(":", 1)[1]) > 100, (target, runs)  # it really ran inputs


def test_the_fuzzer_finds_a_planted_bug(tmp_path: Path) -> None:
    done = fuzz("planted", 60, tmp_path, seed=1)  # a fixed seed: the same search each run
    assert done.returncode != 0, "the planted bug was not found within 60 s"
    assert "the planted bug" in done.stdout + done.stderr
    crash = next(tmp_path.glob("crash-*"))
    assert crash.read_bytes().startswith(b"-0x!")


def kept_inputs() -> list[tuple[str, Path]]:
    out = []
    for kind in ("corpus", "crashers"):
        for folder in sorted((FUZZ / kind).glob("*")):
            if folder.name in TARGETS:
                out += [(folder.name, f) for f in sorted(folder.iterdir()) if f.is_file()]
    return out


@pytest.mark.parametrize(("target", "path"), kept_inputs(),
                         ids=lambda v: v.name if isinstance(v, Path) else v)
def test_kept_inputs_are_classified(target: str, path: Path) -> None:
    assert TARGETS[target](path.read_bytes())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_property_every_byte_string_is_classified_by_every_target(data: bytes) -> None:
    for name, target in TARGETS.items():
        assert target(data), name


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=30))
def test_property_any_json_value_as_a_line_is_classified(value: object) -> None:
    import json

    assert TARGETS["json_lines"](json.dumps(value).encode())
