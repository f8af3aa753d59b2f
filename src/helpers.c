// SPDX-License-Identifier: GPL-2.0
/*
 * Forwarders to static inline kernel functions, for the Rust side.
 * Prototypes and rationale: include/dm_remap_helpers.h.
 */
#include "dm_remap_compat.h"
#include "dm_remap_helpers.h"

#include <linux/file.h>
#include <linux/sched.h>
#include <linux/sched/task_stack.h>

void dmr_bio_set_dev(struct bio *bio, struct block_device *bdev)
{
	bio_set_dev(bio, bdev);
}

unsigned int dmr_bdev_logical_block_size(struct block_device *bdev)
{
	return bdev_logical_block_size(bdev);
}

sector_t dmr_bdev_nr_sectors(struct block_device *bdev)
{
	return bdev_nr_sectors(bdev);
}

dev_t dmr_bdev_dev(struct block_device *bdev)
{
	return bdev->bd_dev;
}

dev_t dmr_bdev_whole_dev(struct block_device *bdev)
{
	return bdev_whole(bdev)->bd_dev;
}

int dmr_path_devts(const char *path, dev_t *dev, dev_t *whole)
{
	struct file *f;
	int r = dm_devt_from_path(path, dev);

	if (r)
		return r;
	/* Opened for reading with no holder: a claim is what fails. */
	f = bdev_file_open_by_dev(*dev, BLK_OPEN_READ, NULL, NULL);
	if (IS_ERR(f))
		return PTR_ERR(f);
	*whole = bdev_whole(file_bdev(f))->bd_dev;
	fput(f);
	return 0;
}

void dmr_rcu_read_lock(void)
{
	rcu_read_lock();
}

void dmr_rcu_read_unlock(void)
{
	rcu_read_unlock();
}

/*
 * Zeroed memory for the remap table and pool, allocated as if GFP_NOIO: the
 * caller may hold locks that I/O to the device needs, so reclaim must not
 * write to it.
 */
void *dmr_kvzalloc_noio(size_t size)
{
	unsigned int flags = memalloc_noio_save();
	void *p = kvzalloc(size, GFP_KERNEL);

	memalloc_noio_restore(flags);
	return p;
}

/*
 * Zeroed memory in whole pages, as if GFP_NOIO: for the remap table's large
 * arrays, which kvzalloc would round up to a power of two of pages.
 */
void *dmr_vzalloc_noio(size_t size)
{
	unsigned int flags = memalloc_noio_save();
	void *p = vzalloc(size);

	memalloc_noio_restore(flags);
	return p;
}

/*
 * Lets other tasks run during a long stretch of a message (bulk imports,
 * table rebuilds) on kernels without preemption; cond_resched() is a macro
 * or an inline function, depending on the preemption model.
 */
void dmr_cond_resched(void)
{
	cond_resched();
}

void dmr_kvfree(void *p)
{
	kvfree(p);
}

/* CRC-32 (IEEE) as zlib and crc32fast compute it. */
u32 dmr_crc32(const void *buf, size_t len)
{
	return ~crc32_le(~0U, buf, len);
}

void dmr_random_bytes(void *buf, size_t len)
{
	get_random_bytes(buf, len);
}

struct dmr_claim {
	struct list_head list;
	dev_t dev;
	struct mapped_device *md;
	struct dm_table *table;
};

static LIST_HEAD(dmr_claims);
static DEFINE_MUTEX(dmr_claims_lock);

/*
 * Refused (-EBUSY) while another mapped device's remap target, or another
 * remap target of the same table, holds the spare. Two tables of one device
 * (a reload: the new table is built while the old one is live) may both
 * hold it; only one of them is ever resumed.
 */
int dmr_claim_spare(struct dm_target *ti, dev_t dev, void **claim)
{
	struct mapped_device *md = dm_table_get_md(ti->table);
	struct dmr_claim *c, *n;

	n = kmalloc(sizeof(*n), GFP_KERNEL);
	if (!n)
		return -ENOMEM;
	n->dev = dev;
	n->md = md;
	n->table = ti->table;
	mutex_lock(&dmr_claims_lock);
	list_for_each_entry(c, &dmr_claims, list) {
		if (c->dev == dev && (c->md != md || c->table == ti->table)) {
			mutex_unlock(&dmr_claims_lock);
			kfree(n);
			return -EBUSY;
		}
	}
	list_add(&n->list, &dmr_claims);
	mutex_unlock(&dmr_claims_lock);
	*claim = n;
	return 0;
}

void dmr_release_spare(void *claim)
{
	struct dmr_claim *c = claim;

	mutex_lock(&dmr_claims_lock);
	list_del(&c->list);
	mutex_unlock(&dmr_claims_lock);
	kfree(c);
}

void *dmr_io_client_create(void)
{
	struct dm_io_client *c = dm_io_client_create();

	return IS_ERR(c) ? NULL : c;
}

void dmr_io_client_destroy(void *client)
{
	dm_io_client_destroy(client);
}

/*
 * Synchronous I/O of whole sectors through dm-io, into or out of buf; flags
 * are DMR_IO_* (include/dm_remap_helpers.h). A metadata header is written
 * with PREFLUSH (everything written before it is flushed first) and FUA (it
 * is on stable media when it completes); the scanner reads at idle I/O
 * priority, so that schedulers honouring priorities serve other I/O first.
 */
int dmr_sync_io(void *client, struct block_device *bdev, sector_t sector,
		void *buf, unsigned int sectors, unsigned int flags)
{
	struct dm_io_region region = {
		.bdev = bdev,
		.sector = sector,
		.count = sectors,
	};
	struct dm_io_request req = {
		.bi_opf = REQ_OP_READ,
		.notify.fn = NULL,
		.client = client,
	};
	unsigned long error_bits = 0;
	int r;

	if (flags & DMR_IO_WRITE)
		req.bi_opf = REQ_OP_WRITE | REQ_SYNC;
	if (flags & DMR_IO_PREFLUSH)
		req.bi_opf |= REQ_PREFLUSH;
	if (flags & DMR_IO_FUA)
		req.bi_opf |= REQ_FUA;
	if (flags & DMR_IO_FAILFAST)
		req.bi_opf |= REQ_FAILFAST_DEV | REQ_FAILFAST_TRANSPORT |
			      REQ_FAILFAST_DRIVER;
	/* Stack memory is not valid for I/O (DMA, cache lines shared with
	 * other locals); callers pass heap buffers. */
	if (WARN_ON_ONCE(object_is_on_stack(buf)))
		return -EINVAL;
	if (is_vmalloc_addr(buf)) {
		req.mem.type = DM_IO_VMA;
		req.mem.ptr.vma = buf;
	} else {
		req.mem.type = DM_IO_KMEM;
		req.mem.ptr.addr = buf;
	}
	r = dmr_dm_io(&req, 1, &region, &error_bits,
		      flags & DMR_IO_IDLE ? IOPRIO_PRIO_VALUE(IOPRIO_CLASS_IDLE, 0) :
					    IOPRIO_DEFAULT);
	if (r)
		return r;
	return error_bits ? -EIO : 0;
}
