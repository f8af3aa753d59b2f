#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Builds dm_remap.ko for an installed distribution kernel, from its headers
# package: what dkms.conf runs, and what a user runs by hand.
#
#   scripts/dkms/build.sh KERNELRELEASE [HEADERS_DIR]
#
# HEADERS_DIR defaults to /lib/modules/KERNELRELEASE/build. A headers tree
# with the kernel's Rust build products (rust/libkernel.rmeta: Ubuntu's
# linux-lib-rust-*) is used as it is. Debian's headers carry none: they are
# rebuilt from linux-source-X.Y of exactly the same upload, with the rustc,
# bindgen, C compiler and .config the kernel was built with, in a private
# directory ($DMR_KERNEL_CACHE, default /var/cache/dm-remap/kernel), once per
# kernel; every Rust symbol they export must appear in the kernel's
# Module.symvers (symbol names carry a hash of the compiler and the crate:
# any difference would load nothing). The module build then fails on any
# symbol the module needs that the kernel does not export (modpost).
#
# Everything it depends on is checked first; a refusal is one sentence
# naming what is missing or mismatched and how to get it.
set -eu

die() { printf 'dm-remap: %s\n' "$*" >&2; exit 1; }
log() { printf 'dm-remap: %s\n' "$*" >&2; }

[ $# -ge 1 ] || die "usage: $0 KERNELRELEASE [HEADERS_DIR]"
kver=$1
headers=${2:-/lib/modules/$kver/build}
here=$(cd "$(dirname "$0")/../.." && pwd)

# What the kernel was built with, from its .config.
[ -f "$headers/.config" ] ||
	die "no kernel headers for $kver at $headers: install linux-headers-$kver"
conf() { sed -n "s/^$1=\"\{0,1\}\([^\"]*\)\"\{0,1\}\$/\1/p" "$headers/.config"; }
[ "$(conf CONFIG_RUST)" = y ] ||
	die "kernel $kver is built without Rust support (CONFIG_RUST is not set): dm-remap cannot be built for it"
want_rustc=$(conf CONFIG_RUSTC_VERSION_TEXT)
want_cc=$(conf CONFIG_CC_VERSION_TEXT)
want_bindgen=$(conf CONFIG_BINDGEN_VERSION_TEXT)

# rustc: exactly the kernel's (the Rust symbol names depend on it).
command -v rustc >/dev/null ||
	die "rustc is not installed: kernel $kver was built with '$want_rustc' (Debian: apt install rustc)"
have_rustc=$(rustc --version)
[ "$have_rustc" = "$want_rustc" ] ||
	die "rustc is '$have_rustc' but kernel $kver was built with '$want_rustc': install that rustc (Debian: the rustc package of the kernel's release) first in PATH"
sysroot=$(rustc --print sysroot)
[ -f "$sysroot/lib/rustlib/src/rust/library/core/src/lib.rs" ] ||
	die "the Rust standard library source is missing ($sysroot/lib/rustlib/src/rust): install rust-src"

# The C compiler: the kernel's own (Debian builds with GCC; never clang).
cc=${want_cc%% *}
command -v "$cc" >/dev/null ||
	die "kernel $kver was built with '$want_cc' but $cc is not installed (Debian: apt install ${cc#x86_64-linux-gnu-})"
have_cc=$("$cc" --version | head -1)
[ "$have_cc" = "$want_cc" ] ||
	die "$cc is '$have_cc' but kernel $kver was built with '$want_cc': install that compiler version"
case $want_cc in *clang*) llvm=1 ;; *) llvm= ;; esac

# bindgen, and the libclang it loads.
command -v bindgen >/dev/null ||
	die "bindgen is not installed (kernel $kver was built with '$want_bindgen'; Debian: apt install bindgen)"
have_bindgen=$(bindgen --version 2>/dev/null | head -1)
[ -z "$want_bindgen" ] || [ "$have_bindgen" = "$want_bindgen" ] ||
	die "bindgen is '$have_bindgen' but kernel $kver was built with '$want_bindgen': install that bindgen (Debian: the bindgen package of the kernel's release)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo 'struct dmr_probe { int x; };' >"$tmp/probe.h"
bindgen "$tmp/probe.h" -o "$tmp/probe.rs" >/dev/null 2>&1 ||
	die "bindgen cannot run: it needs libclang (Debian: apt install libclang-dev)"

kmake() { d=$1; shift; make -C "$d" ${llvm:+LLVM=$llvm} CC="$cc" HOSTCC="$cc" "$@"; }

if [ -f "$headers/rust/libkernel.rmeta" ]; then
	kdir=$headers
