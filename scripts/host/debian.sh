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

# make_root DIR WHAT INCLUDES: a minimal Debian 13 root (mmdebstrap, trixie
# and the kernel's suite) with the packages INCLUDES lists, unless DIR holds
# a complete one.
make_root() {
	local dir=$1 what=$2 includes=$3 sources=$base/sources-$key.list
	[ ! -f "$dir/.dmr-complete" ] || return 0
	command -v mmdebstrap >/dev/null || die "mmdebstrap is missing: run scripts/host/setup.sh"
	log "making a Debian 13 root with $what (about a minute)"
	rm -rf "$dir"
	mkdir -p "$base"
	cat >"$sources" <<-SRC
		deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main
		deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite main
	SRC
	mmdebstrap --quiet --variant=minbase --mode=root --include="$includes" \
		trixie "$dir" "$sources" >&2 ||
		die "mmdebstrap failed: a version pinned in kernel/debian may have left the archive (move the pin by a commit)"
}

# in_root ROOT CMD...: runs CMD chrooted in ROOT with /proc, /sys and /dev
# bound in and a clean environment (nothing of the host's leaks in), in a
# private mount namespace: the bind mounts go away with it.
in_root() {
	unshare -m sh -c 'r=$1; shift
		for d in proc sys dev; do mount --bind /$d "$r/$d"; done
		exec chroot "$r" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"' sh "$@"
}

root() {
	local root=$base/root-$key includes
	if [ ! -f "$root/.dmr-complete" ]; then
		includes="linux-headers-$release=$kver,linux-source-$(echo "$release" | cut -d. -f1-2)=$kver"
		while read -r _ name version; do includes+=",$name=$version"; done < <(grep '^package ' "$pins")
		includes+=",rust-src,libclang-dev,make,libc6-dev,flex,bison,bc,libelf-dev,libssl-dev,openssl"
		includes+=",xz-utils,kmod,cpio,python3,dwarves"
		make_root "$root" "dkms and the kernel's toolchain" "$includes"
		touch "$root/.dmr-complete"
	fi
	echo "$root"
}

# What the guest suite stacks on, with their dependencies loaded first.
KMODS=(dm-mod dm-flakey dm-delay dm-log-writes dm-zero loop null_blk brd ext4 nvme raid1)

