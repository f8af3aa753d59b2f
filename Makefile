# SPDX-License-Identifier: GPL-2.0
#
# Builds dm_remap.ko out of tree against a Rust-enabled kernel build tree:
#
#   make KDIR=/path/to/linux-build LLVM=1      (or LLVM=-19 on Debian)
#
# The tree must have been built with CONFIG_RUST=y by the same rustc.

KDIR ?= /lib/modules/$(shell uname -r)/build
LLVM ?= 1

all: modules

modules clean:
	$(MAKE) -C $(KDIR) M=$(CURDIR) LLVM=$(LLVM) $@

.PHONY: all modules clean
