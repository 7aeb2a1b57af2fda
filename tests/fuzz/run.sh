#!/usr/bin/env bash
# The long fuzzing run (the test command runs each target for 2 s): every target for
# SECONDS (default 300) under atheris, new interesting inputs kept in tests/fuzz/corpus/,
# a crash written to tests/fuzz/crashers/<target>/ (add it to the repository: it becomes a
# regression test). Usage: bash tests/fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../compose/setup.sh"
SECONDS_EACH="${1:-300}"; shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then TARGETS=(request validation feature_value control json_lines); fi
status=0
for target in "${TARGETS[@]}"; do
  log "fuzzing $target for ${SECONDS_EACH}s (corpus: tests/fuzz/corpus/$target)"
  if python -m tests.fuzz.run "$target" --seconds "$SECONDS_EACH" --keep 2>"$VENV/fuzz-$target.log"; then
    log "$target: $(grep -h number_of_executed_units "$VENV/fuzz-$target.log" | tail -1 | tr -s ' ') inputs, no crash"
  else
    tail -n 30 "$VENV/fuzz-$target.log" >&2
    log "$target: CRASH (above); the input is in tests/fuzz/crashers/$target/: fix the parser, keep the file"
    status=1
  fi
done
exit "$status"
