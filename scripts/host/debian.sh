#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Debian 13's own kernel for the guest, and dm_remap.ko built for it by DKMS
# the way a user's machine builds it (kernel/debian pins every version).
#
#   scripts/host/debian.sh root      a Debian 13 root (mmdebstrap) with the
#                                    kernel's headers and source, dkms and the
#                                    kernel's toolchain; prints its path
#   scripts/host/debian.sh kernel    Debian's vmlinuz, its .config and the
#                                    modules the guest loads; prints the
#                                    directory
#   scripts/host/debian.sh module    `dkms build` of this tree in the root;
#                                    prints the path of dm_remap.ko
#   scripts/host/debian.sh refusals  the DKMS build's refusals, each staged
#                                    in the root (scripts/host/dkms-refusals.sh)
#
# All of it is cached under $DMR_CACHE/debian, keyed by kernel/debian.
set -euo pipefail
. "$(dirname "$0")/common.sh"

pins=$DMR_ROOT/kernel/debian
read -r _ release kver suite < <(grep '^kernel ' "$pins")
key=$(grep -Ev '^[[:space:]]*(#|$)' "$pins" | sha256sum | cut -c1-16)
base=$DMR_CACHE/debian

root() {
	local root=$base/root-$key includes
	if [ ! -f "$root/.dmr-complete" ]; then
		command -v mmdebstrap >/dev/null || die "mmdebstrap is missing: run scripts/host/setup.sh"
		includes="linux-headers-$release=$kver,linux-source-$(echo "$release" | cut -d. -f1-2)=$kver"
		while read -r _ name version; do includes+=",$name=$version"; done < <(grep '^package ' "$pins")
		includes+=",rust-src,libclang-dev,make,libc6-dev,flex,bison,bc,libelf-dev,libssl-dev,openssl"
		includes+=",xz-utils,kmod,cpio,python3,dwarves"
		log "making a Debian 13 root with dkms and the kernel's toolchain (about a minute)"
		rm -rf "$root"
		mkdir -p "$base"
		local sources=$base/sources-$key.list
		cat >"$sources" <<-SRC
			deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main
			deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite main
		SRC
		mmdebstrap --quiet --variant=minbase --mode=root --include="$includes" \
			trixie "$root" "$sources" >&2 ||
			die "mmdebstrap failed: a version pinned in kernel/debian may have left the archive (move the pin by a commit)"
		touch "$root/.dmr-complete"
	fi
	echo "$root"
}

kernel() {
	local dir=$base/kernel-$release-$key mods
	if [ ! -f "$dir/.dmr-complete" ] || [ ! -f "$dir/.config" ]; then
		rm -rf "$dir"
		mkdir -p "$dir/pkg" "$dir/kmods"
		for p in linux-binary-$release linux-modules-$release linux-headers-$release; do
			dpkg-deb -x "$(deb_fetch "$p" "$kver" debian "$suite")" "$dir/pkg"
		done
		mods=$dir/pkg/usr/lib/modules/$release
		cp "$mods/vmlinuz" "$dir/vmlinuz"
		# The kernel's configuration: the runner reads what a test needs
		# (`# dmr-needs:`) from it, as from the kernels we build.
		cp "$dir/pkg/usr/src/linux-headers-$release/.config" "$dir/.config"
		depmod -b "$dir/pkg/usr" "$release" 2>/dev/null
		# What the guest suite stacks on, with their dependencies in load
		# order, decompressed (busybox insmod takes plain .ko files).
		local want=(dm-mod dm-flakey dm-delay dm-log-writes dm-zero loop null_blk brd ext4 nvme)
		: >"$dir/kmods/load-order"
		for m in $(for w in "${want[@]}"; do
			modprobe -d "$dir/pkg/usr" -S "$release" --show-depends "$w" ||
				die "module $w is not in linux-modules-$release"
		done | awk '$1 == "insmod" && !seen[$2]++ { print $2 }'); do
			local name
			name=$(basename "$m" .xz)
			xz -dc "$m" >"$dir/kmods/$name"
			echo "$name" >>"$dir/kmods/load-order"
		done
		rm -rf "$dir/pkg"
		touch "$dir/.dmr-complete"
	fi
	echo "$dir"
}

module() {
	local root ver
	root=$(root)
	ver=$(sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' "$DMR_ROOT/dkms.conf")
	rm -rf "$root/usr/src/dm-remap-$ver" "$root/var/lib/dkms/dm-remap"
	make -s -C "$DMR_ROOT" dkms-install DESTDIR="$root"
	# A private mount namespace: the bind mounts go away with it.
	unshare -m sh -c '
		for d in proc sys dev; do mount --bind /$d "$1/$d"; done
		chroot "$1" sh -c "dkms add dm-remap/$2 >/dev/null && dkms build dm-remap/$2 -k $3"
	' sh "$root" "$ver" "$release" >&2 || {
		cat "$root/var/lib/dkms/dm-remap/$ver/build/make.log" >&2 2>/dev/null || true
		die "dkms build failed"
	}
	local ko=$root/var/lib/dkms/dm-remap/$ver/$release/x86_64/module/dm_remap.ko
	[ -f "$ko" ] || die "dkms build left no $ko"
	echo "$ko"
}

# Stages, in the root, each thing the DKMS build depends on as missing or
# mismatched, and checks the one-sentence refusals (after `module`, which
# installs the tree in the root).
refusals() {
	local root ver
	root=$(root)
	ver=$(sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' "$DMR_ROOT/dkms.conf")
	[ -f "$root/usr/src/dm-remap-$ver/dkms.conf" ] || make -s -C "$DMR_ROOT" dkms-install DESTDIR="$root"
	cp "$DMR_ROOT/scripts/host/dkms-refusals.sh" "$root/tmp/dkms-refusals.sh"
	unshare -m sh -c '
		for d in proc sys dev; do mount --bind /$d "$1/$d"; done
		chroot "$1" sh /tmp/dkms-refusals.sh "$2" "/usr/src/dm-remap-$3"
	' sh "$root" "$release" "$ver"
}

case ${1:-} in
root | kernel | module | refusals) "$1" ;;
*) die "usage: $0 root|kernel|module|refusals" ;;
esac
