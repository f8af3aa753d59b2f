// SPDX-License-Identifier: GPL-2.0

//! The spare's data pool: which pool block holds which main block.
//!
//! One 8-byte slot per usable pool block, holding the main block plus one, 0
//! while the block is free, or [`RETIRED`] once the block is known to be bad.
//! This array is exactly what the metadata copies store (`format.rs`): entry
//! sector `k` is slots `61k..61k+61`. Used only by the table's writer.
//! Allocation is next-fit from a cursor, so consecutive allocations are
//! usually contiguous on the spare; retired blocks are never handed out.

use super::format::RETIRED;
use super::mem::{Env, RawArray};

/// Allocation state of the spare's data pool.
pub struct SparePool<E: Env> {
    slots: RawArray<u64, E>,
    used: u64,
    retired: u64,
    cursor: u64,
}

impl<E: Env> SparePool<E> {
    /// A pool of `total` free blocks; `None` when memory is short.
    pub fn new(total: u64) -> Option<Self> {
        Some(Self {
            slots: RawArray::new(usize::try_from(total).ok()?)?,
            used: 0,
            retired: 0,
            cursor: 0,
        })
    }

    /// Grows the pool to `total` blocks, the new ones free; `None` (and no
    /// change) when memory is short or `total` is not larger.
    pub fn grow(&mut self, total: u64) -> Option<()> {
        let n = usize::try_from(total).ok()?;
        if n <= self.slots.len() {
            return None;
        }
        let mut slots = RawArray::<u64, E>::new(n)?;
        slots[..self.slots.len()].copy_from_slice(&self.slots);
        self.slots = slots;
        Some(())
    }

    /// Blocks in the pool.
    pub fn total(&self) -> u64 {
        self.slots.len() as u64
    }

    /// Blocks holding a main block (retired blocks not included).
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Blocks retired: bad, never used again.
    pub fn retired(&self) -> u64 {
        self.retired
    }

    /// Blocks free: neither used nor retired.
    pub fn free(&self) -> u64 {
        self.total() - self.used - self.retired
    }

    /// Whether `block` is in use (or retired); blocks outside the pool count
    /// as in use.
    pub fn in_use(&self, block: u64) -> bool {
        match usize::try_from(block).ok().and_then(|b| self.slots.get(b)) {
            Some(&v) => v != 0,
            None => true,
        }
    }

    /// The main block pool block `block` holds, if any.
    pub fn holder(&self, block: u64) -> Option<u64> {
        match usize::try_from(block).ok().and_then(|b| self.slots.get(b)) {
            Some(&v) if v != 0 && v != RETIRED => Some(v - 1),
            _ => None,
        }
    }

    /// Marks `block` as holding `main`. Returns false if it was outside, in
    /// use or retired, or if `main` cannot be stored.
    pub fn take(&mut self, block: u64, main: u64) -> bool {
        // `main + 1` must be neither 0 nor `RETIRED`.
        if self.in_use(block) || main >= RETIRED - 1 {
            return false;
        }
        self.slots[block as usize] = main + 1;
        self.used += 1;
        true
    }

    /// Marks `block` free again. Returns false if it was not in use; a
    /// retired block stays retired (false).
    pub fn release(&mut self, block: u64) -> bool {
        match usize::try_from(block)
            .ok()
            .and_then(|b| self.slots.get_mut(b))
        {
            Some(v) if *v != 0 && *v != RETIRED => {
                *v = 0;
                self.used -= 1;
                true
            }
            _ => false,
        }
    }

    /// Retires `block`: it is bad and never handed out again. Returns the
    /// main block it held, if any (that remap is gone from the pool). A block
    /// outside the pool or already retired is left alone (None).
    pub fn retire(&mut self, block: u64) -> Option<u64> {
        let v = usize::try_from(block)
            .ok()
            .and_then(|b| self.slots.get_mut(b))?;
        let old = *v;
        if old == RETIRED {
            return None;
        }
        *v = RETIRED;
        self.retired += 1;
        if old == 0 {
            return None;
        }
        self.used -= 1;
        Some(old - 1)
    }

