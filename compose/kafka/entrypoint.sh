#!/bin/bash
# Starts one KRaft node. Configuration follows the apache/kafka image convention so the
# official image and this one take the same container environment:
#   KAFKA_FOO_BAR=x       -> foo.bar=x
#   KAFKA_FOO__BAR=x      -> foo_bar=x
#   KAFKA_FOO___BAR=x     -> foo-bar=x
#   CLUSTER_ID            -> the id storage is formatted with (required)
#   KAFKA_HEAP_OPTS       -> JVM heap flags (default -Xmx512m -Xms256m)
#   STREAMINFER_SECRETS_DIR -> wait for <dir>/.ready (certificates and keys are copied in by
#                            `dev up --secure` after the container starts); <dir>/scram-users
#                            holds one --add-scram argument per line for the first format
#                            (never written into server.properties or the environment)
set -euo pipefail
if [ -n "${STREAMINFER_SECRETS_DIR:-}" ]; then
  for _ in $(seq 1 1200); do [ -f "$STREAMINFER_SECRETS_DIR/.ready" ] && break; sleep 0.1; done
  if [ ! -f "$STREAMINFER_SECRETS_DIR/.ready" ]; then
    echo "entrypoint: no secrets in $STREAMINFER_SECRETS_DIR after 120 s (dev up copies them in)" >&2
    exit 2
  fi
fi
CONF=/opt/kafka/config/server.properties
: > "$CONF"
while IFS='=' read -r name value; do
  case "$name" in
    KAFKA_HEAP_OPTS|KAFKA_OPTS|KAFKA_JVM_OPTS) continue ;;
    KAFKA_*)
      key="${name#KAFKA_}"
      key="${key//___/-}"; key="${key//__/@}"; key="${key//_/.}"; key="${key//@/_}"
      key="${key,,}"
      echo "$key=$value" >> "$CONF" ;;
  esac
done < <(env)
grep -q '^log.dirs=' "$CONF" || echo "log.dirs=/var/lib/kafka/data" >> "$CONF"
if [ -z "${CLUSTER_ID:-}" ]; then
  echo "entrypoint: CLUSTER_ID is not set; pass the same cluster id to every node" >&2
  exit 2
fi
JAVA=(java ${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m} -XX:+UseG1GC -XX:MaxGCPauseMillis=20
      -Djava.awt.headless=true -Dkafka.logs.dir=/opt/kafka/logs
      -Dlog4j2.configurationFile=/opt/kafka/log4j2.yaml ${KAFKA_OPTS:-} -cp '/opt/kafka/libs/*')
LOGDIR="$(grep '^log.dirs=' "$CONF" | head -1 | cut -d= -f2 | cut -d, -f1)"
if [ ! -f "$LOGDIR/meta.properties" ]; then
  FORMAT_ARGS=(format "--cluster-id=$CLUSTER_ID" "--config=$CONF" --ignore-formatted)
  if ! grep -q '^controller.quorum.voters=' "$CONF"; then FORMAT_ARGS+=(--standalone); fi
  if [ -n "${STREAMINFER_SECRETS_DIR:-}" ] && [ -f "$STREAMINFER_SECRETS_DIR/scram-users" ]; then
    while IFS= read -r user; do
      [ -n "$user" ] && FORMAT_ARGS+=(--add-scram "$user")
    done < "$STREAMINFER_SECRETS_DIR/scram-users"
  fi
  "${JAVA[@]}" kafka.tools.StorageTool "${FORMAT_ARGS[@]}"
fi
# Class data sharing, opt-in (STREAMINFER_KAFKA_CDS=1): a broker that exits cleanly leaves
# an archive of the classes it loaded that its next start maps instead of loading and
# verifying them again (restarts of 10-15 s instead of about 30 s from the JVM's first line
# on two busy cores). Off by default: writing the archive at the first exit, under a
# 30-minute soak's load, outlasted `docker stop`'s grace, the broker was killed mid-dump
# and took 54 s to start again (docs/chaos.md). The JVM ignores an archive it cannot use.
CDS=()
if [ "${STREAMINFER_KAFKA_CDS:-0}" = 1 ]; then
  ARCHIVE=/var/lib/kafka/broker-classes.jsa
  # (-Xlog:cds=error: the dump warns once per class it cannot archive, hundreds of lines)
  if [ -s "$ARCHIVE" ]; then CDS=("-XX:SharedArchiveFile=$ARCHIVE" -Xlog:cds=error)
  else CDS=("-XX:ArchiveClassesAtExit=$ARCHIVE" -Xlog:cds=error); fi
fi
exec "${JAVA[@]}" "${CDS[@]}" kafka.Kafka "$CONF"
