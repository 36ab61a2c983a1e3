#!/usr/bin/env bash
# The lab stage: real throwaway Debian systems (issue 12).
#
# Installs the host packages, probes the kernel features the lab needs and, when they are
# there, runs the lab tests (tests/lab_*.rs) with SPM_LAB_TESTS=1. When a feature is
# missing it prints "lab stage skipped: <reason>" and exits 0, so the fast suites stay the
# default on machines without root, loop devices, btrfs or network namespaces.
#
# Usage: scripts/ops/lab-stage.sh            (from the repository root)
#        SPM_LAB_STAGE=require scripts/ops/lab-stage.sh   (a missing feature fails)
set -euo pipefail
cd "$(dirname "$0")/../.."

skip() {
    echo "lab stage skipped: $*"
    if [ "${SPM_LAB_STAGE:-}" = require ]; then exit 1; fi
    exit 0
}

[ "$(id -u)" = 0 ] || skip "not root"
grep -qw btrfs /proc/filesystems || skip "kernel has no btrfs"
losetup -f >/dev/null 2>&1 || skip "no free loop device (losetup -f)"
if ip netns add spm-lab-probe 2>/dev/null; then
    ip netns del spm-lab-probe
else
    skip "cannot create network namespaces (ip netns add)"
fi

# The sparse btrfs image lives under /var/lib/spm-lab: when the disk under it fills, the
# loop device's writes fail and the systems read back I/O errors. Same floor as the code.
mkdir -p /var/lib/spm-lab
free_kib=$(df --output=avail -k /var/lib/spm-lab | tail -1 | tr -d ' ')
[ "${free_kib:-0}" -ge $((4 * 1024 * 1024)) ] ||
    skip "only $((free_kib / 1024)) MiB free under /var/lib/spm-lab (the lab image needs 4 GiB)"

need=()
for p in debootstrap:debootstrap mkfs.btrfs:btrfs-progs systemd-nspawn:systemd-container \
         zstd:zstd dpkg-scanpackages:dpkg-dev nsenter:util-linux python3:python3; do
    command -v "${p%%:*}" >/dev/null 2>&1 || need+=("${p##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "lab stage: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    for try in 1 2 3 4 5 6; do
        if apt-get install -y -q "${need[@]}" >/tmp/spm-lab-apt.log 2>&1; then break; fi
        if [ "$try" = 1 ]; then apt-get update -q >/dev/null 2>&1 || true; fi
        if grep -q 'Could not get lock' /tmp/spm-lab-apt.log; then sleep 10; continue; fi
        [ "$try" -lt 2 ] && continue
        cat /tmp/spm-lab-apt.log
        echo "lab stage failed: cannot install ${need[*]} (apt-get install -y ${need[*]})"; exit 1
    done
fi
# The real package pair is resolved with apt-cache madison on a cold cache.
[ -n "$(ls /var/lib/apt/lists/ 2>/dev/null | grep -v lock | head -1)" ] || apt-get update -q >/dev/null

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
echo "lab stage: running tests/lab_*.rs (cache: ${SPM_LAB_CACHE:-/var/cache/spm-lab})"
tests=()
for f in tests/lab_*.rs; do tests+=(--test "$(basename "$f" .rs)"); done
SPM_LAB_TESTS=1 cargo test "${tests[@]}" -- --test-threads=1
