// SPDX-License-Identifier: GPL-2.0

//! The pending blocks as `map` sees them: main blocks whose reads failed and
//! whose next write must go to a new spare block instead of main.
//!
//! A small array of atomics, read without locks: `map` loads the count
//! (nothing else while it is zero, the usual case) and compares at most
//! [`CAPACITY`] entries. Only the holder of the target's writer lock changes
//! it. Removal moves the last entry into the hole before it shrinks the
//! count, so a reader running concurrently never misses an entry that stays.
//! A reader racing with an insertion may miss the new entry; that write was
//! concurrent with the read that failed and may go either way.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Most pending blocks (what the metadata can hold).
pub const CAPACITY: usize = 60;

/// See the module documentation.
pub struct PendingSet {
    len: AtomicUsize,
    blocks: [AtomicU64; CAPACITY],
}

impl Default for PendingSet {
    fn default() -> Self {
        Self::new()
    }
}

impl PendingSet {
    /// An empty set.
    pub const fn new() -> Self {
        #[allow(clippy::declare_interior_mutable_const)]
        const Z: AtomicU64 = AtomicU64::new(0);
        Self {
            len: AtomicUsize::new(0),
            blocks: [Z; CAPACITY],
        }
    }

    /// Number of pending blocks.
    #[inline]
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire).min(CAPACITY)
    }

    /// Whether no block is pending.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `block` is pending. Lock-free.
    pub fn contains(&self, block: u64) -> bool {
        let n = self.len();
        self.blocks[..n]
            .iter()
            .any(|b| b.load(Ordering::Relaxed) == block)
    }

    /// The first pending block in `first..first + n`, if any. Lock-free.
    pub fn first_in(&self, first: u64, n: u64) -> Option<u64> {
        let len = self.len();
        let mut best: Option<u64> = None;
        for b in &self.blocks[..len] {
            let b = b.load(Ordering::Relaxed);
            if b >= first && b - first < n && best.map_or(true, |x| b < x) {
                best = Some(b);
            }
        }
        best
    }

    /// Replaces the contents with `blocks` (at most [`CAPACITY`]). Writer
    /// only.
    pub fn set(&self, blocks: &[u64]) {
        // Shrink first so that no reader sees a half-written entry, then
        // fill, then publish the count.
        self.len.store(0, Ordering::Release);
        let n = blocks.len().min(CAPACITY);
        for (slot, b) in self.blocks.iter().zip(&blocks[..n]) {
            slot.store(*b, Ordering::Relaxed);
        }
        self.len.store(n, Ordering::Release);
    }

    /// Adds `block`; false if present or full. Writer only.
    pub fn insert(&self, block: u64) -> bool {
        let n = self.len();
        if n == CAPACITY || self.contains(block) {
            return false;
        }
        self.blocks[n].store(block, Ordering::Relaxed);
        self.len.store(n + 1, Ordering::Release);
        true
    }

    /// Removes `block`; false if absent. Writer only.
    pub fn remove(&self, block: u64) -> bool {
        let n = self.len();
        let Some(i) = self.blocks[..n]
            .iter()
            .position(|b| b.load(Ordering::Relaxed) == block)
        else {
            return false;
        };
        let last = self.blocks[n - 1].load(Ordering::Relaxed);
        self.blocks[i].store(last, Ordering::Release);
        self.len.store(n - 1, Ordering::Release);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_first_in() {
        let s = PendingSet::new();
        assert!(s.is_empty());
        assert!(s.insert(10));
        assert!(s.insert(5));
        assert!(!s.insert(10));
        assert_eq!(s.first_in(0, 100), Some(5));
        assert_eq!(s.first_in(6, 5), Some(10));
        assert_eq!(s.first_in(6, 4), None);
        assert!(s.remove(5));
        assert!(!s.remove(5));
        assert!(s.contains(10));
        assert_eq!(s.len(), 1);
        for b in 100..100 + CAPACITY as u64 - 1 {
            assert!(s.insert(b));
        }
        assert!(!s.insert(1));
        s.set(&[1, 2]);
        assert_eq!(s.len(), 2);
        assert!(s.contains(2) && !s.contains(10));
    }
}
