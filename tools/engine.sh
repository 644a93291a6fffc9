#!/usr/bin/env bash
# Make sure a container engine answers: install Debian's docker.io if missing,
# start dockerd in the background when no daemon runs, wait for its socket.
set -euo pipefail
log=${WEBSTACK_DOCKERD_LOG:-/var/log/webstack-dockerd.log}

if docker info >/dev/null 2>&1; then
  exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
  echo "engine: installing docker.io" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io >/dev/null
fi
if ! pgrep -x dockerd >/dev/null 2>&1; then
  echo "engine: starting dockerd (log: $log)" >&2
  nohup dockerd >"$log" 2>&1 &
fi
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    exit 0
  fi
  sleep 1
done
echo "engine: dockerd did not answer within 60s; see $log" >&2
tail -n 20 "$log" >&2 || true
exit 1
