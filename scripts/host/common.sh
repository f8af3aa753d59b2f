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

# The kernel series the scripts know, in the order tests run them.
kernel_series() { grep -Ev '^[[:space:]]*(#|$)' "$DMR_ROOT/kernel/versions" | cut -d' ' -f1; }

# kernel_pin SERIES: prints "<package> <version> <archive> <suite>" of SERIES
# from kernel/versions.
kernel_pin() {
	local line
	line=$(grep -E "^$(printf '%s' "$1" | sed 's/\./\\./g') " "$DMR_ROOT/kernel/versions") ||
		die "kernel series '$1' is not in kernel/versions (known: $(kernel_series | tr '\n' ' '))"
	echo "${line#* }"
}

# deb_fetch PACKAGE VERSION ARCHIVE SUITE: prints the path of that exact .deb,
# downloading it into the cache first. Package lists are read with an apt
# configuration of our own (under $DMR_CACHE/apt), so any Debian suite of the
# archive can be read on this machine without touching the system's apt state.
deb_fetch() {
	local pkg=$1 ver=$2 archive=$3 suite=$4 dir file apt
	dir=$DMR_CACHE/debs
	file=$(ls "$dir/${pkg}_${ver//:/%3a}"_*.deb 2>/dev/null | head -1)
	if [ -z "$file" ]; then
		mkdir -p "$dir"
		apt=$DMR_CACHE/apt/$suite
		mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial"
		cat >"$apt/sources.list" <<-SRC
			deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/$archive $suite main
		SRC
		local opts=(-o "Dir::Etc::sourcelist=$apt/sources.list" -o Dir::Etc::sourceparts=-
			-o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o APT::Get::List-Cleanup=0
			-o Debug::NoLocking=1 -o APT::Sandbox::User=root)
		log "reading the package list of $suite"
		apt-get -qq "${opts[@]}" update >/dev/null ||
			die "cannot read the package list of $suite from deb.debian.org/$archive"
		log "downloading $pkg $ver"
		(cd "$dir" && apt-get -qq "${opts[@]}" download "$pkg=$ver" >/dev/null 2>&1) || {
			local now
			now=$(apt-cache "${opts[@]}" policy "$pkg" 2>/dev/null | sed -n 's/^ *Candidate: //p')
			die "$pkg $ver (pinned in kernel/versions) is no longer in $suite (it now has ${now:-no version}): move the pin by a commit"
		}
		file=$(ls "$dir/${pkg}_${ver//:/%3a}"_*.deb 2>/dev/null | head -1)
		[ -n "$file" ] || die "apt-get download left no $pkg $ver in $dir"
	fi
	echo "$file"
}
