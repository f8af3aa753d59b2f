// SPDX-License-Identifier: GPL-2.0

//! The spare's data pool: which pool block holds which main block.
//!
//! One slot per usable pool block, holding the main block plus one, 0 while
//! the block is free, or [`RETIRED`] once the block is known to be bad: the
//! values the metadata copies store (`format.rs`), entry unit `k` holding
//! slots `k * per..(k + 1) * per`. A slot takes 4 bytes while every main
//! block plus one fits below `u32::MAX` (main devices of fewer than 2^32 - 1
//! blocks: 2 TiB of 512-byte blocks, 16 TiB of 4 KiB ones), 8 bytes
//! otherwise: at a million remaps this array is a third of the target's
//! memory. Used only by the table's writer. Allocation is next-fit from a
//! cursor, so consecutive allocations are usually contiguous on the spare;
//! retired blocks are never handed out.

use super::format::RETIRED;
use super::mem::{Env, RawArray};

/// A retired block in a narrow slot.
const NARROW_RETIRED: u32 = u32::MAX;

/// The slots, narrow or wide.
enum Slots<E: Env> {
    Narrow(RawArray<u32, E>),
    Wide(RawArray<u64, E>),
}

impl<E: Env> Slots<E> {
    fn new(n: usize, wide: bool) -> Option<Self> {
        Some(if wide {
            Self::Wide(RawArray::new(n)?)
        } else {
            Self::Narrow(RawArray::new(n)?)
        })
    }

    fn len(&self) -> usize {
        match self {
            Self::Narrow(a) => a.len(),
            Self::Wide(a) => a.len(),
        }
    }

    fn wide(&self) -> bool {
        matches!(self, Self::Wide(_))
    }

    /// Slot `i` as stored on disk; `None` outside the pool.
    fn get(&self, i: usize) -> Option<u64> {
        match self {
            Self::Narrow(a) => a.get(i).map(|&v| match v {
                NARROW_RETIRED => RETIRED,
                v => u64::from(v),
            }),
            Self::Wide(a) => a.get(i).copied(),
        }
    }

    /// Sets slot `i` (inside the pool) to `v`: 0, [`RETIRED`] or a main
    /// block plus one that [`SparePool::fits`] the slots.
    fn set(&mut self, i: usize, v: u64) {
        match self {
            Self::Narrow(a) => {
                if let Some(x) = a.get_mut(i) {
                    *x = if v == RETIRED {
                        NARROW_RETIRED
                    } else {
                        u32::try_from(v).unwrap_or(NARROW_RETIRED)
                    };
                }
            }
            Self::Wide(a) => {
                if let Some(x) = a.get_mut(i) {
                    *x = v;
                }
            }
        }
    }

    /// Copies the first slots of `from` (shorter) into `self`.
    fn copy_from(&mut self, from: &Self) {
        for i in 0..from.len() {
            if let Some(v) = from.get(i) {
                self.set(i, v);
            }
        }
    }
}

/// Allocation state of the spare's data pool.
pub struct SparePool<E: Env> {
    slots: Slots<E>,
    used: u64,
    retired: u64,
    cursor: u64,
}

