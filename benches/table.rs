// SPDX-License-Identifier: GPL-2.0

//! Host benchmark of the remap table: median nanoseconds per lookup (hits and
//! misses) with a warm cache, bytes per remap and their peak while the table
//! grows, at 1k, 100k and 1M entries; then, at 1M scattered entries, the
//! latency of single lookups with a cold cache (p50, p99, max): before each
//! timed lookup the benchmark reads 128 MiB of other memory, four times the
//! host's last-level cache, so that the lookup's directory, segment header
//! and slots come from memory as they would on a busy server.
//!
//! ```text
//! cargo bench -p dm-remap --bench table
//! ```
//!
//! Lookups run without a read-side lock (single thread, no writer running):
//! the kernel's `rcu_read_lock` costs next to nothing, the host stand-in a
//! read-write lock, which would dominate. Bytes are what the table asks the
//! allocator for, and what the kernel would hand out: kmalloc's size classes
//! (powers of two, 96, 192) up to 4 KiB and a power of two above (`kvzalloc`
//! tries kmalloc first; a 24-byte node takes 32 bytes), whole pages for
//! what `Env::alloc_pages_zeroed` (`vzalloc`) allocates, recognised here by
//! its page alignment. The peak counts old and new memory alive together
//! during a resize.

#![allow(unsafe_code)]

use dm_remap::logic::mem::Env;
use dm_remap::logic::table::{RemapTable, Retired};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

/// Counts live heap bytes: as asked, and rounded as the kernel would.
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);
static ROUNDED: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

fn rounded(l: Layout) -> isize {
    let size = l.size();
    (match size {
        _ if l.align() == 4096 => size.div_ceil(4096) * 4096,
        0..=8 => 8,
        65..=96 => 96,
        129..=192 => 192,
        _ => size.next_power_of_two(),
    }) as isize
}

fn count(l: Layout) {
    LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
    let r = ROUNDED.fetch_add(rounded(l), Ordering::Relaxed) + rounded(l);
    PEAK.fetch_max(r, Ordering::Relaxed);
}

/// Live bytes: asked, rounded.
fn live() -> (isize, isize) {
    (
        LIVE.load(Ordering::Relaxed),
        ROUNDED.load(Ordering::Relaxed),
    )
}

fn reset_peak() {
    PEAK.store(ROUNDED.load(Ordering::Relaxed), Ordering::Relaxed);
}

fn peak() -> isize {
    PEAK.load(Ordering::Relaxed)
}

