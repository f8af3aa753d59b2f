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
