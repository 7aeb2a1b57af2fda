#!/usr/bin/env bash
# README command 1: from a fresh machine to predictions flowing, with a summary.
# Installs what is missing (Python deps, Docker engine when root on Debian, images,
# Kafka jars), starts the dev cluster, runs 2 workers, sends 10,000 requests.
# Extra arguments go to `streaminfer demo` (see `streaminfer demo --help`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
exec streaminfer demo "$@"
