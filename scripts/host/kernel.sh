#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Builds (or finds in the cache) the test kernel of one series and flavour and
# prints its build directory, which is the KDIR for the module build.
#
#   scripts/host/kernel.sh SERIES debug|perf      (SERIES: 6.12, 7.3, ...)
#
# Source: the Debian source package kernel/versions pins for SERIES
# (linux-source-<series>), downloaded and unpacked once into the cache. Config:
# tinyconfig + kernel/base.config + kernel/<flavour>.config. The cache key
# covers the fragments, the source package version and the versions of every
# tool whose output ends up in the build (rustc, bindgen, clang), so a change of
# any of them builds afresh while an unchanged setup reuses the kernel.
set -euo pipefail
. "$(dirname "$0")/common.sh"

[ $# -eq 2 ] || die "usage: $0 SERIES debug|perf"
series=$1 flavour=$2
case $flavour in debug | perf) ;; *) die "unknown kernel flavour '$flavour' (debug|perf)" ;; esac

# Bump when the way the kernel is built changes in a way the key cannot see.
RECIPE=1
read -r package srcver archive suite < <(kernel_pin "$series")

key=$({
	echo "recipe $RECIPE $srcver"
	rustc --version
	bindgen --version
	"clang$DMR_LLVM" --version | head -1
	# The options, not the comments: rewording one rebuilds nothing.
	grep -Ehv '^[[:space:]]*(#|$)' "$DMR_ROOT/kernel/base.config" "$DMR_ROOT/kernel/$flavour.config"
} | sha256sum | cut -c1-16)

out="$DMR_CACHE/kernel/$flavour-$key"
if [ -f "$out/.dmr-complete" ]; then
	echo "$out"
	exit 0
fi

src="$DMR_CACHE/src/linux-$srcver"
if [ ! -f "$src/.dmr-unpacked" ]; then
	deb=$(deb_fetch "$package" "$srcver" "$archive" "$suite")
	log "unpacking $package $srcver"
	rm -rf "$src"
	mkdir -p "$src"
	dpkg-deb --fsys-tarfile "$deb" | tar -xO "./usr/src/$package.tar.xz" |
		tar -xJ -C "$src" --strip-components=1
	touch "$src/.dmr-unpacked"
fi

kmake() { make -C "$src" O="$out" ARCH=x86_64 LLVM="$DMR_LLVM" "$@"; }

log "building the $series $flavour kernel in $out (about 10 minutes on 2 cores)"
start=$(date +%s)
rm -rf "$out"
mkdir -p "$out"
kmake -s tinyconfig
"$src/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" \
	"$DMR_ROOT/kernel/base.config" "$DMR_ROOT/kernel/$flavour.config" >/dev/null
kmake -s olddefconfig

# Every requested option must have survived olddefconfig. The fragments serve
# every series: an option this kernel does not have at all (LIBCRC32C and
# PROC_SYSCTL went away after 6.12: crc32c and sysctl are always built in)
# is skipped, anything else that did not stick fails the build.
known=$(grep -rhoE --include='Kconfig*' '^[[:space:]]*(menu)?config [A-Za-z0-9_]+' "$src" |
	awk '{print "CONFIG_" $2}' | sort -u)
bad=0
while IFS= read -r line; do
	case $line in
	CONFIG_*=*)
		opt=${line%%=*}
		grep -qx "$opt" <<<"$known" || continue
		grep -qx "$line" "$out/.config" || { log "config: $line did not stick"; bad=1; }
		;;
	"# CONFIG_"*" is not set")
		opt=${line#\# }; opt=${opt%% *}
		! grep -q "^$opt=" "$out/.config" || { log "config: $opt should be off"; bad=1; }
		;;
	esac
done < <(cat "$DMR_ROOT/kernel/base.config" "$DMR_ROOT/kernel/$flavour.config")
[ $bad -eq 0 ] || die "kernel config does not match the fragments"

kmake -s -j"$JOBS" >"$out/build.log" 2>&1 || { tail -50 "$out/build.log" >&2; die "kernel build failed"; }
echo $(($(date +%s) - start)) >"$out/.dmr-build-seconds"
touch "$out/.dmr-complete"
log "$series $flavour kernel built in $(cat "$out/.dmr-build-seconds") s"
echo "$out"
