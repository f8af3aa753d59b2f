/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What differs between the kernel series the module builds against (6.12
 * LTS to 7.x) on the C side; src/dm/compat.rs is the Rust side. Kbuild
 * probes the kernel tree (scripts/kbuild/kernel-cfg.sh c) and defines:
 *
 * DMR_DM_IO_UNSUP_BITS: dm_io() takes an out-parameter for the regions
 * whose operation the device does not support (sync_unsup_bits), before
 * the I/O priority. The module issues only reads, writes and flushes
 * through dm_io() and passes NULL for it.
 */
#ifndef DM_REMAP_COMPAT_H
#define DM_REMAP_COMPAT_H

#include <linux/dm-io.h>

static inline int dmr_dm_io(struct dm_io_request *req, unsigned int num_regions,
			    struct dm_io_region *region, unsigned long *error_bits,
			    unsigned short ioprio)
{
#ifdef DMR_DM_IO_UNSUP_BITS
	return dm_io(req, num_regions, region, error_bits, NULL, ioprio);
#else
	return dm_io(req, num_regions, region, error_bits, ioprio);
#endif
}

#endif /* DM_REMAP_COMPAT_H */
