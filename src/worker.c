// SPDX-License-Identifier: GPL-2.0
/*
 * Deferred work of a remap target; see include/dm_remap_worker.h.
 */
#include <linux/jiffies.h>
#include <linux/slab.h>
#include "dm_remap_worker.h"

struct dmr_worker {
	struct workqueue_struct *wq;
	struct work_struct work;
	struct delayed_work scan;
	/* Raises a device-mapper table event (dm_table_event() may sleep). */
	struct work_struct event;
	spinlock_t lock;
	struct bio_list bios;
	struct dm_target *ti;
	dmr_callback_fn run_bios;
	dmr_callback_fn run_scan;
};

static void dmr_work_fn(struct work_struct *work)
{
	struct dmr_worker *w = container_of(work, struct dmr_worker, work);

	w->run_bios(w->ti);
}

static void dmr_scan_fn(struct work_struct *work)
{
	struct dmr_worker *w = container_of(to_delayed_work(work),
					    struct dmr_worker, scan);

	w->run_scan(w->ti);
}

static void dmr_event_fn(struct work_struct *work)
{
	struct dmr_worker *w = container_of(work, struct dmr_worker, event);

	dm_table_event(w->ti->table);
}

/*
 * WQ_MEM_RECLAIM: the worker completes bios that writeback may be waiting
 * for, so it must make progress under memory pressure.
 */
struct dmr_worker *dmr_worker_create(const char *name, struct dm_target *ti,
				     dmr_callback_fn run_bios,
				     dmr_callback_fn run_scan)
{
	struct dmr_worker *w = kzalloc(sizeof(*w), GFP_KERNEL);

	if (!w)
		return NULL;
	w->wq = alloc_ordered_workqueue("dmr-%s", WQ_MEM_RECLAIM, name);
	if (!w->wq) {
		kfree(w);
		return NULL;
	}
	INIT_WORK(&w->work, dmr_work_fn);
	INIT_DELAYED_WORK(&w->scan, dmr_scan_fn);
	INIT_WORK(&w->event, dmr_event_fn);
	spin_lock_init(&w->lock);
	bio_list_init(&w->bios);
	w->ti = ti;
	w->run_bios = run_bios;
	w->run_scan = run_scan;
	return w;
}

/* Only when no bio is queued and the scanner cannot be scheduled again. */
void dmr_worker_destroy(struct dmr_worker *w)
{
	cancel_delayed_work_sync(&w->scan);
	destroy_workqueue(w->wq);
	WARN_ON(!bio_list_empty(&w->bios));
	kfree(w);
}

/* Any context (end_io runs in interrupt context). */
void dmr_worker_queue_bio(struct dmr_worker *w, struct bio *bio)
{
	unsigned long flags;

	spin_lock_irqsave(&w->lock, flags);
	bio_list_add(&w->bios, bio);
	spin_unlock_irqrestore(&w->lock, flags);
	queue_work(w->wq, &w->work);
}

struct bio *dmr_worker_pop_bio(struct dmr_worker *w)
{
	struct bio *bio;

	spin_lock_irq(&w->lock);
	bio = bio_list_pop(&w->bios);
	spin_unlock_irq(&w->lock);
	return bio;
}

void dmr_worker_scan_schedule(struct dmr_worker *w, unsigned int delay_ms)
{
	queue_delayed_work(w->wq, &w->scan, msecs_to_jiffies(delay_ms));
}

void dmr_worker_scan_cancel(struct dmr_worker *w)
{
	cancel_delayed_work_sync(&w->scan);
}

/*
 * Any context: the event is raised by the worker, in process context, as
 * dm-mpath and dm-raid1 raise theirs. Events raised before the worker gets
 * to it make one (waiters see the counter move, not each change); the
 * workqueue is drained before the target goes away.
 */
void dmr_worker_event(struct dmr_worker *w)
{
	queue_work(w->wq, &w->event);
}

/*
 * Copies len bytes at byte offset of the bio's data (from its current
 * bi_iter) to buf, or from buf into the bio when to_bio.
 */
void dmr_bio_copy(struct bio *bio, unsigned int offset, void *buf,
		  unsigned int len, bool to_bio)
{
	struct bvec_iter start = bio->bi_iter;
	struct bvec_iter iter;
	struct bio_vec bv;
	char *p = buf;

	if (offset >= start.bi_size)
		return;
	bio_advance_iter(bio, &start, offset);
	start.bi_size = min(start.bi_size, len);
	__bio_for_each_segment(bv, bio, iter, start) {
		if (to_bio)
			memcpy_to_bvec(&bv, p);
		else
			memcpy_from_bvec(p, &bv);
		p += bv.bv_len;
	}
}

void dmr_bio_complete(struct bio *bio, blk_status_t status)
{
	bio->bi_status = status;
	bio_endio(bio);
}

/* Milliseconds since boot, 64-bit (jiffies_to_msecs() wraps after 49 days). */
u64 dmr_jiffies_ms(void)
{
	return jiffies64_to_msecs(get_jiffies_64());
}
