/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Deferred work of a remap target: the bios whose I/O failed (or that must
 * not go to main) and the scanner's steps, both run by one ordered workqueue
 * per target, in process context. Implemented in src/worker.c; the work
 * functions call back into Rust (dmr_worker_run, dmr_scan_run).
 */
#ifndef DM_REMAP_WORKER_H
#define DM_REMAP_WORKER_H

#include <linux/bio.h>
#include <linux/blk_types.h>
#include <linux/device-mapper.h>
#include <linux/workqueue.h>

struct dmr_worker;

/*
 * Per-bio data of every bio the target maps: where the bio's data was when
 * map saw it (the lower device may have advanced bi_iter by completion).
 */
struct dmr_bio_data {
	struct bvec_iter iter;
	unsigned int flags;
};

/* dmr_bio_data.flags */
#define DMR_BIO_HANDLED 1U	/* end_io already handed it to the worker */
#define DMR_BIO_DEFERRED 2U	/* map queued it without submitting */
#define DMR_BIO_PASS 4U		/* errors pass through (empty flushes) */

unsigned int dmr_bio_data_size(void);
struct dmr_worker *dmr_worker_create(const char *name, struct dm_target *ti);
void dmr_worker_destroy(struct dmr_worker *w);
void dmr_worker_queue_bio(struct dmr_worker *w, struct bio *bio);
struct bio *dmr_worker_pop_bio(struct dmr_worker *w);
void dmr_worker_scan_schedule(struct dmr_worker *w, unsigned int delay_ms);
void dmr_worker_scan_cancel(struct dmr_worker *w);

void dmr_bio_record(struct bio *bio);
void dmr_bio_restore(struct bio *bio);
unsigned int dmr_bio_flags(struct bio *bio);
void dmr_bio_set_flags(struct bio *bio, unsigned int flags);
void dmr_bio_copy(struct bio *bio, unsigned int offset, void *buf,
		  unsigned int len, bool to_bio);
void dmr_bio_complete(struct bio *bio, blk_status_t status);

u64 dmr_jiffies_ms(void);

/* Implemented in Rust. */
void dmr_worker_run(struct dm_target *ti);
void dmr_scan_run(struct dm_target *ti);

#endif /* DM_REMAP_WORKER_H */
