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
# for a root file system on a remap device. `make install` installs these,
# dm-remap-tool and the man pages.
BOOT_FILES = hooks/dm-remap scripts/local-top/dm-remap scripts/local-block/dm-remap

boot-install:
	install -D -m 755 scripts/systemd/dm-remap-generator $(DESTDIR)/usr/lib/systemd/system-generators/dm-remap-generator
	for f in $(BOOT_FILES); do \
		install -D -m 755 scripts/initramfs-tools/$$f $(DESTDIR)/usr/share/initramfs-tools/$$f; \
	done

.PHONY: boot-install

# Installs the user space: dm-remap-tool (built first, as the user, with
# `cargo build --release --bin dm-remap-tool`), the man pages dm-remap(4) and
# dm-remap-tool(8), and what boot-install installs. The module comes from
# DKMS or `make` + `make -C $(KDIR) M=$(CURDIR) modules_install`.
PREFIX ?= /usr
TOOL ?= target/release/dm-remap-tool
MANDIR = $(DESTDIR)$(PREFIX)/share/man

install:
	@test -x $(TOOL) || { echo "$(TOOL) is missing: build it first with 'cargo build --release --bin dm-remap-tool'" >&2; exit 1; }
	install -D -m 755 $(TOOL) $(DESTDIR)$(PREFIX)/sbin/dm-remap-tool
	install -D -m 644 docs/man/dm-remap.4 $(MANDIR)/man4/dm-remap.4
	install -D -m 644 docs/man/dm-remap-tool.8 $(MANDIR)/man8/dm-remap-tool.8
	$(MAKE) --no-print-directory boot-install

.PHONY: install
