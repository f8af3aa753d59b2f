#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Installs what a fresh machine lacks to build the test kernels, the module and
# the guest image: Debian packages, rust-src and bindgen-cli. Idempotent and
# quick when everything is present.
set -euo pipefail
. "$(dirname "$0")/common.sh"

PACKAGES=(
	"clang$DMR_LLVM" "lld$DMR_LLVM" "llvm$DMR_LLVM" "libclang$DMR_LLVM-dev"
	flex bison bc libelf-dev libssl-dev cpio kmod
	qemu-system-x86 busybox-static dmsetup
	zlib1g-dev libpcre2-dev e2fsprogs util-linux
	curl xz-utils make
	# The guest's static lvm (scripts/host/lvm2-static.sh) links libaio.a.
	libaio-dev
	# --linux debian: a Debian 13 root for the DKMS build.
	mmdebstrap
	# systemd-analyze verify of scripts/systemd/.
	systemd
)

# --plot: also what `cargo xtask monitor` plots with.
[ "${1:-}" = --plot ] && PACKAGES+=(python3-matplotlib)

missing=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing+=("$p")
done
if ((${#missing[@]})); then
	log "installing Debian packages: ${missing[*]}"
	SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
		"${missing[@]}" >/dev/null
fi

if ! rustup component list --installed 2>/dev/null | grep -q '^rust-src'; then
	log "installing rust-src"
	rustup component add rust-src
fi
for c in clippy rustfmt; do
	rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
done

# Pinned: its version is part of every kernel's cache key, and each kernel
# series has a minimum (0.65.1 for 6.12, 0.71.1 from 7.1).
BINDGEN_VERSION=0.73.2
if [ "$(bindgen --version 2>/dev/null)" != "bindgen $BINDGEN_VERSION" ]; then
	log "installing bindgen-cli $BINDGEN_VERSION (a few minutes)"
	cargo install bindgen-cli --version "$BINDGEN_VERSION" --locked --quiet
fi
