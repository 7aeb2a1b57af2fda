#!/bin/bash
# MirrorMaker 2 in dedicated mode. The configuration comes from $MM2_PROPERTIES (the whole
# mm2.properties text; see compose/mirrormaker/mm2.properties for a documented example)
# or from a file mounted at /etc/mm2/mm2.properties. MirrorMaker runs under our watchdog
# (WatchedMirrorMaker.java): it exits with code 3 when replication stalls, for the
# container's restart policy to start it afresh (MM2_WATCHDOG_STALL_S, default 60; 0: off),
# and serves Prometheus metrics on MM2_METRICS_PORT (default 9500).
set -euo pipefail
CONF=/etc/mm2/mm2.properties
if [ -n "${MM2_PROPERTIES:-}" ]; then
  mkdir -p /etc/mm2
  printf '%s\n' "$MM2_PROPERTIES" > "$CONF"
fi
if [ ! -f "$CONF" ]; then
  echo "entrypoint: set MM2_PROPERTIES or mount $CONF" >&2
  exit 2
fi
exec java ${MM2_HEAP_OPTS:--Xmx384m -Xms64m} -XX:+UseG1GC -Djava.awt.headless=true \
  -Dlog4j2.configurationFile=/opt/mm2/log4j2.properties ${MM2_OPTS:-} \
  -cp '/opt/mm2/libs/*' io.streaminfer.mm2.WatchedMirrorMaker "$CONF" "$@"
