#!/bin/bash
# MirrorMaker 2 in dedicated mode. The configuration comes from $MM2_PROPERTIES (the whole
# mm2.properties text; see compose/mirrormaker/mm2.properties for a documented example)
# or from a file mounted at /etc/mm2/mm2.properties.
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
  -cp '/opt/mm2/libs/*' org.apache.kafka.connect.mirror.MirrorMaker "$CONF" "$@"
