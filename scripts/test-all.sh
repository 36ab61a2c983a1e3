#!/usr/bin/env bash
# Run the whole spm test suite. On a fresh Debian machine it first installs what the tests
# need (real components, not mocks): only packages that are absent, so a second run starts
# at once. Used by .ci/run and by developers alike.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests start for real. Extend this one list when a test needs more.
DEB_PACKAGES="lua-check prometheus python3-aiosmtpd ansible-core openssh-client chromium chromium-driver"

step() { printf '\n==> %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for pkg in $DEB_PACKAGES; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    step "installing Debian packages: ${missing[*]}"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${missing[@]}"
fi

if ! cargo fmt --version >/dev/null 2>&1; then
    step "installing rustfmt"
    rustup component add rustfmt
fi
if ! cargo clippy --version >/dev/null 2>&1; then
    step "installing clippy"
    rustup component add clippy
fi

if ! command -v stylua >/dev/null 2>&1; then
    step "installing stylua"
    # The npm package ships prebuilt binaries; building from crates.io is the fallback.
    npm install -g @johnnymorganz/stylua-bin >/dev/null 2>&1 || cargo install stylua --locked
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --all-targets -- -D warnings

lua_dirs=()
for d in phases scripts policies; do
    if [ -d "$d" ] && find "$d" -name '*.lua' -print -quit | grep -q .; then
        lua_dirs+=("$d")
    fi
done
if [ "${#lua_dirs[@]}" -gt 0 ]; then
    step "stylua --check ${lua_dirs[*]}"
    stylua --check "${lua_dirs[@]}"
    step "luacheck ${lua_dirs[*]}"
    luacheck "${lua_dirs[@]}"
else
    step "no Lua files yet: stylua and luacheck skipped"
fi

step "cargo test"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --no-fail-fast 2>&1 | tee "$log"
status="${PIPESTATUS[0]}"

# The lab stage: real throwaway Debian systems (root, loop devices, btrfs, network
# namespaces). It prints "lab stage skipped: <reason>" where the machine cannot run it.
step "lab stage (real Debian test systems)"
scripts/ops/lab-stage.sh 2>&1 | tee -a "$log"
lab_status="${PIPESTATUS[0]}"
[ "$lab_status" -eq 0 ] || status="$lab_status"
set -e

step "summary"
grep -E '^test result:' "$log" || true
awk '/^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i) ~ /^passed;?$/) p += $(i - 1)
            if ($(i) ~ /^failed;?$/) f += $(i - 1)
            if ($(i) ~ /^ignored;?$/) s += $(i - 1)
        }
     }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
