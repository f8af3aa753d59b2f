// SPDX-License-Identifier: GPL-2.0

//! The spare's data pool: which pool block holds which main block.
//!
//! One 8-byte slot per usable pool block, holding the main block plus one, or
//! 0 while the block is free. This array is exactly what the metadata copies
//! store (`format.rs`): entry sector `k` is slots `61k..61k+61`. Used only by
//! the table's writer. Allocation is next-fit from a cursor, so consecutive
//! allocations are usually contiguous on the spare.

use super::format::SLOTS_PER_SECTOR;
use super::mem::{Env, RawArray};

/// Allocation state of the spare's data pool.
pub struct SparePool<E: Env> {
    slots: RawArray<u64, E>,
    used: u64,
    cursor: u64,
}

impl<E: Env> SparePool<E> {
    /// A pool of `total` free blocks; `None` when memory is short.
    pub fn new(total: u64) -> Option<Self> {
        Some(Self {
            slots: RawArray::new(usize::try_from(total).ok()?)?,
            used: 0,
            cursor: 0,
        })
    }

    /// Blocks in the pool.
    pub fn total(&self) -> u64 {
        self.slots.len() as u64
    }

    /// Blocks in use.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Blocks free.
    pub fn free(&self) -> u64 {
        self.total() - self.used
    }

    /// Whether `block` is in use; blocks outside the pool count as in use.
    pub fn in_use(&self, block: u64) -> bool {
        match self.slots.get(block as usize) {
            Some(&v) => v != 0 || block >= self.total(),
            None => true,
        }
    }

    /// The main block pool block `block` holds, if any.
    pub fn holder(&self, block: u64) -> Option<u64> {
        match self.slots.get(block as usize) {
            Some(&v) if v != 0 => Some(v - 1),
            _ => None,
        }
    }

    /// Marks `block` as holding `main`. Returns false if it was outside or
    /// already used.
    pub fn take(&mut self, block: u64, main: u64) -> bool {
        if self.in_use(block) || main == u64::MAX {
            return false;
        }
        self.slots[block as usize] = main + 1;
        self.used += 1;
        true
    }

    /// Marks `block` free again. Returns false if it was not in use.
    pub fn release(&mut self, block: u64) -> bool {
        match self.slots.get_mut(block as usize) {
            Some(v) if *v != 0 => {
                *v = 0;
                self.used -= 1;
                true
            }
            _ => false,
        }
    }

    /// Takes any free block for `main`: the first at or after the cursor,
    /// wrapping. At most one pass over the pool.
    pub fn alloc(&mut self, main: u64) -> Option<u64> {
        let total = self.total();
        if self.used == total {
            return None;
        }
        for i in 0..total {
            let b = (self.cursor + i) % total;
            if self.slots[b as usize] == 0 && self.take(b, main) {
                self.cursor = (b + 1) % total;
                return Some(b);
            }
        }
        None
    }

    /// Frees every block.
    pub fn reset(&mut self) {
        self.slots.fill(0);
        self.used = 0;
        self.cursor = 0;
    }

    /// The slots of entry sector `k` (fewer than 61 in the last sector).
    pub fn sector_slots(&self, k: u64) -> &[u64] {
        let lo = (k as usize * SLOTS_PER_SECTOR).min(self.slots.len());
        let hi = (lo + SLOTS_PER_SECTOR).min(self.slots.len());
        &self.slots[lo..hi]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HostEnv;

    #[test]
    fn allocates_every_block_once() {
        let mut p = SparePool::<HostEnv>::new(130).unwrap();
        let mut seen = [false; 130];
        for m in 0..130 {
            let b = p.alloc(m).unwrap() as usize;
            assert!(!seen[b]);
            seen[b] = true;
            assert_eq!(p.holder(b as u64), Some(m));
        }
        assert_eq!(p.alloc(0), None);
        assert_eq!(p.free(), 0);
        assert!(p.release(64));
        assert_eq!(p.alloc(7), Some(64));
    }

    #[test]
    fn next_fit_is_contiguous_and_wraps() {
        let mut p = SparePool::<HostEnv>::new(100).unwrap();
        assert!(p.take(0, 5));
        assert_eq!(p.alloc(1), Some(1));
        assert_eq!(p.alloc(2), Some(2));
        for b in 3..100 {
            assert!(p.take(b, b));
        }
        assert!(p.release(1));
        assert_eq!(p.alloc(9), Some(1));
    }

    #[test]
    fn bounds_and_sectors() {
        let mut p = SparePool::<HostEnv>::new(70).unwrap();
        assert!(p.take(7, 0));
        assert!(!p.take(7, 1));
        assert!(!p.take(70, 1));
        assert!(!p.release(8));
        assert_eq!(p.sector_slots(0)[7], 1);
        assert_eq!(p.sector_slots(0).len(), 61);
        assert_eq!(p.sector_slots(1).len(), 9);
        assert_eq!(p.sector_slots(2).len(), 0);
        p.reset();
        assert_eq!(p.used(), 0);
        assert!(!p.in_use(7));
    }
}
