/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Input of the module's own bindgen run (see Kbuild). Types the kernel crate
 * already binds (struct bio, struct block_device, ...) are reused from
 * kernel::bindings; only the items of the headers allowlisted in Kbuild are
 * generated here.
 */
#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/device-mapper.h>

#include "dm_remap_helpers.h"
#include "dm_remap_stats.h"
#include "dm_remap_worker.h"
