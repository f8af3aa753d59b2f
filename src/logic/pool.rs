// SPDX-License-Identifier: GPL-2.0

//! The spare's data pool: which blocks hold remapped data.
//!
//! A bitmap with one bit per pool block, used only by the table's writer.
//! Allocation is next-fit from a cursor, so consecutive allocations are
//! usually contiguous on the spare.

use super::mem::{Env, RawArray};

/// Allocation state of the spare's data pool.
pub struct SparePool<E: Env> {
    bits: RawArray<u64, E>,
    total: u64,
    used: u64,
    cursor: u64,
}

impl<E: Env> SparePool<E> {
    /// A pool of `total` free blocks; `None` when memory is short.
    pub fn new(total: u64) -> Option<Self> {
        let words = usize::try_from(total.div_ceil(64)).ok()?;
        Some(Self {
            bits: RawArray::new(words)?,
            total,
            used: 0,
            cursor: 0,
        })
    }

    /// Blocks in the pool.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Blocks in use.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Blocks free.
    pub fn free(&self) -> u64 {
        self.total - self.used
    }

    /// Whether `block` is in use; blocks outside the pool count as in use.
    pub fn in_use(&self, block: u64) -> bool {
        if block >= self.total {
            return true;
        }
        self.bits[(block / 64) as usize] & (1 << (block % 64)) != 0
    }

    /// Whether all of `start..start + n` lies in the pool and is free.
    pub fn range_free(&self, start: u64, n: u64) -> bool {
        match start.checked_add(n) {
            Some(end) if end <= self.total => (start..end).all(|b| !self.in_use(b)),
            _ => false,
        }
    }

    /// Marks `block` used. Returns false if it was outside or already used.
    pub fn take(&mut self, block: u64) -> bool {
        if self.in_use(block) {
            return false;
        }
        self.bits[(block / 64) as usize] |= 1 << (block % 64);
        self.used += 1;
        true
    }

    /// Marks `block` free again. Returns false if it was not in use.
    pub fn release(&mut self, block: u64) -> bool {
        if block >= self.total || !self.in_use(block) {
            return false;
        }
        self.bits[(block / 64) as usize] &= !(1 << (block % 64));
        self.used -= 1;
        true
    }

    /// Takes any free block: the first at or after the cursor, wrapping.
    pub fn alloc(&mut self) -> Option<u64> {
        if self.used == self.total {
            return None;
        }
        let words = self.bits.len() as u64;
        let start_word = self.cursor / 64;
        // At most one pass over the bitmap, plus the start word again.
        for i in 0..=words {
            let w = (start_word + i) % words;
            let free = !self.bits[w as usize];
            if free == 0 {
                continue;
            }
            let mut mask = free;
            if i == 0 {
                // In the first word, only at or after the cursor.
                mask &= !0u64 << (self.cursor % 64);
            }
            if mask == 0 {
                continue;
            }
            let b = w * 64 + u64::from(mask.trailing_zeros());
            if b < self.total && self.take(b) {
                self.cursor = (b + 1) % self.total;
                return Some(b);
            }
        }
        None
    }

    /// Frees every block.
    pub fn reset(&mut self) {
        for w in self.bits.iter_mut() {
            *w = 0;
        }
        self.used = 0;
        self.cursor = 0;
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
        for _ in 0..130 {
            let b = p.alloc().unwrap() as usize;
            assert!(!seen[b]);
            seen[b] = true;
        }
        assert_eq!(p.alloc(), None);
        assert_eq!(p.free(), 0);
        assert!(p.release(64));
        assert_eq!(p.alloc(), Some(64));
    }

    #[test]
    fn next_fit_is_contiguous_and_wraps() {
        let mut p = SparePool::<HostEnv>::new(100).unwrap();
        assert!(p.take(0));
        assert_eq!(p.alloc(), Some(1));
        assert_eq!(p.alloc(), Some(2));
        for b in 3..100 {
            assert!(p.take(b));
        }
        assert!(p.release(1));
        assert_eq!(p.alloc(), Some(1));
    }

    #[test]
    fn ranges_and_bounds() {
        let mut p = SparePool::<HostEnv>::new(10).unwrap();
        assert!(p.range_free(0, 10));
        assert!(!p.range_free(5, 6));
        assert!(!p.range_free(u64::MAX, 2));
        assert!(p.take(7));
        assert!(!p.take(7));
        assert!(!p.take(10));
        assert!(!p.range_free(5, 3));
        assert!(p.range_free(0, 7));
        assert!(!p.release(8));
        p.reset();
        assert_eq!(p.used(), 0);
        assert!(p.range_free(0, 10));
    }
}
