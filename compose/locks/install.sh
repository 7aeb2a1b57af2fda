#!/usr/bin/env bash
# Install a lock file into a virtualenv with every hash checked:
#   bash compose/locks/install.sh <venv> <lock> [pip options...]
# A file whose hash is not in the lock stops the install (nothing unpinned or altered gets
# in); the message says what that means and what to do.
set -euo pipefail
VENV="$1"; LOCK="$2"; shift 2
OUT="$(mktemp)"
trap 'rm -f "$OUT"' EXIT
if "$VENV/bin/python" -m pip install -q --disable-pip-version-check --require-hashes \
    -r "$LOCK" "$@" >"$OUT" 2>&1; then
  exit 0
fi
cat "$OUT" >&2
if grep -q "DO NOT MATCH THE HASHES\|Hashes are required" "$OUT"; then
  echo "[locks] a downloaded file does not match its hash in $LOCK: the index served a" \
       "different file than the one locked, or the lock is stale. Nothing was installed" \
       "from it. If you changed the dependencies, run 'bash compose/locks/refresh.sh' and" \
       "review the diff; otherwise treat it as tampering and report it." >&2
  exit 3
fi
echo "[locks] pip could not install $LOCK (above); check that PyPI is reachable, then" \
     "run the command again" >&2
exit 1
