// SPDX-License-Identifier: GPL-2.0
/*
 * Forwarders to static inline kernel functions, for the Rust side.
 * Prototypes and rationale: include/dm_remap_helpers.h.
 */
#include "dm_remap_helpers.h"

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

void dmr_kvfree(void *p)
{
	kvfree(p);
}
