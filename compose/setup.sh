#!/usr/bin/env bash
# Shared set-up for the two README commands (sourced, not run).
# Creates .venv with the project and its dev tools; reinstalls only when
# pyproject.toml changed, so a second run takes about a second.
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
STAMP="$VENV/.streaminfer-deps-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
if [ ! -f "$STAMP" ]; then
  log "installing streaminfer and its dependencies into .venv (first time: 1-2 min)"
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
  if ! "$VENV/bin/python" -m pip install -q -e '.[dev]'; then
    log "pip install failed; check that PyPI is reachable, then run this command again"
    exit 1
  fi
  rm -f "$VENV"/.streaminfer-deps-*
  touch "$STAMP"
else
  log "python dependencies up to date (.venv)"
fi
export PATH="$VENV/bin:$PATH"
