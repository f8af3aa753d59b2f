/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Deferred work of a remap target: the bios whose I/O failed (or that must
 * not go to main), the scanner's steps and device-mapper table events, all
 * run by one ordered workqueue per target, in process context. Implemented
 * in src/worker.c; the work functions call back into Rust through the two
 * functions given at creation (src/dm/worker.rs).
 */
#ifndef DM_REMAP_WORKER_H
#define DM_REMAP_WORKER_H

#include <linux/bio.h>
#include <linux/blk_types.h>
#include <linux/device-mapper.h>
#include <linux/workqueue.h>

struct dmr_worker;

/* What the worker runs: every queued bio, or one scanner step. */
typedef void (*dmr_callback_fn)(struct dm_target *ti);

struct dmr_worker *dmr_worker_create(const char *name, struct dm_target *ti,
				     dmr_callback_fn run_bios,
				     dmr_callback_fn run_scan);
void dmr_worker_destroy(struct dmr_worker *w);
void dmr_worker_queue_bio(struct dmr_worker *w, struct bio *bio);
struct bio *dmr_worker_pop_bio(struct dmr_worker *w);
void dmr_worker_scan_schedule(struct dmr_worker *w, unsigned int delay_ms);
void dmr_worker_scan_cancel(struct dmr_worker *w);
void dmr_worker_event(struct dmr_worker *w);

void dmr_bio_copy(struct bio *bio, unsigned int offset, void *buf,
		  unsigned int len, bool to_bio);
void dmr_bio_complete(struct bio *bio, blk_status_t status);

u64 dmr_jiffies_ms(void);

#endif /* DM_REMAP_WORKER_H */
