#!/usr/bin/env bash
# Builds the local Docker images the Docker tests start (no registry is reachable, TESTING.md):
# local/debian:bookworm from debootstrap, then local/predeploy-postgres:15 from
# scripts/docker/postgres and local/predeploy-mariadb:10.11 from scripts/docker/mariadb. Starts
# dockerd when no daemon answers. Idempotent: an image whose label matches its build context is
# not rebuilt.
set -euo pipefail
cd "$(dirname "$0")"

if ! docker info >/dev/null 2>&1; then
  echo "docker-images: starting dockerd (log: /var/log/predeploy-dockerd.log)"
  command -v dockerd >/dev/null || { echo "docker-images: dockerd is missing (apt-get install docker.io)" >&2; exit 1; }
  nohup setsid dockerd >/var/log/predeploy-dockerd.log 2>&1 &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "docker-images: dockerd did not answer; see /var/log/predeploy-dockerd.log" >&2; exit 1; }
fi

if ! docker image inspect local/debian:bookworm >/dev/null 2>&1; then
  echo "docker-images: building local/debian:bookworm with debootstrap (first time only)"
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >/dev/null
  tar -C "$root" -c . | docker import - local/debian:bookworm >/dev/null
  rm -rf "$root"
  trap - EXIT
fi

# The image's label carries a hash of its build context, so an edited Dockerfile or entrypoint
# rebuilds it. build_image TAG DIR
build_image() {
  local tag=$1 dir=$2 context_hash
  context_hash=$(cat "$dir/Dockerfile" "$dir/entrypoint.sh" | sha256sum | cut -c1-12)
  if [ "$(docker image inspect -f '{{index .Config.Labels "predeploy.context"}}' "$tag" 2>/dev/null)" != "$context_hash" ]; then
    echo "docker-images: building $tag"
    docker build -q --label "predeploy.context=$context_hash" -t "$tag" "$dir" >/dev/null
  fi
}
build_image local/predeploy-postgres:15 docker/postgres
build_image local/predeploy-mariadb:10.11 docker/mariadb