else
	# Debian: rebuild rust/ from the source of the same upload.
	command -v dpkg-query >/dev/null ||
		die "the headers at $headers carry no Rust build products (rust/libkernel.rmeta), and only Debian's can be completed: install your distribution's Rust build products for $kver"
	hpkg=$(dpkg-query -S "$(readlink -f "$headers")/.config" 2>/dev/null | cut -d: -f1) ||
		die "no package owns $headers: install linux-headers-$kver"
	hver=$(dpkg-query -W -f='${Version}' "$hpkg")
	series=$(echo "$kver" | sed -n 's/^\([0-9]*\.[0-9]*\).*/\1/p')
	spkg=linux-source-$series
	sver=$(dpkg-query -W -f='${Version}' "$spkg" 2>/dev/null) ||
		die "kernel $kver's headers carry no Rust build products: install $spkg (version $hver) to build them"
	[ "$sver" = "$hver" ] ||
		die "$spkg is version $sver but kernel $kver is $hver: the Rust build products must come from the same upload (the archive keeps only the newest source; upgrade the kernel to $sver, or find $spkg $hver)"
	tarball=/usr/src/$spkg.tar.xz
	[ -f "$tarball" ] || die "$tarball is missing: reinstall $spkg"

	key=$( (cat "$headers/.config"; echo "$have_rustc $have_cc $(bindgen --version) $sver") |
		sha256sum | cut -c1-16)
	cache=${DMR_KERNEL_CACHE:-/var/cache/dm-remap/kernel}
	kdir=$cache/$kver-$key/headers
	if [ ! -f "$cache/$kver-$key/.complete" ]; then
		log "building the Rust products of kernel $kver from $spkg $sver (a few minutes, once)"
		work=$cache/$kver-$key
		rm -rf "$work"
		mkdir -p "$work/src"
		tar -xJf "$tarball" -C "$work/src" --strip-components=1
		cp "$headers/.config" "$headers/Module.symvers" "$work/src/"
		# The headers' .kernelvariables say how Debian ran make (the
		# release, the compiler prefix).
		cp "$headers/.kernelvariables" "$work/src/" 2>/dev/null || true
		(
			cd "$work/src"
			kmake . -s olddefconfig
			kmake . -s rustavailable >/dev/null ||
				die "the kernel source does not accept this Rust toolchain (make rustavailable)"
			kmake . -s prepare
			kmake . -s rust/
		) >"$work/build.log" 2>&1 || { tail -20 "$work/build.log" >&2; die "building the Rust products of kernel $kver failed (log: $work/build.log)"; }

		# Every Rust symbol the rebuilt rust/ exports must be one the
		# kernel exports under the same name.
		sed -n 's/^EXPORT_SYMBOL_RUST_GPL(\(.*\));$/\1/p' "$work"/src/rust/exports_*_generated.h |
			sort -u >"$work/rebuilt.syms"
		awk '$3 == "vmlinux" { print $2 }' "$headers/Module.symvers" |
			sort -u >"$work/kernel.syms"
		# (And the other way: every mangled Rust name the kernel exports
		# must have been rebuilt.)
		missing=$(comm -23 "$work/rebuilt.syms" "$work/kernel.syms" | wc -l)
		unbuilt=$(grep '^_R' "$work/kernel.syms" | comm -23 - "$work/rebuilt.syms" | wc -l)
		missing=$((missing + unbuilt))
		total=$(wc -l <"$work/rebuilt.syms")
		[ "$total" -gt 0 ] || die "the rebuilt Rust products export no symbols (log: $work/build.log)"
		[ "$missing" -eq 0 ] ||
			die "$missing Rust symbols differ between the rebuilt products ($total exports) and kernel $kver's Module.symvers: the source, rustc or .config differs from the kernel's build"

		# A private copy of the headers tree with the products added.
		mkdir -p "$kdir"
		cp -a "$headers/." "$kdir/"
		# Debian's headers link scripts/ and tools/ into linux-kbuild-*:
		# scripts/ gets a copy (target.json goes in), tools/ an absolute link.
		rm -f "$kdir/scripts" "$kdir/tools"
		cp -a "$(readlink -f "$headers/scripts")" "$kdir/scripts"
		[ ! -e "$headers/tools" ] || ln -s "$(readlink -f "$headers/tools")" "$kdir/tools"
		cp "$work/src/scripts/target.json" "$kdir/scripts/"
		sed -i "s|^KBUILD_OUTPUT=.*|KBUILD_OUTPUT=$kdir|" "$kdir/Makefile"
		mkdir -p "$kdir/rust"
		cp -a "$work"/src/rust/*.rmeta "$work"/src/rust/*.so "$kdir/rust/"
		# What our Kbuild reads of the kernel's rust/ (scripts/kbuild).
		for f in Makefile bindgen_parameters kernel/str.rs macros/module.rs; do
			mkdir -p "$kdir/rust/$(dirname "$f")"
			cp "$work/src/rust/$f" "$kdir/rust/$f"
		done
		rm -rf "$work/src"
		touch "$work/.complete"
		log "Rust products of kernel $kver ready ($total exported symbols, all in Module.symvers)"
	fi
fi

kmake "$kdir" M="$here" modules
