#!/usr/bin/env bash
# deploy/local-base-image.sh: make podman usable on a Debian 12 machine that reaches no container
# registry (only Debian's apt mirror and PyPI), and build the base image localhost/debian:bookworm
# with debootstrap, shaped like debian:bookworm-slim. (Adapted from the project's original
# machine-setup script; tests/ops/test_container.py and scripts/test run this copy.)
#
# Afterwards, from the repository's root:
#   export CONTAINERS_CONF=$WORK/containers.conf
#   podman build --pull=never --format docker --network=host \
#       --build-arg BASE_IMAGE=localhost/debian:bookworm \
#       --secret id=pip_ca,src=/etc/ssl/certs/ca-certificates.crt -f deploy/Dockerfile -t caxton .
#   podman run -d --network=host ...; podman healthcheck run NAME
# (--format docker keeps HEALTHCHECK; there is no systemd, so run health checks on demand;
#  the pip_ca secret lets pip inside the build trust the CA bundle the host trusts.)
#
# Run as root. Idempotent: installs only the missing Debian packages and reuses the base image
# when present (FORCE_BASE=1 rebuilds).
# Env knobs: WORK (default /var/tmp/caxton-ctr), MIRROR (default: read from apt's config).
set -euo pipefail

WORK=${WORK:-/var/tmp/caxton-ctr}
BASE_IMAGE=localhost/debian:bookworm
TIMINGS="$WORK/timings.txt"
mkdir -p "$WORK"
: > "$TIMINGS"

log()  { printf '\n=== %s\n' "$*"; }
die()  { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
t0=0; tstart() { t0=$(date +%s.%N); }
tstop() { local dt; dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'); printf '%-28s %6ss\n' "$1" "$dt" | tee -a "$TIMINGS"; }
# podman without systemd logs harmless "unable to get systemd connection ... healthchecks" errors.
quiet_systemd() { grep -v 'unable to get systemd connection' || true; }

[ "$(id -u)" = 0 ] || die "run as root"
. /etc/os-release
[ "${VERSION_CODENAME:-}" = bookworm ] || echo "WARNING: tested on Debian 12 (bookworm) only; this is ${PRETTY_NAME:-unknown}"

# ---------------------------------------------------------------------------
log "1. install podman, buildah, runc, debootstrap from Debian"
tstart
export DEBIAN_FRONTEND=noninteractive
# runc: crun 1.8 (Debian 12) refuses hybrid cgroup v1/v2 hosts ("cgroups in hybrid
# mode not supported"); runc works on hybrid, v1 and v2.
missing=()
for pkg in podman buildah debootstrap runc; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
tstop "apt install"
podman --version; buildah --version; runc --version | head -1

# ---------------------------------------------------------------------------
log "2. containers.conf for this machine (used via CONTAINERS_CONF, /etc left alone)"
# Podman asks for RLIMIT_NOFILE=1048576 by default and lowers its own NPROC to
# 32768; without CAP_SYS_RESOURCE the runtime cannot raise limits, so pin both
# to what this process may set ("OCI permission denied: setrlimit").
H_NOFILE=$(ulimit -Hn); [ "$H_NOFILE" = unlimited ] && H_NOFILE=1048576
[ "$H_NOFILE" -gt 1048576 ] && H_NOFILE=1048576
H_NPROC=$(ulimit -Hu); [ "$H_NPROC" = unlimited ] && H_NPROC=32768
[ "$H_NPROC" -gt 32768 ] && H_NPROC=32768
cat > "$WORK/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=${H_NOFILE}:${H_NOFILE}", "nproc=${H_NPROC}:${H_NPROC}"]
# host network: no bridge, no iptables/nftables rules, no ip_forward change
netns = "host"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
export CONTAINERS_CONF="$WORK/containers.conf"
cat "$CONTAINERS_CONF"

# ---------------------------------------------------------------------------
log "3. base image $BASE_IMAGE from debootstrap (no registry)"
detect_uris() {  # prints the Debian archive URIs apt already uses (deb822 first, then one-line)
  { awk 'tolower($1)=="uris:"{for(i=2;i<=NF;i++) print $i}' /etc/apt/sources.list.d/*.sources 2>/dev/null
    awk '$1=="deb"{for(i=2;i<=NF;i++) if ($i ~ /^(https?|ftp|file):/) {print $i; break}}' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null; } | sed 's#/*$##'
}
MIRROR=${MIRROR:-$(detect_uris | grep -E '/debian$' | head -n1 || true)}
SECMIRROR=${SECMIRROR:-$(detect_uris | grep -E '/debian-security$' | head -n1 || true)}
[ -n "$MIRROR" ] || die "no Debian mirror found in /etc/apt/sources.list*; set MIRROR="
echo "mirror: $MIRROR   security: ${SECMIRROR:-<none>}"

if [ "${FORCE_BASE:-0}" = 1 ] || ! podman image exists "$BASE_IMAGE"; then
  R="$WORK/rootfs"
  rm -rf "$R"
  tstart
  debootstrap --variant=minbase --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
      bookworm "$R" "$MIRROR" > "$WORK/debootstrap.log" 2>&1 \
      || { tail -20 "$WORK/debootstrap.log"; die debootstrap; }
  tstop "debootstrap minbase"
  # apt sources inside the image: same mirror apt uses here
  {
    echo "deb $MIRROR bookworm main"
    echo "deb $MIRROR bookworm-updates main"
    if [ -n "$SECMIRROR" ]; then echo "deb $SECMIRROR bookworm-security main"; fi
  } > "$R/etc/apt/sources.list"
  # the apt/dpkg settings of Docker's official debian:bookworm-slim image
  cat > "$R/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";'                 > "$R/etc/apt/apt.conf.d/docker-no-languages"
  echo 'Acquire::GzipIndexes "true";'               > "$R/etc/apt/apt.conf.d/docker-gzip-indexes"
  echo 'Apt::AutoRemove::SuggestsImportant "false";' > "$R/etc/apt/apt.conf.d/docker-autoremove-suggests"
  printf '#!/bin/sh\nexit 101\n' > "$R/usr/sbin/policy-rc.d"; chmod 755 "$R/usr/sbin/policy-rc.d"
  cat > "$R/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  find "$R/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete
  find "$R/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$R"/usr/share/{man,groff,info,lintian,linda}/*
  find "$R/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  rm -rf "$R"/var/cache/apt/*.bin "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/* \
         "$R"/var/log/*.log "$R"/var/log/apt/* "$R"/tmp/*
  : > "$R/etc/hostname"
  tstart
  podman rmi -f "$BASE_IMAGE" >/dev/null 2>&1 || true
  tar --numeric-owner --xattrs -C "$R" -c . \
    | podman import --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
  tstop "podman import"
else
  echo "base image exists, reusing (FORCE_BASE=1 to rebuild)"
fi
echo "base image size: $(podman image inspect "$BASE_IMAGE" --format '{{.Size}}') bytes" | tee -a "$TIMINGS"
podman run --rm "$BASE_IMAGE" cat /etc/debian_version

echo "base image ready: $BASE_IMAGE  (export CONTAINERS_CONF=$WORK/containers.conf)"
