// SPDX-License-Identifier: GPL-2.0

//! Host benchmark of the remap table: median nanoseconds per lookup (hits and
//! misses) and bytes per remap, at 1k, 100k and 1M entries.
//!
//! ```text
//! cargo bench -p dm-remap --bench table
//! ```
//!
//! Lookups run without a read-side lock (single thread, no writer running):
//! the kernel's `rcu_read_lock` costs next to nothing, the host stand-in a
//! read-write lock, which would dominate. Bytes are what the table asks the
//! allocator for (nodes and buckets); in the kernel a 24-byte node takes a
//! 32-byte slab object.

#![allow(unsafe_code)]

use dm_remap::logic::mem::Env;
use dm_remap::logic::table::{target_buckets, RemapTable};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

/// Counts live heap bytes.
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: Forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: Same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: Same contract as ours.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: Same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Single-threaded environment: no reader runs concurrently with a writer,
/// so read-side sections and grace periods are empty.
struct Bench;

// SAFETY: Memory from the global allocator, zeroed; the benchmark never runs
// a reader concurrently with a writer, so an empty grace period is correct.
unsafe impl Env for Bench {
    fn alloc_zeroed(layout: Layout) -> Option<NonNull<u8>> {
        // SAFETY: The table never asks for zero bytes.
        NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })
    }
    unsafe fn free(ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: Guaranteed by the caller.
        unsafe { std::alloc::dealloc(ptr.as_ptr(), layout) }
    }
    fn synchronize() {}
    fn read_lock() {}
    fn read_unlock() {}
}

fn rng(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    println!("entries    buckets   ns/hit  ns/miss  bytes/remap");
    for n in [1_000u64, 100_000, 1_000_000] {
        let before = LIVE.load(Ordering::Relaxed);
        let (t, mut w) = RemapTable::<Bench>::new().expect("memory");
        // Keys spread over a 1 TiB disk of 512-byte blocks, in random order.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let keys: Vec<u64> = (0..n).map(|_| rng(&mut x) % (1 << 31) * 2).collect();
        let mut inserted = 0u64;
        for &k in &keys {
            let want = target_buckets(t.buckets(), t.len() + 1);
            if want != t.buckets() {
                t.resize(&mut w, want).expect("memory");
            }
            if t.insert(&mut w, k, inserted).is_ok() {
                inserted += 1;
            }
        }
        let bytes = (LIVE.load(Ordering::Relaxed) - before) as f64 - (keys.capacity() * 8) as f64;
        let per_remap = bytes / t.len() as f64;

        let probes = 2_000_000usize;
        let hit_keys: Vec<u64> = (0..probes)
            .map(|_| keys[(rng(&mut x) % n) as usize])
            .collect();
        // Odd keys are never inserted.
        let miss_keys: Vec<u64> = (0..probes).map(|_| rng(&mut x) | 1).collect();
        let mut hit = Vec::new();
        let mut miss = Vec::new();
        for _ in 0..7 {
            let s = Instant::now();
            for &k in &hit_keys {
                black_box(t.lookup(black_box(k)));
            }
            hit.push(s.elapsed().as_nanos() as f64 / probes as f64);
            let s = Instant::now();
            for &k in &miss_keys {
                black_box(t.lookup(black_box(k)));
            }
            miss.push(s.elapsed().as_nanos() as f64 / probes as f64);
        }
        println!(
            "{:>8} {:>10} {:>8.1} {:>8.1} {:>12.1}",
            t.len(),
            t.buckets(),
            median(hit),
            median(miss),
            per_remap
        );
    }
}
