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
//!
//! [`PendingSet::set`] rewrites the whole array under a sequence count: a
//! reader that overlaps it tries again (a few times, never unboundedly) and
//! then answers conservatively ([`PendingSet::first_in`] names the first
//! block, which only sends a write through the worker, where the list is
//! checked under the lock), so a block that stays pending is never missed.

use core::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Reads of a changing set before a reader answers conservatively.
const READ_TRIES: u32 = 4;

/// Most pending blocks (what the metadata can hold).
pub const CAPACITY: usize = 60;

/// See the module documentation.
pub struct PendingSet {
    /// Odd while [`PendingSet::set`] rewrites the array.
    seq: AtomicU32,
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
            seq: AtomicU32::new(0),
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

    /// Runs `f` on a consistent view of the entries; `None` when the set
    /// kept changing meanwhile.
    fn read<T>(&self, f: impl Fn(&[AtomicU64]) -> T) -> Option<T> {
        for _ in 0..READ_TRIES {
            let s = self.seq.load(Ordering::Acquire);
            if s & 1 != 0 {
                core::hint::spin_loop();
                continue;
            }
            let r = f(&self.blocks[..self.len()]);
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == s {
                return Some(r);
            }
        }
        None
    }

    /// Whether `block` is pending. Lock-free; false when unsure (callers
    /// only use it to skip work).
    pub fn contains(&self, block: u64) -> bool {
        self.read(|v| v.iter().any(|b| b.load(Ordering::Relaxed) == block))
            .unwrap_or(false)
    }

    /// The first pending block in `first..first + n`, if any; `first` when
    /// unsure (the set changed under every try). Lock-free.
    pub fn first_in(&self, first: u64, n: u64) -> Option<u64> {
        let r = self.read(|v| {
            let mut best: Option<u64> = None;
            for b in v {
                let b = b.load(Ordering::Relaxed);
                if b >= first && b - first < n && best.map_or(true, |x| b < x) {
                    best = Some(b);
                }
            }
            best
        });
        match r {
            Some(best) => best,
            None if n > 0 => Some(first),
            None => None,
        }
    }

    /// Replaces the contents with `blocks` (at most [`CAPACITY`]). Writer
    /// only.
    pub fn set(&self, blocks: &[u64]) {
        // Readers that overlap the rewrite see the count change and retry.
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        let n = blocks.len().min(CAPACITY);
        for (slot, b) in self.blocks.iter().zip(&blocks[..n]) {
            slot.store(*b, Ordering::Relaxed);
        }
        self.len.store(n, Ordering::Relaxed);
        self.seq.store(s.wrapping_add(2), Ordering::Release);
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
    fn a_block_that_stays_pending_is_never_missed_while_the_set_changes() {
        // The writer keeps replacing the list; block 700 is in every version.
        // A reader in `map` must see it every time.
        extern crate std;
        use core::sync::atomic::AtomicBool;
        use std::sync::Arc;
        let s = Arc::new(PendingSet::new());
        let stop = Arc::new(AtomicBool::new(false));
        s.set(&[700]);
        let w = {
            let (s, stop) = (s.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let mut v: std::vec::Vec<u64> = (0..(i % 50)).map(|k| k * 3 + 1000).collect();
                    v.insert((i % 7) as usize % (v.len() + 1), 700);
                    s.set(&v);
                    i += 1;
                }
            })
        };
        let t0 = std::time::Instant::now();
        let mut reads = 0u64;
        while t0.elapsed() < std::time::Duration::from_millis(500) {
            assert_eq!(s.first_in(700, 1), Some(700), "after {reads} reads");
            assert!(s.first_in(0, 701).is_some());
            reads += 1;
        }
        stop.store(true, Ordering::Relaxed);
        w.join().unwrap();
    }

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
