#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Prints the flags that say what the kernel tree at SRCTREE offers where
# kernel series differ, found by looking at its source: with `rust`, rustc
# cfgs for src/dm/compat.rs (the way the kernel states its own config to
# rustc, include/generated/rustc_cfg); with `c`, defines for
# include/dm_remap_compat.h. Kbuild calls it. A file is looked for in
# SRCTREE, then in OBJTREE (a distribution's headers tree completed by
# scripts/dkms/build.sh keeps the kernel's rust/ sources there). A tree
# without the files probed gets no flags and builds as the oldest supported
# kernel (6.12).
#
#   scripts/kbuild/kernel-cfg.sh rust|c SRCTREE [OBJTREE]
lang=$1 srctree=$2 objtree=${3:-$2}
has() { # FILE PATTERN
	if [ -f "$srctree/$1" ]; then f=$srctree/$1; else f=$objtree/$1; fi
	grep -qE "$2" "$f" 2>/dev/null
}
probe() { # FILE PATTERN CFG
	has "$1" "$2" && printf -- '--cfg %s ' "$3"
}
define() { # FILE PATTERN MACRO
	has "$1" "$2" && printf -- '-D%s ' "$3"
}
if [ "$lang" = c ]; then
	# dm_io() takes sync_unsup_bits.
	define include/linux/dm-io.h 'sync_unsup_bits' DMR_DM_IO_UNSUP_BITS
	echo
	exit 0
fi
# kernel::str::CStr became core::ffi::CStr, with the CStrExt trait.
probe rust/kernel/str.rs 'pub trait CStrExt' dmr_core_cstr
# module! takes `authors: [...]`.
probe rust/macros/module.rs '\bauthors\b' dmr_module_authors
echo
exit 0