    /// Undoes [`Self::retire`] of a block that held `main`, when the commit
    /// recording the retirement failed. False if `block` is not retired.
    pub fn unretire(&mut self, block: u64, main: u64) -> bool {
        let Some(v) = usize::try_from(block)
            .ok()
            .and_then(|b| self.slots.get_mut(b))
        else {
            return false;
        };
        if *v != RETIRED || main >= RETIRED - 1 {
            return false;
        }
        *v = main + 1;
        self.retired -= 1;
        self.used += 1;
        true
    }

    /// Frees every block that holds a main block; retired blocks stay
    /// retired. Returns how many were freed.
    pub fn release_all(&mut self) -> u64 {
        for v in self.slots.iter_mut() {
            if *v != RETIRED {
                *v = 0;
            }
        }
        let n = self.used;
        self.used = 0;
        self.cursor = 0;
        n
    }

    /// Takes any free block for `main`: the first at or after the cursor,
    /// wrapping. At most one pass over the pool.
    pub fn alloc(&mut self, main: u64) -> Option<u64> {
        let total = self.total();
        if self.free() == 0 {
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

    /// Frees every block, retired ones included.
    pub fn reset(&mut self) {
        self.slots.fill(0);
        self.used = 0;
        self.retired = 0;
        self.cursor = 0;
    }

    /// The slots of entry unit `k` of `per` slots (fewer in the last
    /// unit), as stored on disk.
    pub fn unit_slots(&self, k: u64, per: usize) -> &[u64] {
        let lo = (k as usize).saturating_mul(per).min(self.slots.len());
        let hi = lo.saturating_add(per).min(self.slots.len());
        &self.slots[lo..hi]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logic::format::SLOTS_PER_SECTOR;
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
        assert_eq!(p.unit_slots(0, SLOTS_PER_SECTOR)[7], 1);
        assert_eq!(p.unit_slots(0, SLOTS_PER_SECTOR).len(), 61);
        assert_eq!(p.unit_slots(1, SLOTS_PER_SECTOR).len(), 9);
        assert_eq!(p.unit_slots(2, SLOTS_PER_SECTOR).len(), 0);
        p.reset();
        assert_eq!(p.used(), 0);
        assert!(!p.in_use(7));
    }

    #[test]
    fn retired_blocks_are_never_used() {
        let mut p = SparePool::<HostEnv>::new(10).unwrap();
        assert!(p.take(3, 30));
        assert!(p.take(4, 40));
        // Retiring a used block hands back its main block.
        assert_eq!(p.retire(3), Some(30));
        assert_eq!((p.used(), p.retired(), p.free()), (1, 1, 8));
        // A free block, then the same block again, then one outside.
        assert_eq!(p.retire(0), None);
        assert_eq!(p.retire(0), None);
        assert_eq!(p.retire(10), None);
        assert_eq!(p.retire(u64::MAX), None);
        assert_eq!((p.used(), p.retired(), p.free()), (1, 2, 7));
        for b in [0, 3] {
            assert!(p.in_use(b));
            assert_eq!(p.holder(b), None);
            assert!(!p.take(b, 1));
            assert!(!p.release(b));
            assert!(p.in_use(b));
        }
        assert_eq!(
            p.unit_slots(0, SLOTS_PER_SECTOR)[..5],
            [RETIRED, 0, 0, RETIRED, 41]
        );
        // Allocation skips them, and the pool is full when only they remain.
        let mut got = std::vec::Vec::new();
        while let Some(b) = p.alloc(100 + got.len() as u64) {
            got.push(b);
        }
        assert_eq!(got, [1, 2, 5, 6, 7, 8, 9]);
        assert_eq!((p.used(), p.retired(), p.free()), (8, 2, 0));
        // A main block whose slot value would read as RETIRED is refused.
        assert!(p.release(9));
        assert!(!p.take(9, u64::MAX - 1));
        assert!(!p.take(9, u64::MAX));
        assert!(p.take(9, u64::MAX - 2));
        // Releasing all remaps keeps the retired blocks.
        assert_eq!(p.release_all(), 8);
        assert_eq!((p.used(), p.retired(), p.free()), (0, 2, 8));
        assert!(p.in_use(0) && p.in_use(3) && !p.in_use(4));
        assert_eq!(p.alloc(5), Some(1));
        // Reset clears everything.
        p.reset();
        assert_eq!((p.used(), p.retired(), p.free()), (0, 0, 10));
        assert!(!p.in_use(3));
        assert_eq!(p.alloc(1), Some(0));
    }
}
