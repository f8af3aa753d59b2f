/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Per-device statistics under /sys/module/dm_remap/stat/ (src/stats.c).
 *
 * The kernel crate of 6.12 has no kobject, sysfs or per-CPU abstractions, so
 * the tree and the counters are plumbed in C; what the files say is computed
 * and formatted in Rust (src/logic/stats.rs, called back through
 * dmr_stats_format()).
 */
#ifndef DM_REMAP_STATS_H
#define DM_REMAP_STATS_H

#include <linux/device-mapper.h>
#include <linux/types.h>

/* Event counters: per CPU, summed when read, only ever growing (but reset). */
enum dmr_counter {
	DMR_C_READS,
	DMR_C_WRITES,
	DMR_C_READ_BYTES,
	DMR_C_WRITE_BYTES,
	DMR_C_REMAPPED_READS,
	DMR_C_REMAPPED_WRITES,
	DMR_C_MAIN_ERRORS,
	DMR_C_SPARE_ERRORS,
	DMR_C_AUTO_REMAPS,
	DMR_C_COMMITS,
	DMR_C_REPAIRS,
	DMR_C_PENDING_MARKED,
	DMR_C_SCAN_BYTES,
	DMR_NR_COUNTERS
};

/* Values the live table sets. */
enum dmr_gauge {
	DMR_G_REMAPS,
	DMR_G_SPARE_USED,
	DMR_G_SPARE_TOTAL,
	DMR_G_BUCKETS,
	DMR_G_RESIZES,
	DMR_G_PENDING,
	DMR_G_RETIRED,
	DMR_G_FAIL_MODE,
	DMR_G_SPARE_FREE,
	DMR_G_SCAN_POSITION,
	DMR_G_SCAN_PASSES,
	DMR_G_SCAN_FOUND,
	DMR_NR_GAUGES
};

int dmr_stats_init(void);
void dmr_stats_exit(void);
void *dmr_stats_get(struct dm_target *ti);
void dmr_stats_put(void *stats);
void dmr_stats_add(void *stats, unsigned int counter, u64 value);
void dmr_stats_add_io(void *stats, unsigned int ops, unsigned int bytes_counter,
		      unsigned int remapped, u64 bytes);
void dmr_stats_set(void *stats, unsigned int gauge, u64 value);

#endif /* DM_REMAP_STATS_H */
