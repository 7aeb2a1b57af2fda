#!/usr/bin/env bash
# README command 2: lint, type-check and run the tests (unit + integration on real
# Kafka and Redis in containers). Extra arguments go to pytest.
# With --extended first: the long scenarios instead (marker "extended": the region failover
# at 1,000 requests/s three ways, the chaos region pause/cut and MirrorMaker kill, three
# brokers per region, dev up --regions 2, the two-region compose stack, three workers
# SIGKILLed under exactly-once, the three-broker chaos scenarios (the leader kill too), the zombie worker, Redis
# fed corrupt values, the autoscaler's step load, the secure regions' failover, the
# 200k-request memory soak, the worker image in the compose stack, the secure compose
# stacks); its total time is not yet measured.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  if [ "$(id -u)" = 0 ] && [ -f /etc/debian_version ]; then
    log "installing Debian's prometheus package (promtool and prometheus for the alerting tests)"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null
  else
    log "promtool/prometheus are missing: install your distribution's prometheus package, then rerun"
    exit 1
  fi
fi
if ! command -v kubectl >/dev/null; then
  if [ "$(id -u)" = 0 ] && [ -f /etc/debian_version ]; then
    log "installing Debian's kubernetes-client (kubectl kustomize renders deploy/ for its tests)"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends kubernetes-client >/dev/null
  else
    log "kubectl is missing: install it (its built-in kustomize renders deploy/), then rerun"
    exit 1
  fi
fi
log "ruff"
ruff check .
MYPY=""
# mypy (1-2 min of one core without its cache) runs at the lowest priority beside the
# integration tests, which mostly wait on containers; its verdict is awaited at the end
# and fails the run like a failing test. (Beside the unit tests it took their second core.)
start_mypy() {
  log "mypy (in the background, at low priority; its result comes at the end)"
  nice -n 19 mypy >.venv/mypy.log 2>&1 &
  MYPY=$!
}
# The locked dependencies against PyPI's vulnerability data (compose/locks/audit-exceptions.toml
# lists the accepted ones); also in the background, its report comes at the end.
log "pip-audit of the locks (in the background; its report comes at the end)"
python -m stream.tools.audit >.venv/audit.log 2>&1 &
AUDIT=$!
STOP_ENGINE=""
WORKER_IMAGE_BUILD=""
IMAGES=""
cleanup() {
  if [ -n "${MYPY:-}" ]; then kill "$MYPY" 2>/dev/null || true; fi
  if [ -n "${AUDIT:-}" ]; then kill "$AUDIT" 2>/dev/null || true; fi
  if [ -n "$IMAGES" ]; then kill "$IMAGES" 2>/dev/null || true; wait "$IMAGES" 2>/dev/null || true; fi
  if [ -n "$WORKER_IMAGE_BUILD" ]; then kill "$WORKER_IMAGE_BUILD" 2>/dev/null || true; fi
  if [ -n "$STOP_ENGINE" ]; then
    python -c "from stream.devcluster.engine import stop_engine_we_started as s; s()"
  fi
}
trap cleanup EXIT
if [ -z "${STREAMINFER_TEST_BOOTSTRAP_SERVERS:-}" ]; then
  if ! docker info >/dev/null 2>&1; then
    # We start the engine for the tests, so we stop it afterwards (by its recorded pid).
    STOP_ENGINE=1
  fi
  # The Docker engine and the Kafka, Redis and MirrorMaker images (first time on a machine:
  # a few minutes of debootstrap, apt and Maven) build in the background while the unit
  # tests, which need no containers, run.
  log "Docker engine and images, in the background (log: .venv/images.log)"
  (streaminfer dev images --kafka-image "${STREAMINFER_TEST_KAFKA_IMAGE:-streaminfer/kafka:4.4.0}" \
     --redis-image "${STREAMINFER_TEST_REDIS_IMAGE:-streaminfer/redis:7}" &&
   python -c "from stream.devcluster.images import ensure_mirrormaker_image as m; m()") \
    >.venv/images.log 2>&1 &
  IMAGES=$!
fi
await_images() {
  if [ -z "$IMAGES" ]; then return 0; fi
  log "waiting for the Docker engine and images (log: .venv/images.log)"
  if ! wait "$IMAGES"; then
    IMAGES=""
    cat .venv/images.log >&2
    log "building the images failed (above): fix the cause, then run this command again"
    exit 1
  fi
  IMAGES=""
  tail -n 3 .venv/images.log
}
status=0
if [ "${1:-}" = "--extended" ]; then
  shift
  await_images
  if [ -z "${STREAMINFER_TEST_BOOTSTRAP_SERVERS:-}" ]; then
    # The worker image (first time: debootstrap, wheels, ~2 min) builds in the background
    # while the first extended tests run; its test waits for it (a file lock).
    log "building the worker image in the background (log: .venv/worker-image.log)"
    streaminfer dev images --worker >.venv/worker-image.log 2>&1 &
    WORKER_IMAGE_BUILD=$!
  fi
  log "pytest: the extended scenarios"
  start_mypy
  python -m pytest -m extended "$@" || status=$?
elif [ "$#" -eq 0 ]; then
  log "pytest: unit tests on both cores (the extended scenarios: bash compose/test.sh --extended)"
  # pytest-xdist: two processes take about half the serial time (~50 s instead of ~110 s).
  python -m pytest -n 2 -m "not extended" tests/unit || status=$?
  start_mypy
  await_images
  log "pytest: integration tests on real Kafka and Redis"
  python -m pytest -m "not extended" tests/integration || status=$?
else
  start_mypy
  await_images
  log "pytest (the extended scenarios: bash compose/test.sh --extended)"
  python -m pytest -m "not extended" "$@" || status=$?
fi
if wait "$MYPY"; then
  log "mypy: $(tail -n 1 .venv/mypy.log)"
else
  cat .venv/mypy.log >&2
  log "mypy failed (above): fix the types, then run this command again"
  status=1
fi
MYPY=""
if wait "$AUDIT"; then
  cat .venv/audit.log >&2
else
  cat .venv/audit.log >&2
  log "the dependency audit failed (above): upgrade the named packages or list them with a reason and an expiry in compose/locks/audit-exceptions.toml"
  status=1
fi
AUDIT=""
exit "$status"
