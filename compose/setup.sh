#!/usr/bin/env bash
# Shared set-up for the two README commands (sourced, not run).
# Creates .venv with the project and its dev tools, exactly as compose/locks/dev.txt pins
# them (hashes checked); reinstalls only when pyproject.toml or the lock changed, so a
# second run takes about a second.
# The Docker engine and the images are handled by the Python side
# (stream/devcluster), which the demo and the tests both call.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '[setup] %s\n' "$*" >&2; }

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  log "streaminfer needs Python >= 3.11; found: $("$PYTHON" --version 2>&1 || echo none)."
  log "Install Python 3.11+ or point PYTHON=/path/to/python3.11 at one."
  exit 1
fi

VENV="$ROOT/.venv"
LOCK="$ROOT/compose/locks/dev.txt"
STAMP="$VENV/.streaminfer-deps-$(cat pyproject.toml "$LOCK" | sha256sum | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
if [ ! -f "$STAMP" ]; then
  # Exactly the versions and files in the lock (hashes checked), then streaminfer itself
  # in editable mode with the locked build backend: nothing unpinned is fetched.
  log "installing the locked dependencies into .venv from compose/locks/dev.txt (first time: 1-2 min)"
  bash "$ROOT/compose/locks/install.sh" "$VENV" "$LOCK"
  if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
      --no-build-isolation -e .; then
    log "installing streaminfer itself failed (above); run this command again"
    exit 1
  fi
  rm -f "$VENV"/.streaminfer-deps-*
  touch "$STAMP"
else
  log "python dependencies up to date (.venv)"
fi
export PATH="$VENV/bin:$PATH"