impl<E: Env> SparePool<E> {
    /// A pool of `total` free blocks for a main device of `main_blocks`;
    /// `None` when memory is short.
    pub fn new(total: u64, main_blocks: u64) -> Option<Self> {
        let wide = main_blocks >= u64::from(NARROW_RETIRED);
        Some(Self {
            slots: Slots::new(usize::try_from(total).ok()?, wide)?,
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
        let mut slots = Slots::<E>::new(n, self.slots.wide())?;
        slots.copy_from(&self.slots);
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

    fn get(&self, block: u64) -> Option<u64> {
        self.slots.get(usize::try_from(block).ok()?)
    }

    /// Whether `block` is in use (or retired); blocks outside the pool count
    /// as in use.
    pub fn in_use(&self, block: u64) -> bool {
        self.get(block) != Some(0)
    }

    /// The main block pool block `block` holds, if any.
    pub fn holder(&self, block: u64) -> Option<u64> {
        match self.get(block) {
            Some(v) if v != 0 && v != RETIRED => Some(v - 1),
            _ => None,
        }
    }

    /// Whether a slot can hold `main`: `main + 1` must be neither 0 nor
    /// read as retired.
    fn fits(&self, main: u64) -> bool {
        if self.slots.wide() {
            main < RETIRED - 1
        } else {
            main < u64::from(NARROW_RETIRED) - 1
        }
    }

    /// Marks `block` as holding `main`. Returns false if it was outside, in
    /// use or retired, or if `main` cannot be stored.
    pub fn take(&mut self, block: u64, main: u64) -> bool {
        if self.in_use(block) || !self.fits(main) {
            return false;
        }
        self.slots.set(block as usize, main + 1);
        self.used += 1;
        true
    }

    /// Marks `block` free again. Returns false if it was not in use; a
    /// retired block stays retired (false).
    pub fn release(&mut self, block: u64) -> bool {
        match self.get(block) {
            Some(v) if v != 0 && v != RETIRED => {
                self.slots.set(block as usize, 0);
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
        let old = self.get(block)?;
        if old == RETIRED {
            return None;
        }
        self.slots.set(block as usize, RETIRED);
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
        if self.get(block) != Some(RETIRED) || !self.fits(main) {
            return false;
        }
        self.slots.set(block as usize, main + 1);
        self.retired -= 1;
        self.used += 1;
        true
    }

    /// Frees every block that holds a main block; retired blocks stay
    /// retired. Returns how many were freed.
    pub fn release_all(&mut self) -> u64 {
        for i in 0..self.slots.len() {
            if self.slots.get(i) != Some(RETIRED) {
                self.slots.set(i, 0);
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
            if self.get(b) == Some(0) && self.take(b, main) {
                self.cursor = (b + 1) % total;
                return Some(b);
            }
        }
        None
    }

    /// Frees every block, retired ones included.
    pub fn reset(&mut self) {
        match &mut self.slots {
            Slots::Narrow(a) => a.fill(0),
            Slots::Wide(a) => a.fill(0),
        }
        self.used = 0;
        self.retired = 0;
        self.cursor = 0;
    }

    /// The slots of entry unit `k` of `per` slots (fewer in the last
    /// unit), as stored on disk.
    pub fn unit_slots(&self, k: u64, per: usize) -> impl Iterator<Item = u64> + '_ {
        let len = self.slots.len();
        let lo = (k as usize).saturating_mul(per).min(len);
        let hi = lo.saturating_add(per).min(len);
        (lo..hi).map(|i| self.slots.get(i).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logic::format::SLOTS_PER_SECTOR;
    use crate::HostEnv;

    #[test]
    fn allocates_every_block_once() {
        let mut p = SparePool::<HostEnv>::new(130, 1 << 20).unwrap();
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
        let mut p = SparePool::<HostEnv>::new(100, 1 << 20).unwrap();
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
        let mut p = SparePool::<HostEnv>::new(70, 1 << 20).unwrap();
        assert!(p.take(7, 0));
        assert!(!p.take(7, 1));
        assert!(!p.take(70, 1));
        assert!(!p.release(8));
        assert_eq!(p.unit_slots(0, SLOTS_PER_SECTOR).nth(7), Some(1));
        assert_eq!(p.unit_slots(0, SLOTS_PER_SECTOR).count(), 61);
        assert_eq!(p.unit_slots(1, SLOTS_PER_SECTOR).count(), 9);
        assert_eq!(p.unit_slots(2, SLOTS_PER_SECTOR).count(), 0);
        p.reset();
        assert_eq!(p.used(), 0);
        assert!(!p.in_use(7));
    }

    #[test]
    fn retired_blocks_are_never_used() {
        // Narrow slots (main below 2^32 - 1 blocks), then wide ones.
        retired_blocks_in(u64::from(u32::MAX) - 1, u64::from(u32::MAX));
        retired_blocks_in(u64::MAX, u64::MAX);
    }

    /// `top`: the first main block a slot cannot hold.
    fn retired_blocks_in(main_blocks: u64, top: u64) {
        let mut p = SparePool::<HostEnv>::new(10, main_blocks).unwrap();
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
        let first: std::vec::Vec<u64> = p.unit_slots(0, SLOTS_PER_SECTOR).take(5).collect();
        assert_eq!(first, [RETIRED, 0, 0, RETIRED, 41]);
        // Allocation skips them, and the pool is full when only they remain.
        let mut got = std::vec::Vec::new();
        while let Some(b) = p.alloc(100 + got.len() as u64) {
            got.push(b);
        }
        assert_eq!(got, [1, 2, 5, 6, 7, 8, 9]);
        assert_eq!((p.used(), p.retired(), p.free()), (8, 2, 0));
        // A main block whose slot value would read as RETIRED is refused.
        assert!(p.release(9));
        assert!(!p.take(9, top - 1));
        assert!(!p.take(9, top));
        assert!(p.take(9, top - 2));
        assert_eq!(p.holder(9), Some(top - 2));
        // Growing keeps every slot.
        let mut q = SparePool::<HostEnv>::new(10, main_blocks).unwrap();
        for b in 0..10 {
            if let Some(m) = p.holder(b) {
                assert!(q.take(b, m));
            } else if p.in_use(b) {
                q.retire(b);
            }
        }
        q.grow(20).unwrap();
        assert_eq!(q.total(), 20);
        assert!(q.unit_slots(0, 20).eq(p.unit_slots(0, 20).chain([0; 10])));
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
