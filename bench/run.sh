#!/usr/bin/env bash
# The benchmark command: streaminfer vs a naive loop vs faust vs Quix Streams, side by side.
# Sets up .venv (like the README's two commands) and .venv-quix for the Quix peer, then runs
# bench/streaming.py, which starts its own Kafka + Redis, prints the tables and writes
# bench/results/streaming.json. Arguments go to bench/streaming.py (--quick, --systems, ...).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../compose/setup.sh"

QUIX="$ROOT/.venv-quix"
QLOCK="$ROOT/compose/locks/bench-quix.txt"  # bench/requirements-quix.txt, locked with hashes
QSTAMP="$QUIX/.deps-$(sha256sum "$QLOCK" | cut -c1-16)"
if [ ! -f "$QSTAMP" ]; then
  log "installing Quix Streams into .venv-quix (its own env: it pins an older confluent-kafka)"
  "$PYTHON" -m venv "$QUIX"
  if bash "$ROOT/compose/locks/install.sh" "$QUIX" "$QLOCK"; then
    rm -f "$QUIX"/.deps-*
    touch "$QSTAMP"
  else
    log "Quix Streams did not install; the bench runs without it (row marked not installed)"
    rm -rf "$QUIX"
  fi
fi
exec "$VENV/bin/python" -m bench.streaming "$@"
