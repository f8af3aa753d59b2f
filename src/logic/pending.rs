// SPDX-License-Identifier: GPL-2.0

//! The pending blocks as `map` sees them: main blocks whose reads failed and
//! whose next write must go to a new spare block instead of main.
//!
//! An ascending array of atomics, read without locks: `map` loads the count
//! (nothing else while it is zero, the usual case) and searches the array by
//! bisection (at most 13 comparisons for the 4,572 blocks a version-3 spare
//! lists). Only the holder of the target's writer lock changes it, with
//! [`PendingSet::set`], which rewrites the whole array under a sequence
//! count: a reader that overlaps it tries again (a few times, never
//! unboundedly) and then answers conservatively ([`PendingSet::first_in`]
//! names the first block, which only sends a write through the worker, where
//! the list is checked under the lock), so a block that stays pending is
//! never missed. A reader racing with an insertion may miss the new entry;
//! that write was concurrent with the read that failed and may go either
//! way.

use super::mem::{Env, RawArray};
use core::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Reads of a changing set before a reader answers conservatively.
const READ_TRIES: u32 = 4;

/// See the module documentation.
pub struct PendingSet<E: Env> {
    /// Odd while [`PendingSet::set`] rewrites the array.
    seq: AtomicU32,
    len: AtomicUsize,
    /// Ascending: `blocks[..len]`.
    blocks: RawArray<AtomicU64, E>,
}

impl<E: Env> PendingSet<E> {
    /// An empty set with room for `capacity` blocks; `None` when memory is
    /// short.
    pub fn new(capacity: usize) -> Option<Self> {
        Some(Self {
            seq: AtomicU32::new(0),
            len: AtomicUsize::new(0),
            blocks: RawArray::new(capacity)?,
        })
    }

    /// Number of pending blocks.
    #[inline]
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire).min(self.blocks.len())
    }

    /// Whether no block is pending.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `f` on a consistent view of the entries; `None` when the set
    /// kept changing meanwhile. (`f` may see a torn, unsorted view before
    /// the sequence check rejects it: it must stay in bounds and finite,
    /// which bisection over the slice does.)
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
        self.read(|v| {
            let i = v.partition_point(|b| b.load(Ordering::Relaxed) < block);
            v.get(i).is_some_and(|b| b.load(Ordering::Relaxed) == block)
        })
        .unwrap_or(false)
    }

    /// The first pending block in `first..first + n`, if any; `first` when
    /// unsure (the set changed under every try). Lock-free.
    pub fn first_in(&self, first: u64, n: u64) -> Option<u64> {
        let r = self.read(|v| {
            let i = v.partition_point(|b| b.load(Ordering::Relaxed) < first);
            let b = v.get(i)?.load(Ordering::Relaxed);
            (b >= first && b - first < n).then_some(b)
        });
        match r {
            Some(best) => best,
            None if n > 0 => Some(first),
            None => None,
        }
    }

    /// Replaces the contents with `blocks`, ascending (at most the
    /// capacity: the rest is dropped). Writer only.
    pub fn set(&self, blocks: &[u64]) {
        debug_assert!(blocks.windows(2).all(|w| w[0] < w[1]));
        // Readers that overlap the rewrite see the count change and retry.
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        let n = blocks.len().min(self.blocks.len());
        for (slot, b) in self.blocks.iter().zip(&blocks[..n]) {
            slot.store(*b, Ordering::Relaxed);
        }
        self.len.store(n, Ordering::Relaxed);
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logic::format::PENDING_ROOM;
    use crate::HostEnv;

    #[test]
    fn a_block_that_stays_pending_is_never_missed_while_the_set_changes() {
        // The writer keeps replacing the list; block 700 is in every version.
        // A reader in `map` must see it every time.
        extern crate std;
        use core::sync::atomic::AtomicBool;
        use std::sync::Arc;
        let s = Arc::new(PendingSet::<HostEnv>::new(PENDING_ROOM).unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        s.set(&[700]);
        let w = {
            let (s, stop) = (s.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // Below and above 700, in lists of 1 to 4,572 blocks.
                    let n = [0, 49, 4571][(i % 3) as usize] as u64;
                    let below = (i % 7).min(n);
                    let mut v: std::vec::Vec<u64> = (0..below).map(|k| 600 + k).collect();
                    v.push(700);
                    v.extend((below..n).map(|k| 1000 + k * 3));
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
    fn set_first_in_contains() {
        let s = PendingSet::<HostEnv>::new(PENDING_ROOM).unwrap();
        assert!(s.is_empty());
        assert_eq!(s.first_in(0, u64::MAX), None);
        s.set(&[5, 10]);
        assert_eq!(s.first_in(0, 100), Some(5));
        assert_eq!(s.first_in(6, 5), Some(10));
        assert_eq!(s.first_in(6, 4), None);
        assert_eq!(s.first_in(11, 100), None);
        assert!(s.contains(10) && s.contains(5) && !s.contains(7));
        // A full version-3 list: every block found by bisection, and the
        // gaps between them not.
        let v: std::vec::Vec<u64> = (0..PENDING_ROOM as u64).map(|b| b * 4 + 2).collect();
        s.set(&v);
        assert_eq!(s.len(), PENDING_ROOM);
        for &b in &v {
            assert!(s.contains(b) && !s.contains(b + 1));
            assert_eq!(s.first_in(b - 1, 2), Some(b));
            assert_eq!(s.first_in(b + 1, 3), None);
            assert_eq!(s.first_in(b - 2, 1), None);
        }
        // More than it holds: the rest is dropped.
        let small = PendingSet::<HostEnv>::new(2).unwrap();
        small.set(&[1, 2, 3]);
        assert_eq!(small.len(), 2);
        assert!(!small.contains(3));
        s.set(&[]);
        assert!(s.is_empty());
    }
}
