# SPDX-License-Identifier: GPL-2.0
# Shared settings for the dm-remap scripts. Source it; do not run it.

# shellcheck disable=SC2034
DMR_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# Everything built outside the repository (kernels, unpacked source, guest
# images) lives here, so a fresh clone on the same machine reuses it.
DMR_CACHE=${DMR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dm-remap}
# Debian ships only the -19 suffixed LLVM tools.
DMR_LLVM=${DMR_LLVM:--19}
JOBS=${JOBS:-$(($(nproc) + 1))}
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '[dm-remap] %s\n' "$*" >&2; }
die() { printf '[dm-remap] error: %s\n' "$*" >&2; exit 1; }

# build_pinned NAME VERSION URL SHA256 SUBDIR BUILD_FN: prints the cached build
# of a guest tool, building it first when the cache lacks it. The tarball at
# URL must match its pinned SHA-256; BUILD_FN runs in the unpacked SUBDIR with
# the work directory as $1 and must leave the program to install in
# "$1/result". The cache key covers the version, the build function and the
# compiler and C library.
build_pinned() {
	local name=$1 version=$2 url=$3 sha=$4 subdir=$5 build=$6 key out work
	key=$( (echo "$version"; declare -f "$build"; gcc -dumpfullversion; getconf GNU_LIBC_VERSION) |
		sha256sum | cut -c1-16)
	out=$DMR_CACHE/tools/$name-$version-$key
	if [ ! -x "$out" ]; then
		mkdir -p "$DMR_CACHE/tools"
		work=$(mktemp -d "$DMR_CACHE/tools/build.XXXXXX")
		log "building a static $name ($version, about a minute)"
		curl -fsSL -o "$work/src.tar" "$url" || { rm -rf "$work"; die "cannot download $url"; }
		echo "$sha  $work/src.tar" | sha256sum -c --quiet - ||
			{ rm -rf "$work"; die "$url does not match its pinned SHA-256"; }
		tar -C "$work" -xf "$work/src.tar"
		(cd "$work/$subdir" && "$build" "$work") || { rm -rf "$work"; die "building $name failed"; }
		strip -o "$out.tmp" "$work/result"
		mv "$out.tmp" "$out"
		rm -rf "$work"
	fi
	echo "$out"
}
