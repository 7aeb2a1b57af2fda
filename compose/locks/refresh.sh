#!/usr/bin/env bash
# Re-resolve the lock files from their inputs, with hashes (uv pip compile):
#   runtime.txt     pyproject.toml's dependencies + the retrain extra: the worker image
#                   installs exactly these (it also runs the retraining CronJob)
#   dev.txt         runtime + the dev extra + build.in: what compose/setup.sh installs
#   bench-quix.txt  bench/requirements-quix.txt: the Quix Streams peer's own environment
# Run after changing a dependency, or to take new releases; review the diff (git diff
# compose/locks), run the test command (it audits the new pins), commit.
# --upgrade takes the newest allowed releases; without it, existing pins are kept where
# they still satisfy the inputs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
UV=.venv/bin/uv
if [ ! -x "$UV" ]; then
  echo "[locks] $UV is missing: run 'bash compose/setup.sh' first (the dev lock installs uv)" >&2
  exit 1
fi
common=(--universal --python-version 3.11 --generate-hashes -q "$@")
"$UV" pip compile pyproject.toml --extra retrain -o compose/locks/runtime.txt "${common[@]}"
"$UV" pip compile pyproject.toml compose/locks/build.in --extra dev -o compose/locks/dev.txt "${common[@]}"
"$UV" pip compile bench/requirements-quix.txt -o compose/locks/bench-quix.txt "${common[@]}"
echo "[locks] refreshed compose/locks/{runtime,dev,bench-quix}.txt; review: git diff compose/locks" >&2
