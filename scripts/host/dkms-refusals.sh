#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Runs inside the Debian 13 root (scripts/host/debian.sh refusals): stages
# each thing scripts/dkms/build.sh depends on as missing or mismatched, and
# checks that the build refuses with one sentence naming it, before any
# compiler runs. Nothing in the root is changed: each case puts stand-ins
# first in PATH or points the script at a doctored copy of the headers'
# .config.
#
#   dkms-refusals.sh KERNELRELEASE SOURCE_DIR
set -u
kver=$1
src=$2
build=$src/scripts/dkms/build.sh
headers=/lib/modules/$kver/build
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pass=0 failed=0

# case NAME EXPECTED [ENV=VALUE...] -- [HEADERS_DIR]: build.sh must fail
# with exactly one line of output, starting "dm-remap: " and holding
# EXPECTED.
case_() {
	name=$1 want=$2
	shift 2
	envs=
	while [ $# -gt 0 ] && [ "$1" != -- ]; do envs="$envs $1"; shift; done
	[ $# -gt 0 ] && shift
	# shellcheck disable=SC2086
	env $envs sh "$build" "$kver" "$@" >"$work/out" 2>&1
	rc=$?
	lines=$(wc -l <"$work/out")
	if [ $rc -ne 0 ] && [ "$lines" -eq 1 ] && grep -q "^dm-remap: .*$want" "$work/out"; then
		pass=$((pass + 1))
		echo "PASS refusal: $name: $(cat "$work/out")"
	else
		failed=$((failed + 1))
		echo "FAIL refusal: $name (status $rc, $lines lines; want one line with '$want'):"
		sed 's/^/| /' "$work/out" | head -20
	fi
}

# stand_in DIR NAME SCRIPT: a command NAME in DIR that runs SCRIPT (sh).
stand_in() {
	mkdir -p "$1"
	printf '#!/bin/sh\n%s\n' "$3" >"$1/$2"
	chmod +x "$1/$2"
}

# A PATH without NAME: every other command of /usr/bin and /bin linked.
path_without() {
	d=$work/no-$1
	mkdir -p "$d"
	for f in /usr/bin/* /bin/*; do
		[ "$(basename "$f")" = "$1" ] || ln -sf "$f" "$d/" 2>/dev/null
	done
	rm -f "$d/$1"
	echo "$d"
}

real_rustc=$(command -v rustc)
real_bindgen=$(command -v bindgen)
want_cc=$(sed -n 's/^CONFIG_CC_VERSION_TEXT="\(.*\)"$/\1/p' "$headers/.config")
cc=${want_cc%% *}

case_ "no headers" "no kernel headers for $kver at $work/none: install linux-headers-$kver" -- "$work/none"

mkdir -p "$work/norust"
grep -v '^CONFIG_RUST=' "$headers/.config" >"$work/norust/.config"
echo '# CONFIG_RUST is not set' >>"$work/norust/.config"
case_ "CONFIG_RUST off" "built without Rust support (CONFIG_RUST is not set)" -- "$work/norust"

case_ "no rustc" "rustc is not installed" "PATH=$(path_without rustc)"

stand_in "$work/rustc-other" rustc 'echo "rustc 1.90.0 (1159e78c4 2025-09-14)"'
case_ "another rustc" "rustc is 'rustc 1.90.0 (1159e78c4 2025-09-14)' but kernel $kver was built with" \
	"PATH=$work/rustc-other:$PATH"

stand_in "$work/no-rust-src" rustc "[ \"\$*\" = '--print sysroot' ] && { echo $work/sysroot; exit; }; exec $real_rustc \"\$@\""
case_ "no rust-src" "the Rust standard library source is missing ($work/sysroot/lib/rustlib/src/rust): install rust-src" \
	"PATH=$work/no-rust-src:$PATH"

stand_in "$work/cc-other" "$cc" 'echo "gcc-14 (Debian 14.3.0-1) 14.3.0"'
case_ "another C compiler" "$cc is 'gcc-14 (Debian 14.3.0-1) 14.3.0' but kernel $kver was built with '$want_cc'" \
	"PATH=$work/cc-other:$PATH"

case_ "no bindgen" "bindgen is not installed" "PATH=$(path_without bindgen)"

stand_in "$work/bindgen-other" bindgen 'echo "bindgen 0.72.0"'
case_ "another bindgen" "bindgen is 'bindgen 0.72.0' but kernel $kver was built with" \
	"PATH=$work/bindgen-other:$PATH"

stand_in "$work/no-libclang" bindgen "[ \"\$1\" = --version ] && exec $real_bindgen --version; echo 'Unable to find libclang' >&2; exit 1"
case_ "no libclang" "bindgen cannot run: it needs libclang (Debian: apt install libclang-dev)" \
	"PATH=$work/no-libclang:$PATH"

# The source package of another upload than the kernel's headers.
series=$(echo "$kver" | sed -n 's/^\([0-9]*\.[0-9]*\).*/\1/p')
stand_in "$work/source-other" dpkg-query "case \"\$*\" in *linux-source-*) echo 9.9.9-1;; *) exec /usr/bin/dpkg-query \"\$@\";; esac"
case_ "source of another upload" "linux-source-$series is version 9.9.9-1 but kernel $kver is .*: the Rust build products must come from the same upload" \
	"PATH=$work/source-other:$PATH"

stand_in "$work/no-source" dpkg-query "case \"\$*\" in *linux-source-*) exit 1;; *) exec /usr/bin/dpkg-query \"\$@\";; esac"
case_ "no kernel source" "install linux-source-$series (version .*) to build them" \
	"PATH=$work/no-source:$PATH"

echo "refusals: $pass passed, $failed failed"
[ $failed -eq 0 ]
