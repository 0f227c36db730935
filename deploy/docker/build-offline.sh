#!/usr/bin/env bash
# Build the kassa image without Docker and without Docker Hub, then smoke-run it.
#
# For machines that reach only the Debian archive and PyPI (kassa's development machines): the
# base image is made from Debian's own packages with debootstrap, imported into podman's store,
# and the Dockerfile is built with buildah in a chroot (no daemon, no user namespaces, vfs
# storage). The smoke run applies the migrations to a throwaway PostgreSQL on loopback and asks
# the API for /healthz and /readyz, as uid 10001. CI builds the same Dockerfile with Buildx on
# the official python image instead (.github/workflows/ci.yml).
#
# Needs root and: apt-get install podman buildah debootstrap; `make install` (for the database).
# Usage: deploy/docker/build-offline.sh [image-tag]     (default localhost/kassa:offline)
set -euo pipefail
cd "$(dirname "$0")/../.."

TAG="${1:-localhost/kassa:offline}"
BASE=localhost/kassa-base:bookworm
STORE=(--storage-driver vfs)
WORK="$(mktemp -d /tmp/kassa-offline-XXXXXX)"
chmod 755 "$WORK"
CONTAINER="kassa-offline-$$"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  buildah "${STORE[@]}" rm "$CONTAINER" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo "build-offline.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

if ! podman "${STORE[@]}" image exists "$BASE"; then
  # The Debian mirror apt already uses (DEBIAN_MIRROR overrides; no host is assumed here).
  mirror="${DEBIAN_MIRROR:-$(cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
    | grep -oE '^(URIs: |deb )https?://[^ ]+/debian/?( |$)' | head -n1 | sed -E 's/^(URIs: |deb )//; s/ $//' || true)}"
  [ -n "$mirror" ] || { echo "no Debian mirror in apt's sources; set DEBIAN_MIRROR" >&2; exit 2; }
  echo "debootstrap bookworm from $mirror"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$WORK/rootfs" "$mirror" >/dev/null
  # Trust what the host trusts (a TLS-inspecting proxy's CA, a package mirror's).
  cp /etc/ssl/certs/ca-certificates.crt "$WORK/rootfs/etc/ssl/certs/ca-certificates.crt"
  tar -C "$WORK/rootfs" -c . | podman "${STORE[@]}" import - "$BASE" >/dev/null
  rm -rf "$WORK/rootfs"
fi

buildah "${STORE[@]}" build --isolation chroot --build-arg PYTHON_IMAGE="$BASE" \
  -f deploy/docker/Dockerfile -t "$TAG" .
podman "${STORE[@]}" image inspect "$TAG" --format 'built {{.Id}}: user {{.Config.User}}, entrypoint {{.Config.Entrypoint}} {{.Config.Cmd}}, {{.Size}} bytes'

# Smoke run. `podman run` needs setrlimit, which unprivileged sandboxes refuse; buildah's chroot
# isolation runs the image's entrypoint user and environment without it.
buildah "${STORE[@]}" from --name "$CONTAINER" "$TAG" >/dev/null
.venv/bin/python - "$WORK" > "$WORK/db.url" <<'PY' &
import signal, sys, time
from pathlib import Path
from kassa.store.embedded import EmbeddedPostgres
server = EmbeddedPostgres(root=Path(sys.argv[1]) / "pg", fsync=False)
print(server.start(), flush=True)
signal.signal(signal.SIGTERM, lambda *_: (server.destroy(), sys.exit(0)))
while True:
    time.sleep(1)
PY
PIDS+=($!)
# initdb can take a while on a busy machine.
for _ in $(seq 600); do [ -s "$WORK/db.url" ] && break; sleep 0.5; done
url="$(cat "$WORK/db.url")"
[ -n "$url" ] || { echo "the throwaway PostgreSQL did not start" >&2; exit 1; }
run=(buildah "${STORE[@]}" run --isolation chroot --network host --env KASSA_DATABASE_URL="$url")
"${run[@]}" "$CONTAINER" -- id -u | grep -qx 10001
"${run[@]}" "$CONTAINER" -- kassa migrate
port="$(.venv/bin/python -c 'from kassa.store.embedded import free_port; print(free_port())')"
"${run[@]}" --env KASSA_HTTP_HOST=127.0.0.1 --env KASSA_HTTP_PORT="$port" --env KASSA_READY_REQUIRES=database \
  "$CONTAINER" -- kassa api > "$WORK/api.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 600); do curl -sf "http://127.0.0.1:$port/healthz" > /dev/null && break; sleep 0.5; done
echo "healthz: $(curl -sf "http://127.0.0.1:$port/healthz")"
echo "readyz:  $(curl -sf "http://127.0.0.1:$port/readyz")"
