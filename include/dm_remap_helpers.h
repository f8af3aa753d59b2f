/* SPDX-License-Identifier: GPL-2.0 */
/*
 * C helpers for what Rust cannot call directly: static inline functions and
 * macros of the kernel headers. Implemented in src/helpers.c; bound by the
 * module's own bindgen run. Most helpers are one-line forwards.
 */
#ifndef DM_REMAP_HELPERS_H
#define DM_REMAP_HELPERS_H

#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/device-mapper.h>
#include <linux/crc32.h>
#include <linux/dm-io.h>
#include <linux/ioprio.h>
#include <linux/random.h>
#include <linux/rcupdate.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>

void dmr_bio_set_dev(struct bio *bio, struct block_device *bdev);
unsigned int dmr_bdev_logical_block_size(struct block_device *bdev);
sector_t dmr_bdev_nr_sectors(struct block_device *bdev);
dev_t dmr_bdev_dev(struct block_device *bdev);
dev_t dmr_bdev_whole_dev(struct block_device *bdev);
/*
 * The device number of the device a table line's path names, and that of
 * its whole disk, found without claiming it: dm_get_device's claim fails
 * (EBUSY) on a device that overlaps one a table holds, and these numbers
 * tell whether that is why.
 */
int dmr_path_devts(const char *path, dev_t *dev, dev_t *whole);

void dmr_rcu_read_lock(void);
void dmr_rcu_read_unlock(void);
void *dmr_kvzalloc_noio(size_t size);
void *dmr_vzalloc_noio(size_t size);
void dmr_cond_resched(void);
void dmr_kvfree(void *p);

u32 dmr_crc32(const void *buf, size_t len);
void dmr_random_bytes(void *buf, size_t len);

/*
 * Spare claims: a spare serves one remap target (of one mapped device; the
 * tables of one device may share it across a reload). Opaque claim.
 */
int dmr_claim_spare(struct dm_target *ti, dev_t dev, void **claim);
void dmr_release_spare(void *claim);

/* Synchronous I/O through dm-io (opaque client). */
void *dmr_io_client_create(void);
void dmr_io_client_destroy(void *client);
#define DMR_IO_WRITE 1U
#define DMR_IO_FUA 2U
#define DMR_IO_PREFLUSH 4U
#define DMR_IO_IDLE 8U
#define DMR_IO_FAILFAST 16U
int dmr_sync_io(void *client, struct block_device *bdev, sector_t sector,
		void *buf, unsigned int sectors, unsigned int flags);

#ifdef __BINDGEN__
/*
 * Constants bindgen cannot evaluate from their macros (casts of enum shifts).
 * The Kbuild rule strips the DMR_CONST_ prefix.
 */
const blk_opf_t DMR_CONST_REQ_OP_MASK = REQ_OP_MASK;
const blk_opf_t DMR_CONST_REQ_PREFLUSH = REQ_PREFLUSH;
const blk_opf_t DMR_CONST_REQ_FUA = REQ_FUA;
const blk_status_t DMR_CONST_BLK_STS_OK = BLK_STS_OK;
const blk_status_t DMR_CONST_BLK_STS_IOERR = BLK_STS_IOERR;
const blk_status_t DMR_CONST_BLK_STS_NOSPC = BLK_STS_NOSPC;
const blk_status_t DMR_CONST_BLK_STS_RESOURCE = BLK_STS_RESOURCE;
const blk_status_t DMR_CONST_BLK_STS_MEDIUM = BLK_STS_MEDIUM;
const blk_opf_t DMR_CONST_REQ_OP_READ = REQ_OP_READ;
const blk_opf_t DMR_CONST_REQ_OP_WRITE = REQ_OP_WRITE;
const blk_opf_t DMR_CONST_REQ_OP_FLUSH = REQ_OP_FLUSH;
const blk_opf_t DMR_CONST_REQ_OP_DISCARD = REQ_OP_DISCARD;
#endif

#endif /* DM_REMAP_HELPERS_H */