// SAFETY: Forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count(l);
        // SAFETY: Same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        count(l);
        // SAFETY: Same contract as ours.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        ROUNDED.fetch_sub(rounded(l), Ordering::Relaxed);
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
    fn alloc_pages_zeroed(size: usize) -> Option<NonNull<u8>> {
        Self::alloc_zeroed(Layout::from_size_align(size, 4096).ok()?)
    }
    unsafe fn free_pages(ptr: NonNull<u8>, size: usize) {
        if let Ok(layout) = Layout::from_size_align(size, 4096) {
            // SAFETY: Guaranteed by the caller.
            unsafe { Self::free(ptr, layout) }
        }
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

/// The keys of a run: `n` blocks spread over a 1 TiB disk of 512-byte blocks
/// (even blocks below 2^32), in random order; probes of inserted keys
/// (hits) and of odd blocks, never inserted (misses).
struct Keys {
    keys: Vec<u64>,
    hits: Vec<u64>,
    misses: Vec<u64>,
}

/// Main blocks of the benchmark's disk, and its pool.
const MAIN_BLOCKS: u64 = 1 << 32;
const POOL_BLOCKS: u64 = 1 << 21;

impl Keys {
    fn new(n: u64) -> Self {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let keys: Vec<u64> = (0..n).map(|_| rng(&mut x) % (1 << 31) * 2).collect();
        let probes = 2_000_000usize;
        let hits = (0..probes)
            .map(|_| keys[(rng(&mut x) % n) as usize])
            .collect();
        let misses = (0..probes)
            .map(|_| rng(&mut x) % (1 << 31) * 2 + 1)
            .collect();
        Self { keys, hits, misses }
    }

    /// Median nanoseconds per lookup of the hits and of the misses.
    fn time(&self, lookup: impl Fn(u64) -> Option<u64>) -> (f64, f64) {
        let mut hit = Vec::new();
        let mut miss = Vec::new();
        for _ in 0..7 {
            for (probes, out) in [(&self.hits, &mut hit), (&self.misses, &mut miss)] {
                let s = Instant::now();
                for &k in probes {
                    black_box(lookup(black_box(k)));
                }
                out.push(s.elapsed().as_nanos() as f64 / probes.len() as f64);
            }
        }
        (median(hit), median(miss))
    }
}

/// Bytes since `before` (asked, rounded), per remap.
fn per_remap(before: (isize, isize), n: u64) -> (f64, f64) {
    let now = live();
    (
        (now.0 - before.0) as f64 / n as f64,
        (now.1 - before.1) as f64 / n as f64,
    )
}

/// Nanoseconds of single lookups of `probes`, each after evicting the
/// caches: p50, p99 and the largest.
fn cold(probes: &[u64], lookup: impl Fn(u64) -> Option<u64>) -> (u64, u64, u64) {
    let mut evict = vec![0u64; (128 << 20) / 8];
    let mut x = 1u64;
    let mut ns = Vec::with_capacity(probes.len());
    for &k in probes {
        // Write the eviction buffer so that its lines displace the table's
        // (a read could be served from shared lines without eviction).
        for (i, e) in evict.iter_mut().enumerate().step_by(8) {
            *e = e.wrapping_add(i as u64 ^ x);
        }
        x = rng(&mut x);
        let s = Instant::now();
        black_box(lookup(black_box(k)));
        ns.push(s.elapsed().as_nanos() as u64);
    }
    black_box(&evict);
    ns.sort_unstable();
    let at = |q: usize| ns[(ns.len() * q / 100).min(ns.len() - 1)];
    (at(50), at(99), ns[ns.len() - 1])
}

fn main() {
    println!("entries      slots   ns/hit  ns/miss  bytes/remap  rounded  peak(rounded)");
    let mut million = None;
    for n in [1_000u64, 100_000, 1_000_000] {
        let k = Keys::new(n);
        let before = live();
        reset_peak();
        let (t, mut w) = RemapTable::<Bench>::new(MAIN_BLOCKS, POOL_BLOCKS).expect("memory");
        let mut retired = Retired::new();
        let mut inserted = 0u64;
        for &key in &k.keys {
            if t.insert(&mut w, key, inserted % POOL_BLOCKS, &mut retired)
                .is_ok()
            {
                inserted += 1;
            }
        }
        drop(retired);
        let (asked, rounded) = per_remap(before, t.len());
        let top = (peak() - before.1) as f64 / t.len() as f64;
        let (hit, miss) = k.time(|b| t.lookup(b));
        println!(
            "{:>7} {:>10} {:>8.1} {:>8.1} {:>12.1} {:>8.1} {:>14.1}",
            t.len(),
            t.capacity(),
            hit,
            miss,
            asked,
            rounded,
            top
        );
        if n == 1_000_000 {
            million = Some((t, k));
        }
    }
    if let Some((t, k)) = million {
        // The clock read costs about 20-30 ns of each figure.
        println!("cold cache, 1M scattered entries, 2000 lookups each: p50 p99 max (ns)");
        let (p50, p99, max) = cold(&k.hits[..2000], |b| t.lookup(b));
        println!("hit  {p50:>6} {p99:>6} {max:>6}");
        let (p50, p99, max) = cold(&k.misses[..2000], |b| t.lookup(b));
        println!("miss {p50:>6} {p99:>6} {max:>6}");
    }
}
