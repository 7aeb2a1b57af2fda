#!/bin/sh
# The secure compose stacks' one-shot `secrets` service (runs as root, no network): copies
# each service's folder of `streaminfer dev secrets DIR` (mounted read-only at /material)
# into that service's volume (/out/<service>; a region's east-/west- service takes the
# folder without the prefix), owned by the user the service runs as, folder 0700 and
# files 0600, `.ready` last. Runs again on every `up`: a renewed DIR replaces what the
# volumes held.
set -eu
uid_of() {
  case "$1" in
    prometheus) echo 65534 ;;
    grafana) echo 472 ;;
    *) echo 10001 ;;
  esac
}
if [ ! -f /material/.complete ]; then
  echo "secrets: /material holds no complete set; run \`streaminfer dev secrets DIR\` and set STREAMINFER_COMPOSE_SECRETS=DIR" >&2
  exit 2
fi
for out in /out/*; do
  service="$(basename "$out")"
  folder="${service#east-}"
  folder="${folder#west-}"
  if [ ! -d "/material/$folder" ]; then
    echo "secrets: /material/$folder is missing; renew the set (\`streaminfer dev secrets DIR --renew\`)" >&2
    exit 2
  fi
  uid="$(uid_of "$folder")"
  find "$out" -mindepth 1 -delete
  cp /material/"$folder"/* "$out"/
  touch "$out/.ready"
  chown -R "$uid:$uid" "$out"
  chmod 0700 "$out"
  find "$out" -type f -exec chmod 0600 {} +
  echo "secrets: $service: $(ls "/material/$folder" | wc -l) file(s) for uid $uid"
done
