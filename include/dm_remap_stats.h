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

/*
 * What there is to count and show is declared once, in Rust
 * (src/logic/stats.rs: Counter, Gauge and FILES); these are its sizes, which
 * src/dm/stats.rs checks at compile time.
 */
#define DMR_NR_COUNTERS 13	/* per CPU, summed when read */
#define DMR_NR_GAUGES 12	/* set by the live table */
#define DMR_NR_FILES 30		/* statistics files of a stat directory */

int dmr_stats_init(void);
void dmr_stats_exit(void);
void *dmr_stats_get(struct dm_target *ti);
void dmr_stats_put(void *stats);
void dmr_stats_add(void *stats, unsigned int counter, u64 value);
void dmr_stats_add_io(void *stats, unsigned int ops, unsigned int bytes_counter,
		      unsigned int remapped, u64 bytes);
void dmr_stats_set_gauges(void *stats, const u64 *values);

#endif /* DM_REMAP_STATS_H */
