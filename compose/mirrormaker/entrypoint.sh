#!/bin/bash
# MirrorMaker 2 in dedicated mode. The configuration comes from $MM2_PROPERTIES (the whole
# mm2.properties text; see compose/mirrormaker/mm2.properties for a documented example)
# or from a file mounted at /etc/mm2/mm2.properties. MirrorMaker runs under our watchdog
# (WatchedMirrorMaker.java): it exits with code 3 when replication stalls, for the
# container's restart policy to start it afresh (MM2_WATCHDOG_STALL_S, default 60; 0: off),
# and serves Prometheus metrics on MM2_METRICS_PORT (default 9500).
# STREAMINFER_SECRETS_DIR: wait for <dir>/.ready (the CA and the password file are copied
# in by `dev up --secure --regions 2` after the container starts).
set -euo pipefail
if [ -n "${STREAMINFER_SECRETS_DIR:-}" ]; then
  for _ in $(seq 1 1200); do [ -f "$STREAMINFER_SECRETS_DIR/.ready" ] && break; sleep 0.1; done
  if [ ! -f "$STREAMINFER_SECRETS_DIR/.ready" ]; then
    echo "entrypoint: no secrets in $STREAMINFER_SECRETS_DIR after 120 s" >&2
    exit 2
  fi
fi
CONF=/etc/mm2/mm2.properties
if [ -n "${MM2_PROPERTIES:-}" ]; then
  mkdir -p /etc/mm2
  printf '%s\n' "$MM2_PROPERTIES" > "$CONF"
fi
if [ ! -f "$CONF" ]; then
  echo "entrypoint: set MM2_PROPERTIES or mount $CONF" >&2
  exit 2
fi
SECRETS="${STREAMINFER_SECRETS_DIR:-/run/streaminfer}/mm2-secrets.properties"
if grep -q '@MM2_PASSWORD@' "$CONF"; then
  if [ ! -f "$SECRETS" ]; then
    echo "entrypoint: $CONF names @MM2_PASSWORD@ but $SECRETS is missing" >&2
    exit 2
  fi
  PASSWORD="$(sed -n 's/^password=//p' "$SECRETS" | head -1)"
  TEXT="$(cat "$CONF")"
  CONF="${STREAMINFER_SECRETS_DIR:-/run/streaminfer}/mm2.properties"
  (umask 077; printf '%s\n' "${TEXT//@MM2_PASSWORD@/$PASSWORD}" > "$CONF")
fi
exec java ${MM2_HEAP_OPTS:--Xmx384m -Xms64m} -XX:+UseG1GC -Djava.awt.headless=true \
  -Dlog4j2.configurationFile=/opt/mm2/log4j2.properties ${MM2_OPTS:-} \
  -cp '/opt/mm2/libs/*' io.streaminfer.mm2.WatchedMirrorMaker "$CONF" "$@"
