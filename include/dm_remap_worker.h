/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Deferred work of a remap target: the bios whose I/O failed (or that must
 * not go to main) and the scanner's steps, both run by one ordered workqueue
 * per target, in process context. Implemented in src/worker.c; the work
 * functions call back into Rust through the two functions given at creation
 * (src/dm/worker.rs).
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

/*
 * Per-bio data of every bio the target maps: where the bio's data was when
 * map saw it (the lower device may have advanced bi_iter by completion).
 */
struct dmr_bio_data {
	struct bvec_iter iter;
	/* The target-relative sector of main the bio covers, as map saw it:
	 * the error path works from this, never from bi_bdev or bi_sector,
	 * which lower drivers may change in place (dm-raid1's dm_bio_record
	 * saves bi_bdev for the same reason). */
	sector_t origin;
	/* The target's relocation count when map saw it: a write that
	 * completes on an old location after the count moved is checked
	 * against the table (see Remap::end_io). */
	u64 epoch;
	unsigned int flags;
};

/* dmr_bio_data.flags */
#define DMR_BIO_HANDLED 1U	/* end_io already handed it to the worker */
#define DMR_BIO_DEFERRED 2U	/* map queued it without submitting */
#define DMR_BIO_PASS 4U		/* errors pass through (empty flushes) */
#define DMR_BIO_ON_SPARE 8U	/* map sent it to the spare */
#define DMR_BIO_REDO 16U	/* written, but where a relocation moved away from */

unsigned int dmr_bio_data_size(void);
struct dmr_worker *dmr_worker_create(const char *name, struct dm_target *ti,
				     dmr_callback_fn run_bios,
				     dmr_callback_fn run_scan);
void dmr_worker_destroy(struct dmr_worker *w);
void dmr_worker_queue_bio(struct dmr_worker *w, struct bio *bio);
struct bio *dmr_worker_pop_bio(struct dmr_worker *w);
void dmr_worker_scan_schedule(struct dmr_worker *w, unsigned int delay_ms);
void dmr_worker_scan_cancel(struct dmr_worker *w);

void dmr_bio_record(struct bio *bio, sector_t origin, unsigned int flags,
		    u64 epoch);
sector_t dmr_bio_origin(struct bio *bio);
u64 dmr_bio_epoch(struct bio *bio);
unsigned int dmr_bio_recorded_size(struct bio *bio);
void dmr_bio_restore(struct bio *bio);
unsigned int dmr_bio_flags(struct bio *bio);
void dmr_bio_set_flags(struct bio *bio, unsigned int flags);
void dmr_bio_copy(struct bio *bio, unsigned int offset, void *buf,
		  unsigned int len, bool to_bio);
void dmr_bio_complete(struct bio *bio, blk_status_t status);

u64 dmr_jiffies_ms(void);

#endif /* DM_REMAP_WORKER_H */
