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

/* Synchronous I/O of whole sectors through dm-io, into or out of buf. */
static int dmr_sync_io(void *client, struct block_device *bdev, sector_t sector,
		       void *buf, unsigned int sectors, blk_opf_t opf,
		       unsigned short ioprio)
{
	struct dm_io_region region = {
		.bdev = bdev,
		.sector = sector,
		.count = sectors,
	};
	struct dm_io_request req = {
		.bi_opf = opf,
		.notify.fn = NULL,
		.client = client,
	};
	unsigned long error_bits = 0;
	int r;

	if (is_vmalloc_addr(buf)) {
		req.mem.type = DM_IO_VMA;
		req.mem.ptr.vma = buf;
	} else {
		req.mem.type = DM_IO_KMEM;
		req.mem.ptr.addr = buf;
	}
	r = dm_io(&req, 1, &region, &error_bits, ioprio);
	if (r)
		return r;
	return error_bits ? -EIO : 0;
}

/*
 * Reads or writes whole sectors of the spare's metadata area. A durable
 * write is preceded by a flush of everything written before it
 * (REQ_PREFLUSH) and is itself on stable media when it completes (REQ_FUA).
 */
int dmr_meta_io(void *client, struct block_device *bdev, sector_t sector,
		void *buf, unsigned int sectors, bool write, bool durable)
{
	blk_opf_t opf = write ? REQ_OP_WRITE | REQ_SYNC : REQ_OP_READ;

	if (write && durable)
		opf |= REQ_PREFLUSH | REQ_FUA;
	return dmr_sync_io(client, bdev, sector, buf, sectors, opf, IOPRIO_DEFAULT);
}

/*
 * Data I/O of the error path and the scanner. fua: the write is on stable
 * media when it completes. idle: the scanner's reads, at idle I/O priority
 * so that schedulers honouring priorities serve other I/O first.
 */
int dmr_data_io(void *client, struct block_device *bdev, sector_t sector,
		void *buf, unsigned int sectors, bool write, bool fua, bool idle)
{
	blk_opf_t opf = write ? REQ_OP_WRITE | REQ_SYNC : REQ_OP_READ;

	if (write && fua)
		opf |= REQ_FUA;
	return dmr_sync_io(client, bdev, sector, buf, sectors, opf,
			   idle ? IOPRIO_PRIO_VALUE(IOPRIO_CLASS_IDLE, 0) :
				  IOPRIO_DEFAULT);
}
