#!/usr/bin/env bash
# README command 2: lint, type-check and run every test (unit + integration on real
# Kafka and Redis in containers). Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
log "ruff"
ruff check .
log "mypy"
mypy
log "pytest (integration tests build/start Kafka and Redis containers; first time ~2 min more)"
exec python -m pytest "$@"
