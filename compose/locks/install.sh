#!/usr/bin/env bash
# Install a lock file into a virtualenv with every hash checked:
#   bash compose/locks/install.sh <venv> <lock> [installer options...]
# With uv available (the venv's, bootstrapped from the lock's own hashed uv pin with pip,
# or the repository's .venv) it installs with `uv pip install --require-hashes` (a fresh
# dev environment in seconds instead of a minute and a half); otherwise with pip. A file
# whose hash is not in the lock stops the install (nothing unpinned or altered gets in);
# the message says what that means and what to do.
set -euo pipefail
VENV="$1"; LOCK="$2"; shift 2
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
OUT="$WORK/out"
pip_install() {
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --require-hashes "$@"
}
UV=""
if [ -x "$VENV/bin/uv" ]; then
  UV="$VENV/bin/uv"
elif grep -q '^uv==' "$LOCK"; then
  # uv's own pin and hashes, from the lock: the installer is checked like everything else.
  awk '/^uv==/{p=1} p{print} p && !/\\$/{exit}' "$LOCK" >"$WORK/uv.txt"
  if pip_install -r "$WORK/uv.txt" >"$OUT" 2>&1; then UV="$VENV/bin/uv"; else cat "$OUT" >&2; fi
elif [ -x "$ROOT/.venv/bin/uv" ]; then
  UV="$ROOT/.venv/bin/uv"
fi
if [ -n "$UV" ]; then
  if "$UV" pip install -q --python "$VENV/bin/python" --require-hashes -r "$LOCK" "$@" \
      >"$OUT" 2>&1; then
    exit 0
  fi
elif pip_install -r "$LOCK" "$@" >"$OUT" 2>&1; then
  exit 0
fi
cat "$OUT" >&2
if grep -qi "DO NOT MATCH THE HASHES\|Hashes are required\|hash mismatch" "$OUT"; then
  echo "[locks] a downloaded file does not match its hash in $LOCK: the index served a" \
       "different file than the one locked, or the lock is stale. Nothing was installed" \
       "from it. If you changed the dependencies, run 'bash compose/locks/refresh.sh' and" \
       "review the diff; otherwise treat it as tampering and report it." >&2
  exit 3
fi
echo "[locks] could not install $LOCK (above); check that PyPI is reachable, then run the" \
     "command again" >&2
exit 1
