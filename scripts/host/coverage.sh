#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Coverage of the host tests over the module's pure logic (src/logic/): what
# the fault enumerations and fuzzers reach of the loader, the parsers and the
# metadata code. Prints llvm-cov's per-file report (regions, functions,
# lines; stable rustc reports no branches). The files' inline test modules
# are counted too.
#
#   scripts/host/coverage.sh
set -euo pipefail
. "$(dirname "$0")/common.sh"

rustup component list --installed 2>/dev/null | grep -q '^llvm-tools' ||
	rustup component add llvm-tools-preview
host=$(rustc -vV | sed -n 's/^host: //p')
bin=$(rustc --print sysroot)/lib/rustlib/$host/bin
out=$DMR_CACHE/coverage
rm -rf "$out/prof"
mkdir -p "$out/prof"
cd "$DMR_ROOT"
RUSTFLAGS="-C instrument-coverage" LLVM_PROFILE_FILE="$out/prof/%p-%m.profraw" \
	CARGO_TARGET_DIR="$out/target" cargo test -q -p dm-remap --lib >&2
"$bin/llvm-profdata" merge -sparse "$out"/prof/*.profraw -o "$out/all.profdata"
obj=$(ls -t "$out"/target/debug/deps/dm_remap-* | grep -v '\.d$' | head -1)
"$bin/llvm-cov" report --instr-profile "$out/all.profdata" "$obj" \
	--ignore-filename-regex='(/rustc/|/registry/|src/host\.rs)'
