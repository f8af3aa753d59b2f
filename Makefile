# SPDX-License-Identifier: GPL-2.0
#
# Builds dm_remap.ko out of tree against a Rust-enabled kernel build tree,
# 6.12 LTS to 7.x:
#
#   make KDIR=/path/to/linux-build            (default: the running kernel's)
#
# The tree must have been built with CONFIG_RUST=y by the same rustc, and
# the module is compiled with the kernel's own C compiler: clang (LLVM=1)
# when its .config says CONFIG_CC_IS_CLANG=y, else GCC. Give LLVM=-19 where
# only version-suffixed LLVM tools exist (Debian).

KDIR ?= /lib/modules/$(shell uname -r)/build
LLVM ?= $(if $(shell grep -s '^CONFIG_CC_IS_CLANG=y' $(KDIR)/.config),1)

all: modules

modules clean:
	$(MAKE) -C $(KDIR) M=$(CURDIR) $(if $(LLVM),LLVM=$(LLVM)) $@

.PHONY: all modules clean

# Installs the source where DKMS looks for it (docs/install.md):
#   make dkms-install && dkms install dm-remap/$(DKMS_VERSION)
DKMS_VERSION := $(shell sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' dkms.conf)
DKMS_DIR = $(DESTDIR)/usr/src/dm-remap-$(DKMS_VERSION)
DKMS_FILES = Kbuild Makefile dkms.conf LICENSE include src scripts/kbuild scripts/dkms

dkms-install:
	mkdir -p $(DKMS_DIR)/scripts
	for f in $(DKMS_FILES); do cp -R $$f $(DKMS_DIR)/$$(dirname $$f)/; done
	rm -rf $(DKMS_DIR)/src/bin

.PHONY: dkms-install

# Installs what activates /etc/remaptab at boot (docs/usage.md, "Activation
# at boot"): the systemd generator, and the initramfs-tools hook and boot scripts
# for a root file system on a remap device. dm-remap-tool itself comes from
# `cargo build --release` (target/release/dm-remap-tool, to /usr/sbin).
BOOT_FILES = hooks/dm-remap scripts/local-top/dm-remap scripts/local-block/dm-remap

boot-install:
	install -D -m 755 scripts/systemd/dm-remap-generator $(DESTDIR)/usr/lib/systemd/system-generators/dm-remap-generator
	for f in $(BOOT_FILES); do \
		install -D -m 755 scripts/initramfs-tools/$$f $(DESTDIR)/usr/share/initramfs-tools/$$f; \
	done

.PHONY: boot-install
