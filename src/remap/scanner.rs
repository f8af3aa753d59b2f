// SPDX-License-Identifier: GPL-2.0

//! The background scanner: reads main chunk by chunk at `scan_rate`, makes
//! blocks that fail pending (their next write goes to the spare) and, after
//! each full pass, verifies the metadata copies.

use super::{log_event, Remap};
use crate::dm::io;
use crate::dm::log::dmr_info;
use crate::dm::target::Target;
use crate::dm::worker::now_ms;
use crate::logic::stats::Counter;
use core::sync::atomic::Ordering;

/// How long one scanner step may spend narrowing read errors down, in ms;
/// the next step goes on where it stopped.
const SCAN_STEP_BUDGET_MS: u64 = 1000;

/// Bad blocks one scanner step records; a step that finds this many ends
/// there, and the next goes on from the block after the last.
const SCAN_BAD_MAX: usize = 64;

impl Remap {
    /// One step of the scanner: reads the next chunk of main (skipping
    /// remapped blocks), makes blocks that fail pending, and schedules the
    /// next step so as to keep to `scan_rate`.
    ///
    /// The reads run without the target's lock, so that status, messages and
    /// suspend never wait for a dying disk: the lock is taken to pick the
    /// chunk and again to record what was found. They are idle-priority and
    /// fail-fast, a step stops narrowing an error down after
    /// [`SCAN_STEP_BUDGET_MS`] (the next step goes on from there), and
    /// `scan stop` or a suspend ends it after the read in flight.
    pub(super) fn scan_next(&self, ti: &Target) {
        let dev = ti.device_name();
        let t0 = now_ms();
        let mut c = self.core.lock();
        if !c.scan.running || c.suspended || !c.remaps.loaded() {
            return;
        }
        let main_blocks = self.geometry.main_blocks;
        let bs = self.geometry.block_sectors;
        let bs_bytes = self.bs_bytes() as u64;
        if c.scan.position >= main_blocks {
            c.scan.passes += 1;
            c.scan.position = 0;
            c.scan.last_pass_ms = Some(now_ms());
            dmr_info!(
                "{}: scan pass {} complete: {} bad blocks found\n",
                dev,
                c.scan.passes,
                c.scan.found
            );
            let mut sio = self.spare_io();
            let mut repaired = 0;
            let r = c.remaps.verify(&mut sio, &mut |ev| {
                repaired += 1;
                log_event(dev, ev)
            });
            self.stats.add(Counter::Repairs, repaired);
            if r.is_err() {
                self.enter_fail(dev);
            }
        }
        let chunk_blocks = (u64::from(c.policy.scan_chunk) * 1024)
            .checked_div(bs_bytes)
            .unwrap_or(1)
            .max(1);
        let start = c.scan.position;
        let n = chunk_blocks.min(main_blocks - start);
        let retries = c.policy.read_retries;
        let Some(mut buf) = c.scan.buf.take() else {
            return;
        };
        drop(c);

        // The buffer holds the chunk (`scan start` and `set scan_chunk` size
        // it); never read more than it holds.
        let n = n.min(buf.len() as u64 / bs_bytes).max(1);
        let mut bad = [0u64; SCAN_BAD_MAX];
        let mut nbad = 0;
        let mut found = 0u64;
        let mut bytes = 0u64;
        let mut narrowed = 0u32;
        let mut blk = start;
        let halted = || !self.scanning.load(Ordering::Relaxed) || self.halt.load(Ordering::Relaxed);
        let read = |b: &mut [u8], at: u64| {
            io::sync_io(
                &self.io_client,
                &self.main,
                at,
                b,
                io::flags::IDLE | io::flags::FAILFAST,
            )
            .is_ok()
        };
        'chunk: while blk < start + n {
            if halted() {
                break;
            }
            if self.table.lookup(blk).is_some() {
                blk += 1;
                continue;
            }
            let mut end = blk + 1;
            while end < start + n && self.table.lookup(end).is_none() {
                end += 1;
            }
            let len = ((end - blk) * bs_bytes) as usize;
            let ok = match buf.get_mut(..len) {
                Some(b) => read(b, blk * bs),
                None => false,
            };
            if ok {
                bytes += len as u64;
                blk = end;
                continue;
            }
            // Narrow the error down block by block, within the budget (but
            // at least one block per step, so that the scan moves on).
            while blk < end {
                if halted()
                    || nbad == SCAN_BAD_MAX
                    || (narrowed > 0 && now_ms().saturating_sub(t0) > SCAN_STEP_BUDGET_MS)
                {
                    break 'chunk;
                }
                narrowed += 1;
                if self.pending.contains(blk) {
                    // Known bad already.
                    bytes += bs_bytes;
                    blk += 1;
                    continue;
                }
                let mut good = false;
                for _ in 0..=retries {
                    if let Some(b) = buf.get_mut(..bs_bytes as usize) {
                        if read(b, blk * bs) {
                            good = true;
                            break;
                        }
                    }
                }
                if !good {
                    found += 1;
                    // Below SCAN_BAD_MAX: checked before the reads.
                    if let Some(b) = bad.get_mut(nbad) {
                        *b = blk;
                        nbad += 1;
                    }
                }
                bytes += bs_bytes;
                blk += 1;
            }
        }

        let mut c = self.core.lock();
        if c.scan.buf.is_none() {
            c.scan.buf = Some(buf);
        }
        self.stats.add(Counter::ScanBytes, bytes);
        if !c.scan.running || c.scan.position != start {
            // Stopped (or restarted) meanwhile: this step's results belong
            // to a scan that is over.
            return;
        }
        let mut pending_changed = false;
        for &x in &bad[..nbad] {
            if self.table.lookup(x).is_none()
                && !c.remaps.pending().contains(&x)
                && self.mark_pending(dev, &mut c, x, None)
            {
                pending_changed = true;
            }
        }
        c.scan.found += found;
        c.scan.position = blk;
        if pending_changed {
            self.pending.set(c.remaps.pending());
            self.commit(dev, &mut c, None);
        }
        self.update_stats(&mut c);
        if c.suspended || self.halt.load(Ordering::Relaxed) {
            return;
        }
        // Keep the average to the rate over whole chunks, skipped blocks
        // included: each step is due one chunk's time after the previous
        // one (twice that after foreground I/O). A scanner that fell behind
        // (slow reads) does not catch up more than a second's worth.
        let mut step_ms = c.policy.scan_delay_ms((blk - start) * bs_bytes);
        if self.busy.swap(false, Ordering::Relaxed) {
            step_ms = step_ms.saturating_mul(2);
        }
        let now = now_ms();
        c.scan.due_ms = c.scan.due_ms.max(t0.saturating_sub(1000)).saturating_add(step_ms);
        let delay = c.scan.due_ms.saturating_sub(now);
        drop(c);
        self.worker
            .scan_after(u32::try_from(delay).unwrap_or(u32::MAX));
    }
}