kernel() {
	local dir mods
	dir=$base/kernel-$release-$(echo "$key ${KMODS[*]}" | sha256sum | cut -c1-16)
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
		# KMODS in load order, decompressed (busybox insmod takes plain
		# .ko files).
		: >"$dir/kmods/load-order"
		for m in $(for w in "${KMODS[@]}"; do
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
	in_root "$root" sh -c "dkms add dm-remap/$ver >/dev/null && dkms build dm-remap/$ver -k $release" >&2 || {
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
	in_root "$root" sh /tmp/dkms-refusals.sh "$release" "/usr/src/dm-remap-$ver"
}

# A second, small Debian 13 root with initramfs-tools, udev, dmsetup and
# Debian's kernel modules: where `boot` builds initramfs images as an
# installed system does. Kept apart from the DKMS root, whose packages the
# refusals move around.
bootroot() {
	local root=$base/bootroot-$(echo "$key bootroot-1" | sha256sum | cut -c1-16)
	if [ ! -f "$root/.dmr-complete" ]; then
		make_root "$root" initramfs-tools \
			"initramfs-tools,udev,dmsetup,kmod,busybox,zstd,linux-modules-$release=$kver"
		# Small images: the modules the test machine's disks need, not
		# every storage driver (MODULES=most) an installed system takes.
		sed -i 's/^MODULES=.*/MODULES=list/; s/^COMPRESS=.*/COMPRESS=zstd/' \
			"$root/etc/initramfs-tools/initramfs.conf"
		printf '%s\n' virtio_pci virtio_blk ext4 >>"$root/etc/initramfs-tools/modules"
		touch "$root/.dmr-complete"
	fi
	echo "$root"
}

# boot KO TOOL: the initramfs-tools integration (scripts/initramfs-tools/)
# in the boot root, with KO as the kernel's DKMS-built module and TOOL as
# /usr/sbin/dm-remap-tool: Debian's kernel boots from the initramfs it
# builds with its root file system on a remap device; a kernel without the
# module gets no initramfs (mkinitramfs and update-initramfs fail with the
# hook's message and the image in /boot stays as it was); without a
# remaptab the hook adds nothing. Prints a line per case and "N passed, N
# failed"; fails when one failed.
boot() {
	local ko=$1 tool=$2 root dir work pass=0 failed=0 it mods before
	root=$(bootroot)
	dir=$(kernel)
	work=$(mktemp -d "${TMPDIR:-/tmp}/dmr-boot.XXXXXX")
	# shellcheck disable=SC2064
	trap "rm -rf '$work'" RETURN
	ok() { echo "ok: $*"; pass=$((pass + 1)); }
	bad() { echo "FAIL: $*"; failed=$((failed + 1)); }

	mods=$root/usr/lib/modules/$release
	install -D -m 644 "$ko" "$mods/updates/dkms/dm_remap.ko"
	install -D -m 755 "$tool" "$root/usr/sbin/dm-remap-tool"
	local f
	for f in hooks/dm-remap scripts/local-top/dm-remap scripts/local-block/dm-remap; do
		install -D -m 755 "$DMR_ROOT/scripts/initramfs-tools/$f" "$root/usr/share/initramfs-tools/$f"
	done
	in_root "$root" depmod "$release"
	rm -f "$root/etc/remaptab" "$root/boot/initrd.img-$release"

	# No remaptab: nothing of dm-remap goes in.
	if in_root "$root" mkinitramfs -o /tmp/none.img "$release" >"$work/log" 2>&1 &&
		! in_root "$root" lsinitramfs /tmp/none.img | grep -q 'dm_remap\|dm-remap-tool'; then
		ok "without /etc/remaptab the hook adds nothing"
	else
		bad "without /etc/remaptab: $(tail -5 "$work/log")"
	fi

	cat >"$root/etc/remaptab" <<-TAB
		# name   main                          spare                          options
		dmrroot  /dev/disk/by-id/virtio-dmr-main  /dev/disk/by-id/virtio-dmr-spare  -
	TAB
	it=$root/boot/initrd.img-$release
	if in_root "$root" update-initramfs -c -k "$release" >"$work/log" 2>&1 &&
		in_root "$root" lsinitramfs "/boot/initrd.img-$release" >"$work/list" &&
		grep -q 'dm_remap.ko' "$work/list" && grep -q 'sbin/dm-remap-tool$' "$work/list" &&
		grep -q 'sbin/dmsetup$' "$work/list" && grep -q 'etc/remaptab$' "$work/list" &&
		grep -q 'local-top/dm-remap$' "$work/list" && grep -q 'local-block/dm-remap$' "$work/list"; then
		ok "update-initramfs with /etc/remaptab: module, tool, dmsetup, table and scripts are in"
	else
		bad "update-initramfs with /etc/remaptab: $(tail -5 "$work/log")"
	fi

	# Boot it: a root file system on main (blank spare), mounted through the
	# remap device the initramfs activates; its /sbin/init reports.
	mkdir -p "$work/rootfs"/{bin,sbin,dev,proc,sys,run,tmp,etc}
	cp /bin/busybox "$work/rootfs/bin/busybox"
	cat >"$work/rootfs/sbin/init" <<-'INIT'
		#!/bin/busybox sh
		b=/bin/busybox
		dev=$($b awk '$2 == "/" { print $1 }' /proc/mounts)
		kn=$($b basename "$($b readlink -f "$dev")")
		slaves=$($b ls /sys/block/$kn/slaves 2>/dev/null)
		echo "dmr-boot: root=$dev kernel-name=$kn dm-name=$($b cat /sys/block/$kn/dm/name 2>/dev/null)" \
			"slaves="$slaves \
			"module=$([ -d /sys/module/dm_remap ] && echo loaded)" \
			"stat=$([ -r /sys/module/dm_remap/stat/$kn/summary ] && echo yes)" \
			"file=$($b cat /etc/dmr-hello)"
		$b poweroff -f
	INIT
	chmod +x "$work/rootfs/sbin/init"
	echo "dm-remap root" >"$work/rootfs/etc/dmr-hello"
	truncate -s 64M "$work/main.img"
	truncate -s 16M "$work/spare.img"
	mke2fs -q -t ext4 -d "$work/rootfs" "$work/main.img" || die "mke2fs failed"
	timeout 400 qemu-system-x86_64 -accel tcg -cpu max -m 1024 -nodefaults -no-reboot \
		-display none -serial stdio -kernel "$dir/vmlinuz" -initrd "$it" \
		-append "console=ttyS0 root=/dev/mapper/dmrroot ro panic=-1 loglevel=3" \
		-drive file="$work/main.img",format=raw,if=none,id=m \
		-device virtio-blk-pci,drive=m,serial=dmr-main \
		-drive file="$work/spare.img",format=raw,if=none,id=s \
		-device virtio-blk-pci,drive=s,serial=dmr-spare </dev/null >"$work/console" 2>&1
	local line
	line=$(grep -a 'dmr-boot:' "$work/console" | tail -1 | tr -d '\r')
	case $line in
	*"root=/dev/mapper/dmrroot kernel-name=dm-"*"dm-name=dmrroot slaves=vda vdb module=loaded stat=yes file=dm-remap root"*)
		ok "boot: the root file system is mounted from the remap device ($line)" ;;
	*) bad "boot: no root on the remap device: ${line:-no report}; console: $(tail -20 "$work/console")" ;;
	esac
	if [ "$(head -c 7 "$work/spare.img")" = dmremap ]; then
		ok "boot: the spare was formatted by the activation"
	else
		bad "boot: the spare holds no dm-remap metadata"
	fi

	# A kernel whose module build failed: refused, and /boot keeps its image.
	before=$(sha256sum <"$it")
	rm "$mods/updates/dkms/dm_remap.ko"
	in_root "$root" depmod "$release"
	if in_root "$root" update-initramfs -u -k "$release" >"$work/log" 2>&1; then
		bad "update-initramfs without the module succeeded"
	elif ! grep -q "dm-remap: E: kernel $release has no dm_remap module" "$work/log"; then
		bad "update-initramfs without the module failed without the hook's message: $(tail -5 "$work/log")"
	elif [ "$(sha256sum <"$it")" != "$before" ]; then
		bad "update-initramfs without the module changed /boot/initrd.img-$release"
	else
		ok "without the module update-initramfs fails with the hook's message; the image in /boot is unchanged"
	fi
	# (mkinitramfs creates its output file, empty, before it starts.)
	if in_root "$root" mkinitramfs -o /tmp/x.img "$release" >"$work/log" 2>&1 || [ -s "$root/tmp/x.img" ]; then
		bad "mkinitramfs without the module made an image"
	else
		ok "without the module mkinitramfs fails and writes no image"
	fi
	rm -f "$root/etc/remaptab" "$it" "$root/tmp/none.img" "$root/tmp/x.img"
	echo "initramfs-tools: $pass passed, $failed failed"
	[ "$failed" = 0 ]
}

case ${1:-} in
root | kernel | module | refusals | bootroot) "$1" ;;
boot)
	[ $# = 3 ] || die "usage: $0 boot KO TOOL"
	boot "$2" "$3"
	;;
*) die "usage: $0 root|kernel|module|refusals|bootroot|boot KO TOOL" ;;
esac
