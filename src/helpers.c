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

/* CRC-32 (IEEE) as zlib and crc32fast compute it. */
u32 dmr_crc32(const void *buf, size_t len)
{
	return ~crc32_le(~0U, buf, len);
}

void dmr_random_bytes(void *buf, size_t len)
{
	get_random_bytes(buf, len);
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
	if (is_vmalloc_addr(buf)) {
		req.mem.type = DM_IO_VMA;
		req.mem.ptr.vma = buf;
	} else {
		req.mem.type = DM_IO_KMEM;
		req.mem.ptr.addr = buf;
	}
	r = dm_io(&req, 1, &region, &error_bits,
		  flags & DMR_IO_IDLE ? IOPRIO_PRIO_VALUE(IOPRIO_CLASS_IDLE, 0) :
					IOPRIO_DEFAULT);
	if (r)
		return r;
	return error_bits ? -EIO : 0;
}
