// SPDX-License-Identifier: GPL-2.0

//! The remap table: main block → spare pool block in 8 bytes a remap, read
//! lock-free under RCU.
//!
//! A remap is one 64-bit word in an open-addressing hash (the chained table
//! of 0.4, a 24-byte node in a 32-byte slab object plus bucket pointers,
//! took 32–49 bytes a remap); the tables stay 68–85 % full, so a remap costs
//! about 10–12 bytes, and at most 16 bytes at 1,000,000 remaps even while a
//! part of the table is being rebuilt (old and new memory alive together),
//! counting the allocator's rounding.
//!
//! # Entries
//!
//! One `AtomicU64` a slot: `((main + 1) << vbits) | spare`. `kbits` (the bits
//! of `main + 1`) and `vbits` (the bits of a pool index) are fixed when the
//! table is created from the main device's and the pool's block counts
//! ([`RemapTable::new`]); a table whose two fields need more than 64 bits is
//! refused ([`TableError::TooWide`]; a wide mode with two words a slot can
//! come later). 0 is an empty slot ([`EMPTY`]), [`TOMBSTONE`] (`u64::MAX`) a
//! removed entry: `kbits` is the bit length of `main_blocks + 1`, so
//! `main + 1 <= main_blocks` never has all `kbits` bits set and no entry is
//! all ones.
//!
//! # Layout: extendible hashing
//!
//! The table publishes one directory through an `AtomicPtr`: `2^d` segment
//! pointers behind a header word holding the global depth `d`. A segment has
//! a local depth `ld <= d` and serves the `2^(d - ld)` directory entries
//! sharing the top `ld` bits of their index. A block's hash is
//! `h = fmix64(main)` (MurmurHash3's finaliser): its top `d` bits index the directory;
//! its home slot in the segment is the fast range reduction of the bits below
//! the top `ld`, `((h << ld) * cap) >> 64`. Collisions probe linearly, with
//! wrap-around, at most `cap` slots: no loop on the I/O path is unbounded.
//!
//! A segment is one allocation of `slots` words: a power of two from 16 to
//! 512 (128 bytes to 4 KiB, kmalloc's own sizes, from [`Env::alloc_zeroed`]),
//! above that a whole number of 4 KiB pages from [`Env::alloc_pages_zeroed`]
//! (`vzalloc`, which takes whole pages; `kvzalloc` would try kmalloc first
//! and take a power of two of pages). A directory above 4 KiB comes from
//! pages too. Its first two words are a
//! header: the local depth and capacity (read by lookups, never changed),
//! and the writer's counts of live entries, tombstones and reserved room
//! (21 bits each). `cap = slots - 2`.
//!
//! # Changes
//!
//! Writers are serialised by the [`Writer`] token. An insert stores the
//! entry into the first empty or tombstone slot of its probe sequence with a
//! release store, a replace stores the new entry (same key) in place, a
//! remove stores [`TOMBSTONE`] (or 0 when the run of slots ends right after
//! it, together with the tombstones just before). Lookups load with acquire
//! and stop at an empty slot: they see an entry's old or new value, never
//! neither.
//!
//! A segment is rebuilt when live entries plus tombstones plus reserved
//! room would exceed 85 % of its slots: a new segment is filled with the
//! live entries (no tombstones) while readers use the old one, then stored
//! into every directory entry it serves; the old one is freed after a grace
//! period.
//! - If its live entries fit 16 pages at ≤ 75 % load, it is rebuilt with the
//!   capacity for 75 % load (rounded as above).
//! - Otherwise it splits into two segments of local depth `ld + 1` by the
//!   next hash bit, each sized for its own entries at 75 % load. When
//!   `ld == d` the directory doubles first: the pointers are copied into an
//!   array twice the size, which is published with one release store; the
//!   old directory is freed after a grace period. If the split fails (for
//!   memory), the segment grows instead, to 64 pages at most
//!   ([`MAX_GROWN_SLOTS`]).
//! - After a remove, a segment with fewer live entries plus reserved room
//!   than a quarter of its slots (and more than 16 slots) is rebuilt
//!   smaller, at 75 % load for both.
//!
//! Not done: merging two buddy segments once both have shrunk (a table that
//! grew to many segments and lost most entries keeps its segments, at 16
//! slots each at the least), and shrinking the directory.
//!
//! # Memory
//!
//! Segments stay between 68 % and 85 % full once they are paged (the
//! split halves are sized for 75 %, then grow by 1–2 pages a rebuild): 9.4
//! to 11.8 bytes a remap. The directory holds one pointer per 4,000–7,000
//! remaps. Replaced segments and directories wait in a [`Retired`] batch for
//! one grace period; the batch is freed when it holds more than 1/32 of the
//! table's bytes (or 64 KiB, or 32 objects), so the peak is at most 1.03 ×
//! the table plus one segment and its halves: below 13 bytes a remap at 1M
//! (the target's pool array adds 4 or 8 bytes a pool block besides). The
//! table's byte count ([`Shape::bytes`]) and the batch's budget count what
//! the kernel takes: a power of two up to 4 KiB, whole pages above.
//!
//! Measured (the `memory_per_remap` test, counting a power of two for
//! `alloc_zeroed` and whole pages for `alloc_pages_zeroed`): 1M scattered
//! remaps 10.4 bytes each, 10.9 at the highest peak from 900k on, about 530
//! grace periods for the million inserts one by one; 1M contiguous ones 10.5
//! and 12.0.
//! Removing 90 % of them leaves 21.0 bytes a remap, with peaks of 32 while
//! fewer than 200k are left (shrinking waits for 25 % load, and segments
//! are not merged).
//!
//! Lookups: a hit costs one directory load, the segment's header and about
//! 2.7 slots at 77 % load; a miss probes to the next empty slot, about 10
//! slots. In the host benchmark at 1M remaps, hits took about 0.75× the
//! chained table's time and misses about 1.8× (the chained table answered a
//! third of its misses from an empty bucket). Since most I/O misses, that is the
//! price of the memory saved; ordered probing (Robin Hood, which moves
//! entries and so needs a retry protocol for readers) would bring misses
//! down to about the cost of hits.
//!
//! # Publishing without allocating
//!
//! A change made durable on disk must reach the table without allocating.
//! The caller reserves before it commits and inserts through the
//! [`Reservation`] after:
//!
//! ```ignore
//! let mut res = t.reserve_keys(w, first..first + n, &mut retired)?; // may allocate
//! if let Err(e) = commit() {
//!     return Err(e); // dropping `res` gives the room back
//! }
//! for b in first..first + n {
//!     res.insert(w, b, spare(b), &mut retired)?; // no allocation, no sleep
//! }
//! ```
//!
//! and on the error path, for one block known only later or that may be
//! remapped already: `let mut res = t.reserve(w, 1, ..)?`, commit, then
//! `t.replace(..)` if the block is in the table (dropping `res`), else
//! `res.insert(..)`.
//!
//! [`RemapTable::reserve_keys`] counts the blocks per segment and rebuilds
//! or splits every segment that could not take its share besides what it
//! holds and the room reserved in it already; then it adds the share to
//! the segment's reserved count. [`RemapTable::reserve`] gives every
//! segment room for `n` (cheap for `n = 1`, costly for large `n`: prefer
//! `reserve_keys`). The contract:
//!
//! - A reservation's inserts ([`Reservation::insert`]) of the blocks it
//!   was made for, up to its count, neither allocate, sleep nor fail for
//!   memory, whatever the writer did in between: other inserts (which
//!   never take reserved room), removes (a shrink keeps the reserved room),
//!   replaces, rebuilds and splits (each half keeps the whole reserved count
//!   of the segment it came from), and other reservations (they add up).
//!   Only [`RemapTable::clear_into`] voids reservations: their inserts then
//!   go the way of [`RemapTable::insert`].
//! - A reservation's insert of a block it was not made for may take room
//!   reserved for another block: the caller must not do that.
//! - Dropping a reservation gives back its unused room: the writer's next
//!   change, once no reservation is left, zeroes every segment's reserved
//!   count (the room a split doubled or that `reserve` gave every segment).
//! - Reserve only blocks whose pool block is in range (the pool block is
//!   checked by the insert, [`TableError::OutOfRange`]): check the pool
//!   block before reserving, or the reserved insert fails after the commit.
//!
//! An insert without a reservation rebuilds as needed and, when memory is
//! short, still fills the segment up to 90 % (then fails with
//! [`TableError::NoMemory`]): beyond, a miss in `map` would probe long runs
//! of the segment. The durable path never relies on this: its room is
//! reserved.
//!
//! A remove or a replace changes a slot in place: readers that started
//! before may still return the old spare block. Both therefore mark the
//! [`Retired`] batch passed to them, whose drop (or flush) then waits for a
//! grace period even when it holds no memory: after that no reader uses the
//! old spare block (the guarantee the chained table's freed node gave).
//!
//! | function | context |
//! |---|---|
//! | `lookup`, `read`, `len`, `is_empty`, `capacity`, `resizes` | any, including `map` |
//! | [`Reservation::insert`] of a reserved block, `replace` | writer; no allocation, no sleep |
//! | `insert`, `remove` otherwise | writer; may allocate, and sleep when the [`Retired`] batch is full |
//! | `reserve`, `reserve_keys` | writer; allocates, may sleep |
//! | `clear_into`, dropping or flushing a [`Retired`] | writer; sleeps (`Env::synchronize`) |

use super::mem::{kmalloc_bytes, page_bytes, Env, RawArray, PAGE_BYTES};
use core::alloc::Layout;
use core::marker::PhantomData;
use core::ptr::{self, NonNull};
use core::slice;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

/// The multipliers of MurmurHash3's 64-bit finaliser.
const MIX1: u64 = 0xff51_afd7_ed55_8ccd;
const MIX2: u64 = 0xc4ce_b9fe_1a85_ec53;
/// An empty slot.
pub const EMPTY: u64 = 0;
/// A removed entry: lookups go on past it, inserts may reuse it.
pub const TOMBSTONE: u64 = u64::MAX;
/// Header words of a segment.
const HEADER: usize = 2;
/// Words of the smallest segment (128 bytes).
pub const MIN_SLOTS: usize = 16;
/// Words of a 4 KiB page.
pub const PAGE_SLOTS: usize = 512;
/// Words of the largest segment a table grows (16 pages); beyond it splits.
pub const MAX_SEGMENT_SLOTS: usize = 16 * PAGE_SLOTS;
/// Words of the largest segment ever (64 pages), grown when a split is not
/// possible (memory short for the halves, or `reserve` of many blocks).
pub const MAX_GROWN_SLOTS: usize = 4 * MAX_SEGMENT_SLOTS;
/// Bits of each of a segment's three counts (live, tombstones, reserved)
/// in its second header word.
const COUNT_BITS: u32 = 21;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
/// Largest capacity of a segment: its counts must fit [`COUNT_BITS`].
const MAX_CAP: usize = COUNT_MASK as usize;
/// Deepest directory (it could never be allocated anyway).
pub const MAX_DEPTH: u32 = 40;
/// A segment is rebuilt before live + tombstones exceed this share (%).
const FILL_PERCENT: u64 = 85;
/// When a rebuild fails for memory, inserts go on up to this share (%).
const FALLBACK_PERCENT: u64 = 90;
/// Rebuilt segments are sized for this load (%): `4/3` slots an entry.
const LOAD_NUM: u64 = 4;
const LOAD_DEN: u64 = 3;
/// After a remove, a segment less full than this (%) is rebuilt smaller.
const SHRINK_PERCENT: u64 = 25;
/// Local depth's position in a segment's first header word.
const LD_SHIFT: u32 = 56;
/// Retired memory held before a grace period frees it: at least this ...
const RETIRE_MIN_BYTES: usize = 64 << 10;
/// ... or this fraction of the table's bytes.
const RETIRE_SHARE: usize = 32;
/// Objects a [`Retired`] batch holds.
const RETIRE_BATCH: usize = 32;
/// Keys a writer's loop handles between two `Env::cond_resched`.
pub const RESCHED_EVERY: u64 = 4096;
/// Bound on the passes of a reservation (each adds at most one level).
const MAX_PASSES: u32 = 2 * MAX_DEPTH + 4;

/// A block's hash: MurmurHash3's finaliser, whose every output bit depends
/// on every input bit. A plain multiplication (Fibonacci hashing) keeps the
/// structure of keys that are themselves multiples of a constant modulo a
/// power of two (what a scattered list made by multiplicative hashing is),
/// and linear probing then meets long clusters: misses probed 62 slots on
/// average at 100,000 such keys, against 12 for random ones.
#[inline]
fn hash(main: u64) -> u64 {
    let mut x = main;
    x ^= x >> 33;
    x = x.wrapping_mul(MIX1);
    x ^= x >> 33;
    x = x.wrapping_mul(MIX2);
    x ^ (x >> 33)
}

/// Live entries plus tombstones a segment of `cap` slots holds before it is
/// rebuilt.
pub fn fill_limit(cap: usize) -> u64 {
    cap as u64 * FILL_PERCENT / 100
}

/// Words (header included) of a segment for `live` entries at 75 % load: a
/// power of two from [`MIN_SLOTS`] to [`PAGE_SLOTS`], then whole pages.
pub fn slots_for(live: u64) -> Option<usize> {
    let cap = usize::try_from(live.checked_mul(LOAD_NUM)?.div_ceil(LOAD_DEN)).ok()?;
    if cap > MAX_CAP {
        return None;
    }
    let n = cap + HEADER;
    Some(if n <= PAGE_SLOTS {
        n.next_power_of_two().max(MIN_SLOTS)
    } else {
        n.div_ceil(PAGE_SLOTS) * PAGE_SLOTS
    })
}

/// Bits of `main + 1` and of a pool index for a main device of `main_blocks`
/// and a pool of `pool_blocks`; `None` when they need more than 64 bits.
pub fn packing(main_blocks: u64, pool_blocks: u64) -> Option<(u32, u32)> {
    let kbits = 64 - main_blocks.checked_add(1)?.leading_zeros();
    let vbits = 64 - pool_blocks.saturating_sub(1).leading_zeros();
    (kbits + vbits <= 64).then_some((kbits, vbits))
}

/// Allocates `bytes` zeroed bytes, 8-byte aligned: from kmalloc up to a
/// page, in whole pages above (see [`mem_bytes`]).
fn mem_alloc<E: Env>(bytes: usize) -> Option<NonNull<u8>> {
    if bytes > PAGE_BYTES {
        E::alloc_pages_zeroed(bytes)
    } else {
        E::alloc_zeroed(Layout::from_size_align(bytes, 8).ok()?)
    }
}

/// # Safety
///
/// `p` came from `mem_alloc::<E>(bytes)` and is not used afterwards.
unsafe fn mem_free<E: Env>(p: NonNull<u8>, bytes: usize) {
    if bytes > PAGE_BYTES {
        // SAFETY: From `alloc_pages_zeroed(bytes)` (caller).
        unsafe { E::free_pages(p, bytes) };
    } else if let Ok(l) = Layout::from_size_align(bytes, 8) {
        // SAFETY: From `alloc_zeroed` with this layout (caller).
        unsafe { E::free(p, l) };
    }
}

/// What a [`mem_alloc`] of `bytes` takes in the kernel: a power of two up
/// to a page, whole pages above.
pub fn mem_bytes(bytes: usize) -> usize {
    if bytes > PAGE_BYTES {
        page_bytes(bytes)
    } else {
        kmalloc_bytes(bytes)
    }
}

/// Bytes of a word (a slot, a directory entry).
const WORD: usize = core::mem::size_of::<u64>();

/// Bytes of a segment of `slots` words.
fn seg_size(slots: usize) -> usize {
    slots.saturating_mul(WORD)
}

/// A new zeroed segment of `slots` words at local depth `ld`.
fn seg_alloc<E: Env>(slots: usize, ld: u32) -> Option<NonNull<AtomicU64>> {
    if slots <= HEADER {
        return None;
    }
    let p = mem_alloc::<E>(seg_size(slots))?.cast::<AtomicU64>();
    // SAFETY: Fresh zeroed memory of `slots` words (zero is a valid
    // `AtomicU64`), ours alone.
    let meta = unsafe { p.as_ref() };
    meta.store(
        (u64::from(ld) << LD_SHIFT) | (slots - HEADER) as u64,
        Ordering::Relaxed,
    );
    Some(p)
}

/// # Safety
///
/// `p` came from `seg_alloc::<E>` and no reader can reach it any more.
unsafe fn seg_free<E: Env>(p: NonNull<AtomicU64>) {
    // SAFETY: Valid until freed here (caller).
    let s = unsafe { Seg::from_ptr(p) };
    // SAFETY: Allocated by `seg_alloc` with this size (the header gives it
    // back); freed once (caller).
    unsafe { mem_free::<E>(p.cast(), seg_size(s.words.len())) };
}

/// A segment, borrowed.
///
/// # Invariants
///
/// `words` is the whole segment (`HEADER + cap` words), valid for `'a`: the
/// segment is private to the writer, or reachable from a published directory
/// inside a read-side section, or reachable by the writer holding its token.
#[derive(Clone, Copy)]
struct Seg<'a> {
    ptr: NonNull<AtomicU64>,
    words: &'a [AtomicU64],
    ld: u32,
}

/// Where a probe for a key ended.
enum Probe {
    /// The key is in this slot, with this entry.
    Found(usize, u64),
    /// The key is absent; the first empty or tombstone slot of its probe
    /// sequence, if any.
    Vacant(Option<usize>),
}

impl<'a> Seg<'a> {
    /// # Safety
    ///
    /// `p` came from `seg_alloc` and stays valid for `'a`.
    #[inline]
    unsafe fn from_ptr(p: NonNull<AtomicU64>) -> Self {
        // SAFETY: The segment is valid (caller); its first header word is
        // written before it is published or used and never changes.
        let meta = unsafe { p.as_ref() }.load(Ordering::Relaxed);
        let cap = (meta & ((1 << LD_SHIFT) - 1)) as usize;
        // SAFETY: `seg_alloc` allocated `HEADER + cap` words.
        let words = unsafe { slice::from_raw_parts(p.as_ptr().cast_const(), HEADER + cap) };
        Self {
            ptr: p,
            words,
            ld: (meta >> LD_SHIFT) as u32,
        }
    }

    #[inline]
    fn slots(&self) -> &'a [AtomicU64] {
        self.words.get(HEADER..).unwrap_or(&[])
    }

    #[inline]
    fn cap(&self) -> usize {
        self.words.len() - HEADER
    }

    /// Home slot of hash `h`: fast range of the bits below the top `ld`.
    #[inline]
    fn home(&self, h: u64) -> usize {
        let x = h.checked_shl(self.ld).unwrap_or(0);
        ((u128::from(x) * self.cap() as u128) >> 64) as usize
    }

    /// The entry of `key` (`main + 1`), for readers.
    #[inline]
    fn find(&self, h: u64, key: u64, vbits: u32) -> Option<u64> {
        let slots = self.slots();
        let mut i = self.home(h);
        for _ in 0..slots.len() {
            let e = slots.get(i)?.load(Ordering::Acquire);
            if e == EMPTY {
                return None;
            }
            if e != TOMBSTONE && e >> vbits == key {
                return Some(e);
            }
            i += 1;
            if i == slots.len() {
                i = 0;
            }
        }
        None
    }

    /// Where `key` is, or where it would go.
    fn probe(&self, h: u64, key: u64, vbits: u32) -> Probe {
        let slots = self.slots();
        let mut i = self.home(h);
        let mut free = None;
        for _ in 0..slots.len() {
            let Some(s) = slots.get(i) else { break };
            let e = s.load(Ordering::Relaxed);
            if e == EMPTY {
                return Probe::Vacant(free.or(Some(i)));
            }
            if e == TOMBSTONE {
                free = free.or(Some(i));
            } else if e >> vbits == key {
                return Probe::Found(i, e);
            }
            i += 1;
            if i == slots.len() {
                i = 0;
            }
        }
        Probe::Vacant(free)
    }

    /// Puts `e` (hash `h`) into the first empty slot; for a segment not yet
    /// published. False when it is full.
    fn place(&self, h: u64, e: u64) -> bool {
        let slots = self.slots();
        let mut i = self.home(h);
        for _ in 0..slots.len() {
            let Some(s) = slots.get(i) else { break };
            if s.load(Ordering::Relaxed) == EMPTY {
                s.store(e, Ordering::Relaxed);
                return true;
            }
            i += 1;
            if i == slots.len() {
                i = 0;
            }
        }
        false
    }

    /// Live entries and tombstones (the writer's bookkeeping).
    fn counts(&self) -> (u64, u64) {
        let c = self.count_word();
        (c >> (2 * COUNT_BITS), (c >> COUNT_BITS) & COUNT_MASK)
    }

    /// Inserts promised room by outstanding reservations.
    fn reserved(&self) -> u64 {
        self.count_word() & COUNT_MASK
    }

    /// Live entries, tombstones and reserved room: what the fill checks
    /// count against the segment's slots.
    fn used(&self) -> u64 {
        let (live, tomb) = self.counts();
        live + tomb + self.reserved()
    }

    fn count_word(&self) -> u64 {
        self.words.get(1).map_or(0, |w| w.load(Ordering::Relaxed))
    }

    /// Sets the live and tombstone counts, keeping the reserved one.
    fn set_counts(&self, live: u64, tombstones: u64) {
        self.set_all(live, tombstones, self.reserved());
    }

    fn set_reserved(&self, reserved: u64) {
        let (live, tomb) = self.counts();
        self.set_all(live, tomb, reserved);
    }

    fn set_all(&self, live: u64, tombstones: u64, reserved: u64) {
        if let Some(w) = self.words.get(1) {
            w.store(
                ((live & COUNT_MASK) << (2 * COUNT_BITS))
                    | ((tombstones & COUNT_MASK) << COUNT_BITS)
                    | (reserved & COUNT_MASK),
                Ordering::Relaxed,
            );
        }
    }

    /// What the segment takes in the kernel.
    fn bytes(&self) -> usize {
        mem_bytes(seg_size(self.words.len()))
    }
}

/// Byte offset of the segment pointers behind a directory's depth word.
const DIR_HEAD: usize = core::mem::size_of::<u64>();
const _: () =
    assert!(core::mem::align_of::<AtomicPtr<AtomicU64>>() <= core::mem::align_of::<u64>());

/// Bytes of a directory of depth `depth`.
fn dir_size(depth: u32) -> Option<usize> {
    let n = 1usize.checked_shl(depth)?;
    let (l, off) = Layout::new::<u64>()
        .extend(Layout::array::<AtomicPtr<AtomicU64>>(n).ok()?)
        .ok()?;
    (off == DIR_HEAD).then(|| l.pad_to_align().size())
}

/// A new directory of depth `depth`, all pointers null.
fn dir_alloc<E: Env>(depth: u32) -> Option<NonNull<u64>> {
    if depth > MAX_DEPTH {
        return None;
    }
    let p = mem_alloc::<E>(dir_size(depth)?)?.cast::<u64>();
    // SAFETY: Fresh memory, ours alone, starting with the depth word.
    unsafe { p.as_ptr().write(u64::from(depth)) };
    Some(p)
}

/// A directory, borrowed.
///
/// # Invariants
///
/// `slots` are the directory's `2^depth` pointers, valid for `'a`, and so
/// are the segments they point to (same rules as for [`Seg`]). Every pointer
/// is non-null once the directory is published; a segment of local depth
/// `ld` fills the `2^(depth - ld)` entries of an aligned range.
#[derive(Clone, Copy)]
struct Dir<'a> {
    ptr: NonNull<u64>,
    depth: u32,
    slots: &'a [AtomicPtr<AtomicU64>],
}

impl<'a> Dir<'a> {
    /// # Safety
    ///
    /// `p` came from `dir_alloc` and it and its segments stay valid for `'a`.
    #[inline]
    unsafe fn from_ptr(p: NonNull<u64>) -> Self {
        // SAFETY: Valid (caller); the depth word never changes after
        // `dir_alloc` wrote it, before publishing.
        let depth = unsafe { p.as_ptr().read() } as u32;
        let n = 1usize.checked_shl(depth).unwrap_or(0);
        // SAFETY: `dir_alloc` allocated `n` pointers at `DIR_HEAD`.
        let slots = unsafe {
            slice::from_raw_parts(
                p.as_ptr()
                    .cast::<u8>()
                    .add(DIR_HEAD)
                    .cast::<AtomicPtr<AtomicU64>>()
                    .cast_const(),
                n,
            )
        };
        Self {
            ptr: p,
            depth,
            slots,
        }
    }

    /// Directory index of hash `h`: its top `depth` bits.
    #[inline]
    fn index(&self, h: u64) -> usize {
        h.checked_shr(64 - self.depth).unwrap_or(0) as usize
    }

    #[inline]
    fn seg(&self, i: usize) -> Option<Seg<'a>> {
        let p = NonNull::new(self.slots.get(i)?.load(Ordering::Acquire))?;
        // SAFETY: Segments of the directory live as long as it (type
        // invariant).
        Some(unsafe { Seg::from_ptr(p) })
    }

    /// Directory entries served by a segment of local depth `ld`.
    fn span(&self, ld: u32) -> usize {
        1usize
            .checked_shl(self.depth.saturating_sub(ld))
            .unwrap_or(1)
    }

    /// Every segment once, with the first directory index it serves.
    fn segments(self) -> impl Iterator<Item = (usize, Seg<'a>)> {
        let mut next = 0;
        core::iter::from_fn(move || {
            while next < self.slots.len() {
                let i = next;
                next += 1;
                if let Some(s) = self.seg(i) {
                    next = i + self.span(s.ld);
                    return Some((i, s));
                }
            }
            None
        })
    }

    /// What the directory takes in the kernel.
    fn bytes(&self) -> usize {
        dir_size(self.depth).map_or(0, mem_bytes)
    }
}

/// Frees a directory and its segments.
///
/// # Safety
///
/// `p` came from `dir_alloc::<E>`, and neither it nor its segments are
/// reachable by readers or used afterwards.
unsafe fn free_tree<E: Env>(p: NonNull<u64>) {
    // SAFETY: Valid until freed here (caller).
    let d = unsafe { Dir::from_ptr(p) };
    // `segments` reads a segment's header before it yields the segment,
    // never after.
    for (_, s) in d.segments() {
        // SAFETY: Unreachable (caller); `segments` yields each once.
        unsafe { seg_free::<E>(s.ptr) };
    }
    if let Some(size) = dir_size(d.depth) {
        // SAFETY: Allocated by `dir_alloc` with this size; freed once.
        unsafe { mem_free::<E>(p.cast(), size) };
    }
}

/// Why a table update failed. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableError {
    /// The block is already in the table.
    Exists,
    /// Memory ran short.
    NoMemory,
    /// The writer token belongs to another table.
    WrongWriter,
    /// The block is not in the table.
    Missing,
    /// The main block or the pool block is beyond the table's devices.
    OutOfRange,
    /// Main block and pool index together need more than 64 bits.
    TooWide,
}

impl core::fmt::Display for TableError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Exists => "block already remapped",
            Self::NoMemory => "out of memory",
            Self::WrongWriter => "not the table's writer",
            Self::Missing => "block not remapped",
            Self::OutOfRange => "block beyond the device",
            Self::TooWide => "main device too large for its block size",
        })
    }
}

/// Proof of being the table's one writer. Not `Clone`.
pub struct Writer {
    id: usize,
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

/// What a pass of a reservation does.
#[derive(Clone, Copy)]
enum Pass {
    /// Rebuilds the segments short of room (splitting them if allowed).
    MakeRoom { may_split: bool },
    /// Counts the shares into the segments' reserved room.
    Record,
}

/// What a rebuild did.
enum Rebuilt {
    /// One new segment replaced the old one.
    Resized,
    /// Two new segments replaced it.
    Split,
}

/// The table's shape, for tests and benchmarks.
#[cfg(not(MODULE))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    /// Global depth of the directory.
    pub depth: u32,
    /// Segments.
    pub segments: u64,
    /// Usable slots of all segments.
    pub slots: u64,
    /// Live entries.
    pub live: u64,
    /// Tombstones.
    pub tombstones: u64,
    /// Room held for reserved inserts (a segment split while holding a
    /// reservation keeps it in both halves, so this may exceed the inserts
    /// still to come).
    pub reserved: u64,
    /// Bytes asked of the allocator (directory and segments).
    pub bytes: u64,
}

/// The remap table. See the module documentation.
pub struct RemapTable<E: Env> {
    /// The published directory; never null.
    dir: AtomicPtr<u64>,
    main_blocks: u64,
    pool_blocks: u64,
    vbits: u32,
    count: AtomicU64,
    slots: AtomicU64,
    bytes: AtomicU64,
    resizes: AtomicU64,
    /// Inserts still promised by live [`Reservation`]s.
    outstanding: AtomicU64,
    /// Some segment may hold a reserved count (the writer's).
    marked: AtomicBool,
    id: usize,
    _p: PhantomData<E>,
}

// SAFETY: Readers only follow published pointers under the read-side
// protection of `E`; writers are serialised by the `Writer` token.
unsafe impl<E: Env> Sync for RemapTable<E> {}
// SAFETY: The table owns its directory and segments.
unsafe impl<E: Env> Send for RemapTable<E> {}

/// Lookups in one version of the directory, inside a read-side section.
///
/// # Invariants
///
/// Exists only inside [`RemapTable::read`], so `dir` and its segments stay
/// valid for the reader's lifetime.
pub struct Reader<'a, E: Env> {
    dir: Dir<'a>,
    main_blocks: u64,
    vbits: u32,
    _p: PhantomData<E>,
}

impl<E: Env> Reader<'_, E> {
    /// The spare pool block `block` is remapped to, if any.
    #[inline]
    pub fn lookup(&self, block: u64) -> Option<u64> {
        if block >= self.main_blocks {
            return None;
        }
        let h = hash(block);
        let e = self
            .dir
            .seg(self.dir.index(h))?
            .find(h, block + 1, self.vbits)?;
        Some(e & ((1u64 << self.vbits) - 1))
    }
}

impl<E: Env> RemapTable<E> {
    /// An empty table for a main device of `main_blocks` blocks and a pool
    /// of `pool_blocks`, and its writer token.
    pub fn new(main_blocks: u64, pool_blocks: u64) -> Result<(Self, Writer), TableError> {
        let (_, vbits) = packing(main_blocks, pool_blocks).ok_or(TableError::TooWide)?;
        let empty = Empty::<E>::new().ok_or(TableError::NoMemory)?;
        let dir = empty.0;
        core::mem::forget(empty);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        Ok((
            Self {
                dir: AtomicPtr::new(dir.as_ptr()),
                main_blocks,
                pool_blocks,
                vbits,
                count: AtomicU64::new(0),
                slots: AtomicU64::new((MIN_SLOTS - HEADER) as u64),
                bytes: AtomicU64::new(Empty::<E>::bytes() as u64),
                resizes: AtomicU64::new(0),
                outstanding: AtomicU64::new(0),
                marked: AtomicBool::new(false),
                id,
                _p: PhantomData,
            },
            Writer { id },
        ))
    }

    /// The spare pool block `block` is remapped to, if any.
    #[inline]
    pub fn lookup(&self, block: u64) -> Option<u64> {
        self.read(|r| r.lookup(block))
    }

    /// Runs `f` inside one read-side section with one version of the
    /// directory: for several lookups (a bio spanning blocks) at the cost of
    /// one.
    #[inline]
    pub fn read<R>(&self, f: impl FnOnce(&Reader<'_, E>) -> R) -> R {
        E::read_lock();
        let p = self.dir.load(Ordering::Acquire);
        // SAFETY: The directory pointer is never null. A published directory
        // and its segments stay valid until a grace period after they are
        // replaced, and we are in a read-side section that lasts as long as
        // the `Reader` (it cannot escape `f`).
        let dir = unsafe { Dir::from_ptr(NonNull::new_unchecked(p)) };
        // INVARIANT: Inside the read-side section until `f` returns.
        let r = Reader {
            dir,
            main_blocks: self.main_blocks,
            vbits: self.vbits,
            _p: PhantomData,
        };
        let out = f(&r);
        E::read_unlock();
        out
    }

    /// Number of entries.
    #[inline]
    pub fn len(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// Whether the table is empty (the I/O path skips lookups then).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Usable slots of all segments.
    pub fn capacity(&self) -> u64 {
        self.slots.load(Ordering::Relaxed)
    }

    /// Segment rebuilds (grown, shrunk, cleaned or split) since the table
    /// was created.
    #[cfg(not(MODULE))]
    pub fn resizes(&self) -> u64 {
        self.resizes.load(Ordering::Relaxed)
    }

    /// The table's shape (walks the directory).
    #[cfg(not(MODULE))]
    pub fn shape(&self, w: &Writer) -> Shape {
        let mut s = Shape::default();
        if self.check(w).is_err() {
            return s;
        }
        let d = self.dir_w(w);
        s.depth = d.depth;
        s.bytes = d.bytes() as u64;
        for (_, seg) in d.segments() {
            let (live, tomb) = seg.counts();
            s.segments += 1;
            s.slots += seg.cap() as u64;
            s.live += live;
            s.tombstones += tomb;
            s.reserved += seg.reserved();
            s.bytes += seg.bytes() as u64;
        }
        s
    }

    fn check(&self, w: &Writer) -> Result<(), TableError> {
        if w.id == self.id {
            Ok(())
        } else {
            Err(TableError::WrongWriter)
        }
    }

    /// The current directory, for the writer.
    fn dir_w(&self, _w: &Writer) -> Dir<'_> {
        // SAFETY: Never null. The writer is the only one who replaces or
        // frees directories and segments, so the current ones stay valid
        // while it holds the token and does not retire them.
        unsafe { Dir::from_ptr(NonNull::new_unchecked(self.dir.load(Ordering::Acquire))) }
    }

    fn retire_budget(&self) -> usize {
        let bytes = usize::try_from(self.bytes.load(Ordering::Relaxed)).unwrap_or(usize::MAX);
        (bytes / RETIRE_SHARE).max(RETIRE_MIN_BYTES)
    }

    /// Counts `add` bytes and slots in, `sub` out.
    fn account(&self, add: (usize, usize), sub: (usize, usize)) {
        let b = self.bytes.load(Ordering::Relaxed);
        self.bytes.store(
            b.wrapping_add(add.0 as u64).wrapping_sub(sub.0 as u64),
            Ordering::Relaxed,
        );
        let s = self.slots.load(Ordering::Relaxed);
        self.slots.store(
            s.wrapping_add(add.1 as u64).wrapping_sub(sub.1 as u64),
            Ordering::Relaxed,
        );
    }

    fn pack(&self, main: u64, spare: u64) -> Result<(u64, u64), TableError> {
        if main >= self.main_blocks || spare >= self.pool_blocks {
            return Err(TableError::OutOfRange);
        }
        let key = main + 1;
        Ok((key, (key << self.vbits) | spare))
    }

    fn spare_of(&self, e: u64) -> u64 {
        e & ((1u64 << self.vbits) - 1)
    }

    /// Adds `main → spare`, outside any reservation: it may rebuild the
    /// block's segment, retiring the old one to `retired`, and never takes
    /// room reserved for others. To insert a reserved block without
    /// allocating, use [`Reservation::insert`].
    pub fn insert(
        &self,
        w: &mut Writer,
        main: u64,
        spare: u64,
        retired: &mut Retired<E>,
    ) -> Result<(), TableError> {
        self.check(w)?;
        self.settle(w);
        let (key, e) = self.pack(main, spare)?;
        let h = hash(main);
        // A rebuild makes room; the second round finds it.
        for _ in 0..3 {
            let d = self.dir_w(w);
            let i = d.index(h);
            let s = d.seg(i).ok_or(TableError::NoMemory)?;
            let slot = match s.probe(h, key, self.vbits) {
                Probe::Found(..) => return Err(TableError::Exists),
                Probe::Vacant(slot) => slot,
            };
            let used = s.used();
            let slot = slot.and_then(|i| Some((i, s.slots().get(i)?)));
            if let Some((_, x)) = slot {
                let reuse = x.load(Ordering::Relaxed) == TOMBSTONE;
                if reuse || used < fill_limit(s.cap()) {
                    self.put(&s, x, e, reuse);
                    return Ok(());
                }
            }
            if let Err(err) = self.rebuild(w, i, 1, true, retired) {
                // Short of memory: fill the segment a little further, not so
                // far that a miss probes most of it.
                match slot {
                    Some((_, x)) if used < s.cap() as u64 * FALLBACK_PERCENT / 100 => {
                        self.put(&s, x, e, false);
                        return Ok(());
                    }
                    _ => return Err(err),
                }
            }
        }
        Err(TableError::NoMemory)
    }

    /// Inserts a block a reservation covers: into reserved room when its
    /// segment holds some (no allocation), else as [`Self::insert`]. True
    /// when reserved room was used.
    fn insert_reserved(
        &self,
        w: &mut Writer,
        main: u64,
        spare: u64,
        retired: &mut Retired<E>,
    ) -> Result<bool, TableError> {
        self.check(w)?;
        let (key, e) = self.pack(main, spare)?;
        let h = hash(main);
        let d = self.dir_w(w);
        let s = d.seg(d.index(h)).ok_or(TableError::NoMemory)?;
        let slot = match s.probe(h, key, self.vbits) {
            Probe::Found(..) => return Err(TableError::Exists),
            Probe::Vacant(slot) => slot,
        };
        let reserved = s.reserved();
        match slot.and_then(|i| s.slots().get(i)) {
            Some(x) if reserved > 0 => {
                let reuse = x.load(Ordering::Relaxed) == TOMBSTONE;
                self.put(&s, x, e, reuse);
                s.set_reserved(reserved - 1);
                Ok(true)
            }
            // Not a reserved block (or the table was cleared since).
            _ => self.insert(w, main, spare, retired).map(|()| false),
        }
    }

    /// Once no reservation is outstanding, drops the reserved counts that
    /// segments still hold (a split copies a segment's count into both
    /// halves, and `reserve` gives every segment room for all `n`).
    fn settle(&self, w: &Writer) {
        if !self.marked.load(Ordering::Relaxed) || self.outstanding.load(Ordering::Acquire) > 0 {
            return;
        }
        for (_, s) in self.dir_w(w).segments() {
            s.set_reserved(0);
        }
        self.marked.store(false, Ordering::Relaxed);
    }

    /// Publishes entry `e` in slot `x` of `s` (which held a tombstone if
    /// `reuse`).
    fn put(&self, s: &Seg<'_>, x: &AtomicU64, e: u64, reuse: bool) {
        let (live, tomb) = s.counts();
        // Publish: readers see the slot's old value or the whole entry.
        x.store(e, Ordering::Release);
        s.set_counts(live + 1, if reuse { tomb - 1 } else { tomb });
        self.count
            .store(self.count.load(Ordering::Relaxed) + 1, Ordering::Release);
    }

    /// Removes `main`; returns its spare block. Marks `retired` so that its
    /// drop waits for the readers that may still see the entry, and may
    /// shrink the segment (retiring the old one there).
    pub fn remove(&self, w: &mut Writer, main: u64, retired: &mut Retired<E>) -> Option<u64> {
        self.check(w).ok()?;
        self.settle(w);
        if main >= self.main_blocks {
            return None;
        }
        let h = hash(main);
        let d = self.dir_w(w);
        let i = d.index(h);
        let s = d.seg(i)?;
        let Probe::Found(at, e) = s.probe(h, main + 1, self.vbits) else {
            return None;
        };
        let slots = s.slots();
        let cap = slots.len();
        let (live, mut tomb) = s.counts();
        let next = if at + 1 == cap { 0 } else { at + 1 };
        if slots.get(next).map(|x| x.load(Ordering::Relaxed)) == Some(EMPTY) {
            // The run ends after `at`: no probe sequence goes through it (or
            // through the tombstones just before it) to a later entry.
            if let Some(x) = slots.get(at) {
                x.store(EMPTY, Ordering::Release);
            }
            let mut j = at;
            for _ in 1..cap {
                j = if j == 0 { cap - 1 } else { j - 1 };
                match slots.get(j) {
                    Some(x) if x.load(Ordering::Relaxed) == TOMBSTONE => {
                        x.store(EMPTY, Ordering::Release);
                        tomb -= 1;
                    }
                    _ => break,
                }
            }
        } else {
            if let Some(x) = slots.get(at) {
                x.store(TOMBSTONE, Ordering::Release);
            }
            tomb += 1;
        }
        s.set_counts(live - 1, tomb);
        self.count
            .store(self.count.load(Ordering::Relaxed) - 1, Ordering::Release);
        retired.grace = true;
        // Reserved room counts as entries: a shrink keeps it.
        let keep = live - 1 + s.reserved();
        if keep * 100 < cap as u64 * SHRINK_PERCENT && s.words.len() > MIN_SLOTS {
            if let Some(n) = slots_for(keep).filter(|&n| n < s.words.len()) {
                // Failing only keeps the larger segment.
                let _ = self.resize_segment(w, i, n, retired);
            }
        }
        Some(self.spare_of(e))
    }

    /// Points `main` at `spare` instead of its current spare block, in one
    /// store: readers see the old entry or the new one. Returns the old
    /// spare block. Never allocates. Marks `retired` so that its drop waits
    /// for the readers that may still use the old block.
    pub fn replace(
        &self,
        w: &mut Writer,
        main: u64,
        spare: u64,
        retired: &mut Retired<E>,
    ) -> Result<u64, TableError> {
        self.check(w)?;
        let (key, e) = self.pack(main, spare)?;
        let h = hash(main);
        let d = self.dir_w(w);
        let s = d.seg(d.index(h)).ok_or(TableError::Missing)?;
        match s.probe(h, key, self.vbits) {
            Probe::Found(at, old) => {
                if let Some(x) = s.slots().get(at) {
                    x.store(e, Ordering::Release);
                }
                retired.grace = true;
                Ok(self.spare_of(old))
            }
            Probe::Vacant(_) => Err(TableError::Missing),
        }
    }

    /// Calls `f(main, spare)` for every entry, in no particular order.
    pub fn for_each(&self, w: &Writer, mut f: impl FnMut(u64, u64)) {
        if self.check(w).is_err() {
            return;
        }
        for (_, s) in self.dir_w(w).segments() {
            for x in s.slots() {
                let e = x.load(Ordering::Relaxed);
                if e != EMPTY && e != TOMBSTONE {
                    f((e >> self.vbits) - 1, self.spare_of(e));
                }
            }
        }
    }

    /// Reserves room for inserting each of `keys` (main blocks not in the
    /// table) without allocating, whatever other changes come before those
    /// inserts: see the module documentation. `keys` is walked once a pass
    /// (more passes when segments split) and once more to count the room.
    /// Retires replaced memory to `retired`. On error nothing is reserved.
    ///
    /// The pool blocks are not known here: the caller checks them against
    /// the pool before reserving, since a reserved insert still fails with
    /// [`TableError::OutOfRange`] for a pool block beyond the table's pool.
    pub fn reserve_keys<I>(
        &self,
        w: &mut Writer,
        keys: I,
        retired: &mut Retired<E>,
    ) -> Result<Reservation<'_, E>, TableError>
    where
        I: Iterator<Item = u64> + Clone,
    {
        self.check(w)?;
        self.settle(w);
        for _ in 0..MAX_PASSES {
            let d = self.dir_w(w);
            let mut counts = RawArray::<u64, E>::new(d.slots.len()).ok_or(TableError::NoMemory)?;
            let mut n = 0u64;
            for main in keys.clone() {
                if main >= self.main_blocks {
                    return Err(TableError::OutOfRange);
                }
                if let Some(c) = counts.get_mut(d.index(hash(main))) {
                    *c += 1;
                }
                n += 1;
                if n % RESCHED_EVERY == 0 {
                    E::cond_resched();
                }
            }
            let c = Some((&counts[..], d.depth));
            if !self.reserve_pass(w, c, 0, Pass::MakeRoom { may_split: true }, retired)? {
                // No split: `counts` still matches the directory's segments.
                self.reserve_pass(w, c, 0, Pass::Record, retired)?;
                return Ok(self.reservation(n));
            }
        }
        Err(TableError::NoMemory)
    }

    /// Reserves room for `n` inserts of blocks not known yet, wherever they
    /// land: every segment gets room for `n` more. Meant for small `n`; for
    /// known blocks [`Self::reserve_keys`] costs far less. Fails with
    /// [`TableError::NoMemory`] when `n` blocks do not fit one segment of
    /// [`MAX_GROWN_SLOTS`] (about 20,000). As for [`Self::reserve_keys`],
    /// the caller checks the pool block before reserving.
    pub fn reserve(
        &self,
        w: &mut Writer,
        n: u64,
        retired: &mut Retired<E>,
    ) -> Result<Reservation<'_, E>, TableError> {
        self.check(w)?;
        self.settle(w);
        if n == 0 {
            return Ok(self.reservation(0));
        }
        // Splitting helps only when `n` fits a half segment comfortably.
        let may_split = slots_for(n).is_some_and(|s| s <= MAX_SEGMENT_SLOTS / 2);
        for _ in 0..MAX_PASSES {
            if !self.reserve_pass(w, None, n, Pass::MakeRoom { may_split }, retired)? {
                self.reserve_pass(w, None, n, Pass::Record, retired)?;
                return Ok(self.reservation(n));
            }
        }
        Err(TableError::NoMemory)
    }

    fn reservation(&self, n: u64) -> Reservation<'_, E> {
        self.outstanding.fetch_add(n, Ordering::AcqRel);
        Reservation { table: self, n }
    }

    /// One pass over the segments, for each segment's share: `counts` per
    /// directory index of a directory of depth `depth0` (that of the
    /// pass's start), or `n` for every segment. [`Pass::MakeRoom`] rebuilds
    /// the segments without room for their share (besides their reserved
    /// room) and returns true when a segment split: its halves' shares are
    /// known only after a recount. [`Pass::Record`], after a pass that
    /// split nothing, adds each share to its segment's reserved count.
    fn reserve_pass(
        &self,
        w: &Writer,
        counts: Option<(&[u64], u32)>,
        n: u64,
        pass: Pass,
        retired: &mut Retired<E>,
    ) -> Result<bool, TableError> {
        let depth0 = match counts {
            Some((_, d)) => d,
            None => self.dir_w(w).depth,
        };
        let total = 1usize << depth0;
        let mut again = false;
        let mut i0 = 0;
        while i0 < total {
            let d = self.dir_w(w);
            // Splits in this pass may have doubled the directory.
            let j = i0 << d.depth.saturating_sub(depth0);
            let s = d.seg(j).ok_or(TableError::NoMemory)?;
            let span0 = 1usize << depth0.saturating_sub(s.ld);
            let need = match counts {
                Some((c, _)) => c.get(i0..i0 + span0).map_or(0, |c| c.iter().sum()),
                None => n,
            };
            i0 += span0;
            match pass {
                Pass::Record => {
                    if need > 0 {
                        s.set_reserved(s.reserved() + need);
                        self.marked.store(true, Ordering::Relaxed);
                    }
                }
                Pass::MakeRoom { may_split } => {
                    if need == 0 || s.used() + need <= fill_limit(s.cap()) {
                        continue;
                    }
                    if let Rebuilt::Split = self.rebuild(w, j, need, may_split, retired)? {
                        again = true;
                    }
                    // A bulk reservation may rebuild hundreds of segments.
                    E::cond_resched();
                }
            }
        }
        Ok(again)
    }

    /// Rebuilds the segment at directory index `i` for its live entries,
    /// reserved room and `extra` more: grown (or shrunk, or cleaned of
    /// tombstones) when that fits [`MAX_SEGMENT_SLOTS`] at 75 % load, split
    /// otherwise (when `may_split`; if the split fails it grows, up to
    /// [`MAX_GROWN_SLOTS`]).
    fn rebuild(
        &self,
        w: &Writer,
        i: usize,
        extra: u64,
        may_split: bool,
        retired: &mut Retired<E>,
    ) -> Result<Rebuilt, TableError> {
        let d = self.dir_w(w);
        let (depth, s) = (d.depth, d.seg(i).ok_or(TableError::NoMemory)?);
        let (live, _) = s.counts();
        let want = live.saturating_add(s.reserved()).saturating_add(extra);
        let n = slots_for(want).ok_or(TableError::NoMemory)?;
        if n > MAX_SEGMENT_SLOTS && may_split && self.split(w, i, retired).is_ok() {
            return Ok(Rebuilt::Split);
        }
        if n > MAX_GROWN_SLOTS {
            return Err(TableError::NoMemory);
        }
        // A split that failed may have doubled the directory.
        let i = i << self.dir_w(w).depth.saturating_sub(depth);
        self.resize_segment(w, i, n, retired)?;
        Ok(Rebuilt::Resized)
    }

    /// Copies the live entries of `src` whose hash passes `keep` into the
    /// unpublished `dst`; their count, or `None` if `dst` is too small.
    fn copy(&self, src: &Seg<'_>, dst: &Seg<'_>, keep: impl Fn(u64) -> bool) -> Option<u64> {
        let mut n = 0;
        for x in src.slots() {
            let e = x.load(Ordering::Relaxed);
            if e == EMPTY || e == TOMBSTONE {
                continue;
            }
            let h = hash((e >> self.vbits) - 1);
            if keep(h) {
                if !dst.place(h, e) {
                    return None;
                }
                n += 1;
            }
        }
        Some(n)
    }

    /// Stores `parts` (one segment, or two halves) into the directory
    /// entries served by the old segment of local depth `ld` at index `i`.
    fn publish(&self, d: &Dir<'_>, i: usize, ld: u32, parts: &[NonNull<AtomicU64>]) {
        let span = d.span(ld);
        let start = i & !(span - 1);
        let each = (span / parts.len().max(1)).max(1);
        for (k, p) in parts.iter().enumerate() {
            for j in start + k * each..start + (k + 1) * each {
                if let Some(x) = d.slots.get(j) {
                    // Publish: the segment is complete before readers can
                    // reach it.
                    x.store(p.as_ptr(), Ordering::Release);
                }
            }
        }
    }

    /// Retires the replaced segment `s` and counts the change.
    fn retire_seg(&self, s: &Seg<'_>, new: &[Seg<'_>], retired: &mut Retired<E>) {
        let add = new
            .iter()
            .fold((0, 0), |(b, c), n| (b + n.bytes(), c + n.cap()));
        self.account(add, (s.bytes(), s.cap()));
        self.resizes
            .store(self.resizes.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        retired.push(s.ptr.cast(), seg_size(s.words.len()), self.retire_budget());
    }

    /// Replaces the segment at directory index `i` with one of `n` words
    /// holding its live entries.
    fn resize_segment(
        &self,
        w: &Writer,
        i: usize,
        n: usize,
        retired: &mut Retired<E>,
    ) -> Result<(), TableError> {
        let d = self.dir_w(w);
        let s = d.seg(i).ok_or(TableError::NoMemory)?;
        let p = seg_alloc::<E>(n, s.ld).ok_or(TableError::NoMemory)?;
        // SAFETY: Fresh, ours until published or freed below.
        let new = unsafe { Seg::from_ptr(p) };
        let Some(live) = self.copy(&s, &new, |_| true) else {
            // SAFETY: Never published.
            unsafe { seg_free::<E>(p) };
            return Err(TableError::NoMemory);
        };
        new.set_all(live, 0, s.reserved());
        self.publish(&d, i, s.ld, &[p]);
        self.retire_seg(&s, &[new], retired);
        Ok(())
    }

    /// Splits the segment at directory index `i` in two by the next hash
    /// bit, doubling the directory first if the segment serves one entry.
    fn split(&self, w: &Writer, i: usize, retired: &mut Retired<E>) -> Result<(), TableError> {
        let mut d = self.dir_w(w);
        let s = d.seg(i).ok_or(TableError::NoMemory)?;
        let mut i = i;
        if s.ld >= MAX_DEPTH {
            return Err(TableError::NoMemory);
        }
        if s.ld >= d.depth {
            self.double(w, retired)?;
            d = self.dir_w(w);
            i <<= 1;
        }
        let bit = 63 - s.ld;
        let high = |h: u64| (h >> bit) & 1 == 1;
        let (live, _) = s.counts();
        let mut ones = 0;
        for x in s.slots() {
            let e = x.load(Ordering::Relaxed);
            if e != EMPTY && e != TOMBSTONE && high(hash((e >> self.vbits) - 1)) {
                ones += 1;
            }
        }
        // Which half the reserved blocks fall in is not known: each half
        // keeps room for all of them until the reservations are done.
        let r = s.reserved();
        let n0 = slots_for(live.saturating_sub(ones) + r).ok_or(TableError::NoMemory)?;
        let n1 = slots_for(ones + r).ok_or(TableError::NoMemory)?;
        let a = seg_alloc::<E>(n0, s.ld + 1).ok_or(TableError::NoMemory)?;
        let Some(b) = seg_alloc::<E>(n1, s.ld + 1) else {
            // SAFETY: Never published.
            unsafe { seg_free::<E>(a) };
            return Err(TableError::NoMemory);
        };
        // SAFETY: Fresh, ours until published or freed below.
        let (sa, sb) = unsafe { (Seg::from_ptr(a), Seg::from_ptr(b)) };
        let ca = self.copy(&s, &sa, |h| !high(h));
        let cb = self.copy(&s, &sb, high);
        let (Some(ca), Some(cb)) = (ca, cb) else {
            // SAFETY: Never published.
            unsafe {
                seg_free::<E>(a);
                seg_free::<E>(b);
            }
            return Err(TableError::NoMemory);
        };
        sa.set_all(ca, 0, r);
        sb.set_all(cb, 0, r);
        self.publish(&d, i, s.ld, &[a, b]);
        self.retire_seg(&s, &[sa, sb], retired);
        Ok(())
    }

    /// Publishes a directory twice the size, each pointer copied to two
    /// entries; retires the old one.
    fn double(&self, w: &Writer, retired: &mut Retired<E>) -> Result<(), TableError> {
        let d = self.dir_w(w);
        let p = dir_alloc::<E>(d.depth + 1).ok_or(TableError::NoMemory)?;
        // SAFETY: Fresh, ours until published below.
        let nd = unsafe { Dir::from_ptr(p) };
        for (j, x) in nd.slots.iter().enumerate() {
            let old = d
                .slots
                .get(j >> 1)
                .map_or(ptr::null_mut(), |o| o.load(Ordering::Relaxed));
            x.store(old, Ordering::Relaxed);
        }
        // Publish: the pointers are in place before readers can reach them.
        self.dir.store(p.as_ptr(), Ordering::Release);
        self.account((nd.bytes(), 0), (d.bytes(), 0));
        if let Some(size) = dir_size(d.depth) {
            retired.push(d.ptr.cast(), size, self.retire_budget());
        }
        Ok(())
    }

    /// Removes every entry, leaving one segment of [`MIN_SLOTS`]. Sleeps
    /// for a grace period. Returns how many entries were removed.
    pub fn clear(&self, w: &mut Writer) -> Result<u64, TableError> {
        let empty = Empty::new().ok_or(TableError::NoMemory)?;
        self.clear_into(w, empty)
    }

    /// [`Self::clear`] with the empty table allocated beforehand, so that
    /// it cannot fail for memory after a commit has made the clear durable.
    pub fn clear_into(&self, w: &mut Writer, empty: Empty<E>) -> Result<u64, TableError> {
        self.check(w)?;
        let new = empty.0;
        core::mem::forget(empty);
        let old = self.dir.swap(new.as_ptr(), Ordering::AcqRel);
        let n = self.count.swap(0, Ordering::AcqRel);
        self.slots
            .store((MIN_SLOTS - HEADER) as u64, Ordering::Relaxed);
        self.bytes
            .store(Empty::<E>::bytes() as u64, Ordering::Relaxed);
        E::synchronize();
        if let Some(old) = NonNull::new(old) {
            // SAFETY: Unpublished and a grace period has passed; only the
            // writer, which is here, used it.
            unsafe { free_tree::<E>(old) };
        }
        Ok(n)
    }
}

impl<E: Env> Drop for RemapTable<E> {
    fn drop(&mut self) {
        // `&mut self`: no reader can hold a reference any more.
        if let Some(d) = NonNull::new(*self.dir.get_mut()) {
            // SAFETY: The directory and its segments are ours alone now.
            unsafe { free_tree::<E>(d) };
        }
    }
}

/// Room reserved in a table for inserts that must not allocate: from
/// [`RemapTable::reserve_keys`] or [`RemapTable::reserve`]. Dropping it
/// gives back the room its inserts did not use. See the module
/// documentation for the contract.
#[must_use = "dropping a reservation gives its room back"]
pub struct Reservation<'t, E: Env> {
    table: &'t RemapTable<E>,
    /// Reserved inserts not made yet.
    n: u64,
}

impl<E: Env> Reservation<'_, E> {
    /// Reserved inserts not made yet.
    #[cfg(not(MODULE))]
    pub fn remaining(&self) -> u64 {
        self.n
    }

    /// Adds `main → spare` in reserved room: neither allocates nor sleeps
    /// when `main` is one of the blocks reserved (any block for
    /// [`RemapTable::reserve`]) and inserts remain. Otherwise it works as
    /// [`RemapTable::insert`] and may allocate or fail for memory.
    pub fn insert(
        &mut self,
        w: &mut Writer,
        main: u64,
        spare: u64,
        retired: &mut Retired<E>,
    ) -> Result<(), TableError> {
        if self.n == 0 {
            return self.table.insert(w, main, spare, retired);
        }
        if self.table.insert_reserved(w, main, spare, retired)? {
            self.n -= 1;
            self.table.outstanding.fetch_sub(1, Ordering::AcqRel);
        }
        Ok(())
    }
}

impl<E: Env> core::fmt::Debug for Reservation<'_, E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Reservation")
            .field("remaining", &self.n)
            .finish()
    }
}

impl<E: Env> Drop for Reservation<'_, E> {
    fn drop(&mut self) {
        // The segments' counts are dropped by the writer's next change
        // once no reservation is outstanding.
        self.table.outstanding.fetch_sub(self.n, Ordering::AcqRel);
    }
}

/// An empty table (a directory of one entry and a segment of
/// [`MIN_SLOTS`]) allocated ahead of [`RemapTable::clear_into`]; freed if
/// unused.
pub struct Empty<E: Env>(NonNull<u64>, PhantomData<E>);

impl<E: Env> Empty<E> {
    /// `None` when memory is short.
    pub fn new() -> Option<Self> {
        let d = dir_alloc::<E>(0)?;
        let empty = Self(d, PhantomData);
        let s = seg_alloc::<E>(MIN_SLOTS, 0)?;
        // SAFETY: Ours alone, not published.
        let dir = unsafe { Dir::from_ptr(d) };
        if let Some(x) = dir.slots.first() {
            x.store(s.as_ptr(), Ordering::Relaxed);
        }
        Some(empty)
    }

    fn bytes() -> usize {
        dir_size(0).map_or(0, mem_bytes) + mem_bytes(seg_size(MIN_SLOTS))
    }
}

impl<E: Env> Drop for Empty<E> {
    fn drop(&mut self) {
        // SAFETY: Never published; ours alone.
        unsafe { free_tree::<E>(self.0) };
    }
}

/// Segments and directories replaced by a writer, freed in batches after a
/// grace period: when the batch is full (32 objects, or more bytes than a
/// 32nd of the table or 64 KiB), on [`Retired::flush`] and on drop. A
/// remove or replace marks the batch so that flushing it waits for a grace
/// period even when it holds no memory.
pub struct Retired<E: Env> {
    /// Objects from `mem_alloc`, ...
    ptrs: [*mut u8; RETIRE_BATCH],
    /// ... and their sizes in words (a batch lives on the kernel stack:
    /// 408 bytes).
    words: [u32; RETIRE_BATCH],
    n: usize,
    bytes: usize,
    grace: bool,
    _p: PhantomData<E>,
}

impl<E: Env> Default for Retired<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: Env> Retired<E> {
    /// An empty batch.
    pub fn new() -> Self {
        Self {
            ptrs: [ptr::null_mut(); RETIRE_BATCH],
            words: [0; RETIRE_BATCH],
            n: 0,
            bytes: 0,
            grace: false,
            _p: PhantomData,
        }
    }

    /// Bytes waiting for a grace period (as the kernel allocated them).
    #[cfg(not(MODULE))]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds an object of `size` bytes from `mem_alloc`, unpublished just
    /// now; flushes first if the batch is full or would exceed `budget`
    /// bytes.
    fn push(&mut self, p: NonNull<u8>, size: usize, budget: usize) {
        let bytes = mem_bytes(size);
        if self.n == RETIRE_BATCH || (self.n > 0 && self.bytes + bytes > budget) {
            self.flush();
        }
        let words = u32::try_from(size / WORD)
            .ok()
            .filter(|&w| w as usize * WORD == size);
        match (self.ptrs.get_mut(self.n), self.words.get_mut(self.n), words) {
            (Some(ps), Some(ws), Some(words)) => {
                *ps = p.as_ptr();
                *ws = words;
                self.n += 1;
                self.bytes += bytes;
            }
            _ => {
                // Only a directory of 32 GiB or more (never allocated in
                // practice): freed at once, after its own grace period.
                E::synchronize();
                // SAFETY: Unpublished before the grace period that just
                // ended; allocated by `mem_alloc::<E>(size)`.
                unsafe { mem_free::<E>(p, size) };
            }
        }
    }

    /// Waits for a grace period and frees the batch.
    pub fn flush(&mut self) {
        if self.n == 0 && !self.grace {
            return;
        }
        E::synchronize();
        for (&p, &words) in self.ptrs.iter().zip(&self.words).take(self.n) {
            if let Some(p) = NonNull::new(p) {
                // SAFETY: Unpublished before the grace period that just
                // ended, allocated by `mem_alloc::<E>` with this size (`push`
                // stored it in words, exactly); freed once.
                unsafe { mem_free::<E>(p, words as usize * WORD) };
            }
        }
        self.n = 0;
        self.bytes = 0;
        self.grace = false;
    }
}

impl<E: Env> Drop for Retired<E> {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logic::TestRng as Rng;
    use crate::HostEnv;
    extern crate std;
    use std::cell::Cell;
    use std::collections::BTreeMap;
    use std::vec::Vec;

    type T = RemapTable<HostEnv>;

    std::thread_local! {
        static LIVE: Cell<usize> = const { Cell::new(0) };
        static PEAK: Cell<usize> = const { Cell::new(0) };
        static ALLOCS: Cell<u64> = const { Cell::new(0) };
        static SYNCS: Cell<u64> = const { Cell::new(0) };
        /// `Counting` refuses allocations of fewer bytes than this.
        static REFUSE_BELOW: Cell<usize> = const { Cell::new(0) };
    }

    /// What `kvzalloc` takes in the kernel, at most: kmalloc rounds up to a
    /// power of two (its 96 and 192-byte classes aside), above 4 KiB to a
    /// power of two of pages.
    fn rounded(size: usize) -> usize {
        size.next_power_of_two().max(8)
    }

    /// What `vzalloc` takes: whole pages.
    fn rounded_pages(size: usize) -> usize {
        size.div_ceil(4096) * 4096
    }

    /// Counts `bytes` in.
    fn counted(bytes: usize) {
        let live = LIVE.with(|c| {
            c.set(c.get() + bytes);
            c.get()
        });
        PEAK.with(|c| c.set(c.get().max(live)));
        ALLOCS.with(|c| c.set(c.get() + 1));
    }

    /// [`HostEnv`] counting this thread's live bytes (rounded as the kernel
    /// would), their peak, allocations and grace periods.
    struct Counting;

    // SAFETY: Forwards to `HostEnv` and only counts.
    unsafe impl Env for Counting {
        fn alloc_zeroed(layout: Layout) -> Option<NonNull<u8>> {
            if layout.size() < REFUSE_BELOW.with(|c| c.get()) {
                return None;
            }
            let p = HostEnv::alloc_zeroed(layout)?;
            counted(rounded(layout.size()));
            Some(p)
        }
        unsafe fn free(ptr: NonNull<u8>, layout: Layout) {
            LIVE.with(|c| c.set(c.get() - rounded(layout.size())));
            // SAFETY: Guaranteed by the caller.
            unsafe { HostEnv::free(ptr, layout) }
        }
        fn alloc_pages_zeroed(size: usize) -> Option<NonNull<u8>> {
            if size < REFUSE_BELOW.with(|c| c.get()) {
                return None;
            }
            let p = HostEnv::alloc_pages_zeroed(size)?;
            counted(rounded_pages(size));
            Some(p)
        }
        unsafe fn free_pages(ptr: NonNull<u8>, size: usize) {
            LIVE.with(|c| c.set(c.get() - rounded_pages(size)));
            // SAFETY: Guaranteed by the caller.
            unsafe { HostEnv::free_pages(ptr, size) }
        }
        fn synchronize() {
            SYNCS.with(|c| c.set(c.get() + 1));
            HostEnv::synchronize();
        }
        fn read_lock() {
            HostEnv::read_lock();
        }
        fn read_unlock() {
            HostEnv::read_unlock();
        }
    }

    fn live() -> usize {
        LIVE.with(|c| c.get())
    }
    fn allocs() -> u64 {
        ALLOCS.with(|c| c.get())
    }
    fn syncs() -> u64 {
        SYNCS.with(|c| c.get())
    }
    /// The peak since the last call; starts the next one at the live bytes.
    fn take_peak() -> usize {
        PEAK.with(|c| c.replace(live()))
    }

    /// Every structural invariant, and the counters.
    fn check_invariants<E: Env>(t: &RemapTable<E>, w: &Writer) {
        let d = t.dir_w(w);
        for j in 0..d.slots.len() {
            assert!(d.seg(j).is_some(), "null directory entry {j}");
        }
        let (mut live_sum, mut cap_sum, mut bytes) = (0, 0, d.bytes());
        for (i, s) in d.segments() {
            assert!(s.ld <= d.depth);
            let span = d.span(s.ld);
            assert_eq!(i % span, 0);
            for x in &d.slots[i..i + span] {
                assert_eq!(x.load(Ordering::Relaxed), s.ptr.as_ptr());
            }
            let (mut live, mut tomb) = (0, 0);
            for (k, x) in s.slots().iter().enumerate() {
                let e = x.load(Ordering::Relaxed);
                if e == TOMBSTONE {
                    tomb += 1;
                } else if e != EMPTY {
                    live += 1;
                    let main = (e >> t.vbits) - 1;
                    let h = hash(main);
                    let shift = d.depth - s.ld;
                    assert_eq!(d.index(h) >> shift, i >> shift, "entry in a wrong segment");
                    assert!(
                        matches!(s.probe(h, main + 1, t.vbits), Probe::Found(at, _) if at == k),
                        "entry unreachable"
                    );
                }
            }
            assert_eq!(s.counts(), (live, tomb));
            assert!(s.used() < s.cap() as u64, "no empty slot left");
            live_sum += live;
            cap_sum += s.cap() as u64;
            bytes += s.bytes();
        }
        assert_eq!(live_sum, t.len());
        assert_eq!(cap_sum, t.capacity());
        assert_eq!(bytes as u64, t.bytes.load(Ordering::Relaxed));
    }

    /// A batch sits on the kernel stack.
    #[test]
    fn retired_is_small() {
        let size = core::mem::size_of::<Retired<HostEnv>>();
        assert!(size <= 512, "{size} bytes");
    }

    #[test]
    fn sizing() {
        assert_eq!(slots_for(0), Some(16));
        assert_eq!(slots_for(10), Some(16));
        assert_eq!(slots_for(11), Some(32));
        assert_eq!(slots_for(382), Some(512));
        assert_eq!(slots_for(383), Some(1024));
        assert_eq!(slots_for(6142), Some(8192));
        assert_eq!(slots_for(6143), Some(8704));
        for live in 0..20_000u64 {
            let n = slots_for(live).unwrap();
            let cap = n - HEADER;
            assert!(live * 4 <= cap as u64 * 3, "{live}: over 75 %");
            // Room for one more insert below the 85 % mark.
            assert!(live < fill_limit(cap), "{live}: no room");
            assert!(n.is_power_of_two() || n % PAGE_SLOTS == 0);
        }
    }

    #[test]
    fn packing_limits() {
        assert_eq!(packing(1 << 32, 1 << 21), Some((33, 21)));
        assert_eq!(packing(1, 1), Some((2, 0)));
        // The widest main device with a one-block pool: 64 key bits.
        let (t, mut w) = T::new(u64::MAX - 1, 1).unwrap();
        let mut r = Retired::new();
        t.insert(&mut w, u64::MAX - 2, 0, &mut r).unwrap();
        assert_eq!(t.lookup(u64::MAX - 2), Some(0));
        assert_eq!(
            t.insert(&mut w, u64::MAX - 1, 0, &mut r),
            Err(TableError::OutOfRange)
        );
        assert_eq!(t.insert(&mut w, 1, 1, &mut r), Err(TableError::OutOfRange));
        assert_eq!(t.lookup(u64::MAX), None);
        assert_eq!(T::new(u64::MAX, 1).err(), Some(TableError::TooWide));
        // 40 + 24 bits.
        let (t, mut w) = T::new((1 << 40) - 2, 1 << 24).unwrap();
        t.insert(&mut w, (1 << 40) - 3, (1 << 24) - 1, &mut r)
            .unwrap();
        assert_eq!(t.lookup((1 << 40) - 3), Some((1 << 24) - 1));
        assert_eq!(
            T::new((1 << 40) - 1, 1 << 24).err(),
            Some(TableError::TooWide)
        );
        assert_eq!(
            T::new(1 << 40, (1 << 24) + 1).err(),
            Some(TableError::TooWide)
        );
        // No live entry is a tombstone or empty, at every split of the bits.
        for kbits in 2..=64u32 {
            let main_blocks = u64::MAX.checked_shr(64 - kbits).unwrap_or(0) - 1;
            let vbits = 64 - kbits;
            let pool = 1u64.checked_shl(vbits).unwrap_or(0).max(1);
            assert_eq!(packing(main_blocks, pool), Some((kbits, vbits)));
            assert!(packing(main_blocks + 1, pool).is_none());
            let (t, _) = T::new(main_blocks, pool).unwrap();
            for (m, s) in [(main_blocks - 1, pool - 1), (0, 0), (main_blocks - 1, 0)] {
                let (_, e) = t.pack(m, s).unwrap();
                assert_ne!(e, TOMBSTONE);
                assert_ne!(e, EMPTY);
                assert_eq!(((e >> t.vbits) - 1, t.spare_of(e)), (m, s));
            }
        }
    }

    #[test]
    fn insert_lookup_remove_replace() {
        let (t, mut w) = T::new(1 << 20, 1 << 10).unwrap();
        let mut r = Retired::new();
        assert!(t.is_empty());
        t.insert(&mut w, 10, 100, &mut r).unwrap();
        assert_eq!(t.insert(&mut w, 10, 7, &mut r), Err(TableError::Exists));
        assert_eq!(t.lookup(10), Some(100));
        assert_eq!(t.lookup(11), None);
        assert_eq!(t.replace(&mut w, 10, 5, &mut r), Ok(100));
        assert_eq!(t.lookup(10), Some(5));
        assert_eq!(t.replace(&mut w, 11, 5, &mut r), Err(TableError::Missing));
        assert_eq!(t.remove(&mut w, 10, &mut r), Some(5));
        assert_eq!(t.remove(&mut w, 10, &mut r), None);
        assert!(t.is_empty());
        let (_u, mut wu) = T::new(1 << 20, 1 << 10).unwrap();
        assert_eq!(
            t.insert(&mut wu, 1, 1, &mut r),
            Err(TableError::WrongWriter)
        );
        assert_eq!(t.remove(&mut wu, 1, &mut r), None);
        // A remove or replace makes the batch wait for readers.
        let before = syncs();
        let mut r = Retired::<Counting>::new();
        r.grace = true;
        drop(r);
        assert_eq!(syncs(), before + 1);
    }

    /// The table against a BTreeMap under random operations that cross
    /// rebuilds, splits, directory doublings and shrinks.
    #[test]
    fn model_check() {
        let (t, mut w) = RemapTable::<Counting>::new(1 << 20, 1 << 20).unwrap();
        let mut model = BTreeMap::new();
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut r = Retired::new();
        let (mut max_depth, mut max_cap, mut min_cap_after_shrink) = (0, 0, u64::MAX);
        const PHASE: u64 = 100_000;
        const KEYS: u64 = 40_000;
        for round in 0..4 * PHASE {
            let growing = (round / PHASE) % 2 == 0;
            let key = rng.below(KEYS) * 13;
            let op = rng.below(20);
            let (insert_ops, remove_ops) = if growing { (10, 13) } else { (1, 18) };
            if op < insert_ops {
                let keys = [key, key + 1, key + 2];
                // Sometimes through a reservation of a few blocks.
                let reserved = growing && op == 0;
                let mut res = reserved.then(|| {
                    t.reserve_keys(&mut w, keys.iter().copied(), &mut r)
                        .unwrap()
                });
                let a = allocs();
                for &k in &keys[..if reserved { 3 } else { 1 }] {
                    let res = match res.as_mut() {
                        Some(res) => res.insert(&mut w, k, k % 997, &mut r),
                        None => t.insert(&mut w, k, k % 997, &mut r),
                    };
                    match model.entry(k) {
                        std::collections::btree_map::Entry::Occupied(_) => {
                            assert_eq!(res, Err(TableError::Exists));
                        }
                        std::collections::btree_map::Entry::Vacant(e) => {
                            res.unwrap();
                            e.insert(k % 997);
                        }
                    }
                }
                assert!(!reserved || a == allocs());
            } else if op < remove_ops {
                // Shrinking, mostly entries that exist.
                let key = match model.range(key..).next() {
                    Some((&k, _)) if !growing && op % 4 != 0 => k,
                    _ => key,
                };
                assert_eq!(t.remove(&mut w, key, &mut r), model.remove(&key));
            } else if op < 15 {
                let res = t.replace(&mut w, key, round % 4096, &mut r);
                match model.get_mut(&key) {
                    Some(v) => assert_eq!(res, Ok(core::mem::replace(v, round % 4096))),
                    None => assert_eq!(res, Err(TableError::Missing)),
                }
            } else {
                assert_eq!(t.lookup(key), model.get(&key).copied());
            }
            assert_eq!(t.len(), model.len() as u64);
            if round % 10_000 == 0 {
                check_invariants(&t, &w);
            }
            let s = t.shape(&w);
            max_depth = max_depth.max(s.depth);
            max_cap = max_cap.max(s.slots);
            if round % PHASE == PHASE - 1 && !growing {
                min_cap_after_shrink = min_cap_after_shrink.min(s.slots);
            }
        }
        check_invariants(&t, &w);
        assert!(max_depth >= 3, "too few splits: depth {max_depth}");
        assert!(
            min_cap_after_shrink * 4 < max_cap,
            "did not shrink: {min_cap_after_shrink} of {max_cap}"
        );
        assert!(t.resizes() >= 50, "too few rebuilds: {}", t.resizes());
        for k in 0..KEYS * 13 + 3 {
            assert_eq!(t.lookup(k), model.get(&k).copied());
        }
        let mut seen = BTreeMap::new();
        t.for_each(&w, |m, s| {
            assert!(seen.insert(m, s).is_none());
        });
        assert_eq!(seen, model);
        drop(r);
        assert_eq!(t.clear(&mut w).unwrap(), model.len() as u64);
        assert!(t.is_empty());
        assert_eq!(t.capacity(), (MIN_SLOTS - HEADER) as u64);
        check_invariants(&t, &w);
        assert_eq!(t.lookup(13), None);
    }

    /// Readers on other threads see every stable entry while a writer
    /// inserts, removes, replaces, rebuilds, splits and doubles.
    #[test]
    fn concurrent_readers() {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        let (t, mut w) = T::new(1 << 32, 1 << 21).unwrap();
        let mut r = Retired::new();
        const STABLE: u64 = 300;
        let stable = |k: u64| 3_000_000_000 + k * 7919;
        for k in 0..STABLE {
            t.insert(&mut w, stable(k), k, &mut r).unwrap();
        }
        drop(r);
        let t = Arc::new(t);
        let stop = Arc::new(AtomicBool::new(false));
        let passes = Arc::new(AtomicU64::new(0));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (t, stop, passes) = (t.clone(), stop.clone(), passes.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        t.read(|r| {
                            for k in 0..STABLE {
                                // Replaced back and forth between two values.
                                let v = r.lookup(stable(k));
                                assert!(v == Some(k) || v == Some(k + STABLE), "{k}: {v:?}");
                                assert_eq!(r.lookup(stable(k) + 1), None);
                            }
                        });
                        passes.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        while passes.load(Ordering::Relaxed) < 2 {
            std::thread::yield_now();
        }
        let before = passes.load(Ordering::Relaxed);
        let mut max_depth = 0;
        for round in 0..6u64 {
            let mut r = Retired::new();
            let n = 8_000 + round * 4_000;
            for k in 0..n {
                t.insert(&mut w, round * 100_000 + k * 3, k, &mut r)
                    .unwrap();
                if k % 97 == 0 {
                    let s = stable(k % STABLE);
                    let v = t.lookup(s).unwrap();
                    let other = if v < STABLE { v + STABLE } else { v - STABLE };
                    assert_eq!(t.replace(&mut w, s, other, &mut r), Ok(v));
                }
            }
            max_depth = max_depth.max(t.shape(&w).depth);
            for k in 0..n {
                assert_eq!(t.remove(&mut w, round * 100_000 + k * 3, &mut r), Some(k));
            }
        }
        while passes.load(Ordering::Relaxed) < before + 2 {
            std::thread::yield_now();
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            r.join().unwrap();
        }
        assert!(max_depth >= 2, "no split: depth {max_depth}");
        check_invariants(&t, &w);
    }

    /// Bytes a remap at the end, the highest peak over `per_remap_from`
    /// entries or more, and the same after removing all but `keep` entries.
    struct Figures {
        steady: f64,
        peak: f64,
        peak_from: u64,
        small_steady: f64,
        small_peak: f64,
        syncs: u64,
        shape: Shape,
    }

    fn measure(name: &str, keys: &mut dyn Iterator<Item = u64>, n: u64, keep: u64) -> Figures {
        let base = live();
        let base_syncs = syncs();
        let (t, mut w) = RemapTable::<Counting>::new(1 << 32, 1 << 21).unwrap();
        let mut r = Retired::new();
        let peak_from = n * 9 / 10;
        let mut peak: f64 = 0.0;
        let mut inserted = Vec::with_capacity(n as usize);
        take_peak();
        for k in keys {
            if t.len() == n {
                break;
            }
            if t.insert(&mut w, k, t.len() % (1 << 21), &mut r).is_ok() {
                inserted.push(k);
            }
            let p = (take_peak() - base) as f64 / t.len() as f64;
            if t.len() >= peak_from {
                peak = peak.max(p);
            }
        }
        drop(r);
        assert_eq!(t.len(), n);
        let steady = (live() - base) as f64 / n as f64;
        let shape = t.shape(&w);
        // The table counts what the kernel takes.
        assert_eq!((live() - base) as u64, shape.bytes);
        let syncs = syncs() - base_syncs;
        // Remove all but `keep`, in a scattered order.
        let mut rng = Rng(0x1234_5678_9abc_def1);
        for i in (1..inserted.len()).rev() {
            inserted.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let mut r = Retired::new();
        let mut small_peak: f64 = 0.0;
        take_peak();
        for &k in &inserted[keep as usize..] {
            assert!(t.remove(&mut w, k, &mut r).is_some());
            let p = (take_peak() - base) as f64 / t.len().max(1) as f64;
            if t.len() <= keep * 2 {
                small_peak = small_peak.max(p);
            }
        }
        drop(r);
        let small_steady = (live() - base) as f64 / keep as f64;
        check_invariants(&t, &w);
        for &k in &inserted[..keep as usize] {
            assert!(t.lookup(k).is_some());
        }
        let f = Figures {
            steady,
            peak,
            peak_from,
            small_steady,
            small_peak,
            syncs,
            shape,
        };
        std::println!(
            "{name}: {n} remaps: {:.2} B/remap steady, {:.2} peak (from {} remaps), \
             {} grace periods, depth {}, {} segments, load {:.1} %; \
             after removing all but {keep}: {:.2} steady, {:.2} peak (from {} remaps)",
            f.steady,
            f.peak,
            f.peak_from,
            f.syncs,
            f.shape.depth,
            f.shape.segments,
            100.0 * f.shape.live as f64 / f.shape.slots as f64,
            f.small_steady,
            f.small_peak,
            keep * 2,
        );
        drop(t);
        assert_eq!(live(), base, "leaked");
        f
    }

    /// Bytes a remap, counting the kernel allocator's rounding, at 1M
    /// scattered and 1M contiguous remaps on a 16 TiB main device of 4 KiB
    /// blocks with a pool of 2^21 blocks: at most 16 in steady state and at
    /// every peak (old and new memory, retired batch included) from 900k
    /// remaps on.
    #[test]
    fn memory_per_remap() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut scattered = core::iter::from_fn(move || Some(rng.below(1 << 32)));
        let f = measure("scattered", &mut scattered, 1_000_000, 100_000);
        assert!(f.steady <= 16.0 && f.peak <= 16.0);
        assert!(f.syncs < 600, "{} grace periods", f.syncs);
        let mut contiguous = 1_000_000_000u64..;
        let f = measure("contiguous", &mut contiguous, 1_000_000, 100_000);
        assert!(f.steady <= 16.0 && f.peak <= 16.0);
        let mut rng = Rng(7);
        let mut small = core::iter::from_fn(move || Some(rng.below(1 << 32)));
        let f = measure("scattered", &mut small, 100_000, 1_000);
        assert!(f.steady <= 16.0 && f.peak <= 16.0);
    }

    /// After `reserve_keys` (or `reserve`), inserting the reserved blocks
    /// neither allocates nor waits for a grace period.
    #[test]
    fn insert_after_reserve_never_allocates() {
        let (t, mut w) = RemapTable::<Counting>::new(1 << 32, 1 << 21).unwrap();
        let mut r = Retired::new();
        let mut rng = Rng(0xdead_beef_cafe_f00d);
        let mut n = 0;
        for batch in 0..300u64 {
            let len = 1 + rng.below(if batch % 10 == 0 { 20_000 } else { 2_000 });
            let start = rng.below(1 << 32);
            // Contiguous runs (as `add` reserves) and scattered blocks.
            let keys: Vec<u64> = if batch % 2 == 0 {
                (start..(start + len).min(1 << 32)).collect()
            } else {
                (0..len).map(|_| rng.below(1 << 32)).collect()
            };
            let mut res = t
                .reserve_keys(&mut w, keys.iter().copied(), &mut r)
                .unwrap();
            let (a, s) = (allocs(), syncs());
            for &k in &keys {
                if res.insert(&mut w, k, n % (1 << 21), &mut r).is_ok() {
                    n += 1;
                }
            }
            assert_eq!((allocs(), syncs()), (a, s), "batch {batch} allocated");
        }
        check_invariants(&t, &w);
        assert!(t.shape(&w).depth >= 5);
        for _ in 0..20_000 {
            let mut res = t.reserve(&mut w, 1, &mut r).unwrap();
            let (a, s) = (allocs(), syncs());
            if res.insert(&mut w, rng.below(1 << 32), 0, &mut r).is_ok() {
                n += 1;
            }
            assert_eq!((allocs(), syncs()), (a, s));
        }
        // Worst case for 50 blocks all in one segment.
        let mut res = t.reserve(&mut w, 50, &mut r).unwrap();
        let (a, s) = (allocs(), syncs());
        let shape = t.shape(&w);
        let mut k = 0u64;
        let mut added = 0;
        while added < 50 {
            // Blocks of the directory's first segment.
            if hash(k) >> (64 - shape.depth) == 0 && res.insert(&mut w, k, 0, &mut r).is_ok() {
                added += 1;
            }
            k += 1;
        }
        assert_eq!((allocs(), syncs()), (a, s));
        assert_eq!(t.len(), n + 50);
        check_invariants(&t, &w);
    }

    /// Reserving a million blocks at once for an empty table.
    #[test]
    fn bulk_reserve() {
        let (t, mut w) = RemapTable::<Counting>::new(1 << 32, 1 << 21).unwrap();
        let mut r = Retired::new();
        let keys = (5_000_000u64..6_000_000).map(|k| k * 3);
        let mut res = t.reserve_keys(&mut w, keys.clone(), &mut r).unwrap();
        let (a, s) = (allocs(), syncs());
        for k in keys {
            res.insert(&mut w, k, k % (1 << 21), &mut r).unwrap();
        }
        assert_eq!(res.remaining(), 0);
        drop(res);
        assert_eq!((allocs(), syncs()), (a, s));
        drop(r);
        check_invariants(&t, &w);
        let shape = t.shape(&w);
        std::println!("bulk: {shape:?}, {:.2} B/remap", live() as f64 / 1e6);
        assert!(shape.live * 100 >= shape.slots * 60);
        assert_eq!(
            t.reserve_keys(&mut w, [1 << 32].into_iter(), &mut Retired::new())
                .err(),
            Some(TableError::OutOfRange)
        );
    }

    /// Short of memory, inserts fill segments up to 90 %, reserving
    /// fails with nothing lost, and the table stays whole.
    #[test]
    fn short_of_memory() {
        let (t, mut w) = T::new(1 << 24, 1 << 20).unwrap();
        let mut r = Retired::new();
        for k in 0..5_000 {
            t.insert(&mut w, k, k, &mut r).unwrap();
        }
        for budget in 0..4 {
            crate::set_alloc_budget(Some(budget));
            let mut k = t.len();
            let failed = loop {
                match t.insert(&mut w, k, k, &mut r) {
                    Ok(()) => k += 1,
                    Err(e) => break e,
                }
            };
            assert_eq!(failed, TableError::NoMemory);
            assert_eq!(
                t.reserve_keys(&mut w, k..k + 100_000, &mut r).err(),
                Some(TableError::NoMemory)
            );
            crate::set_alloc_budget(None);
            check_invariants(&t, &w);
            for k in 0..t.len() {
                assert_eq!(t.lookup(k), Some(k));
            }
        }
        crate::set_alloc_budget(Some(0));
        assert!(Empty::<HostEnv>::new().is_none());
        crate::set_alloc_budget(None);
        let empty = Empty::new().unwrap();
        let n = t.len();
        assert_eq!(t.clear_into(&mut w, empty), Ok(n));
        check_invariants(&t, &w);
    }

    // ---- review tests ----

    /// Keys of directory entry `idx` (depth `depth`) not in `skip`, from `from`.
    fn keys_in(depth: u32, idx: usize, from: u64, n: usize, limit: u64) -> Vec<u64> {
        let mut v = Vec::new();
        let mut k = from;
        while v.len() < n && k < limit {
            let h = hash(k);
            if h.checked_shr(64 - depth).unwrap_or(0) as usize == idx {
                v.push(k);
            }
            k += 1;
        }
        v
    }

    #[test]
    fn review_remove_between_reserve_and_insert() {
        let (t, mut w) = RemapTable::<Counting>::new(1 << 32, 1 << 21).unwrap();
        let mut r = Retired::new();
        // A few entries, then reserve 200 more in the same (only) segment.
        for k in 0..5 {
            t.insert(&mut w, k, k, &mut r).unwrap();
        }
        let keys: Vec<u64> = (1000..1200).collect();
        let mut res = t
            .reserve_keys(&mut w, keys.iter().copied(), &mut r)
            .unwrap();
        std::println!("after reserve: {:?}", t.shape(&w));
        // An unrelated remove (e.g. a remap dropped in the same batch).
        t.remove(&mut w, 3, &mut r);
        std::println!("after remove: {:?}", t.shape(&w));
        let a = allocs();
        for &k in &keys {
            res.insert(&mut w, k, 0, &mut r).unwrap();
        }
        std::println!("allocations by reserved inserts: {}", allocs() - a);
        assert_eq!(allocs(), a, "reserved inserts allocated after a remove");
    }

    #[test]
    fn review_two_reservations_do_not_add_up() {
        let (t, mut w) = RemapTable::<Counting>::new(1 << 32, 1 << 21).unwrap();
        let mut r = Retired::new();
        let a_keys: Vec<u64> = (0..8).collect();
        let b_keys: Vec<u64> = (100..108).collect();
        let mut ra = t
            .reserve_keys(&mut w, a_keys.iter().copied(), &mut r)
            .unwrap();
        let mut rb = t
            .reserve_keys(&mut w, b_keys.iter().copied(), &mut r)
            .unwrap();
        std::println!("after two reservations: {:?}", t.shape(&w));
        let a = allocs();
        for (&ka, &kb) in a_keys.iter().zip(&b_keys) {
            ra.insert(&mut w, ka, 0, &mut r).unwrap();
            rb.insert(&mut w, kb, 0, &mut r).unwrap();
        }
        std::println!("allocations: {}", allocs() - a);
        assert_eq!(allocs(), a, "second reservation did not add to the first");
    }

    /// Reservations add up and hold whatever comes between reserving and
    /// inserting: unreserved inserts, removes (which may shrink a segment),
    /// other reservations made and given back, splits. The reserved inserts
    /// never allocate, and once no reservation is left, no room stays
    /// reserved.
    #[test]
    fn reservations_hold_across_other_changes() {
        use std::collections::BTreeSet;
        let (t, mut w) = RemapTable::<Counting>::new(1 << 32, 1 << 21).unwrap();
        let mut r = Retired::new();
        let mut rng = Rng(0x5eed_1234_8765_4321);
        let mut present = BTreeSet::new();
        let fresh = |rng: &mut Rng, present: &BTreeSet<u64>, skip: &BTreeSet<u64>| loop {
            let k = rng.below(1 << 32);
            if !present.contains(&k) && !skip.contains(&k) {
                return k;
            }
        };
        for round in 0..300u64 {
            let depth = t.shape(&w).depth;
            // Sometimes all in one segment, to make it rebuild or split.
            let keys: BTreeSet<u64> = if round % 3 == 0 {
                let idx = rng.below(1 << depth) as usize;
                let n = 1 + rng.below(400) as usize;
                keys_in(depth, idx, rng.below(1 << 31), n, 1 << 32)
                    .into_iter()
                    .filter(|k| !present.contains(k))
                    .collect()
            } else {
                let n = 1 + rng.below(300);
                (0..n)
                    .map(|_| fresh(&mut rng, &present, &BTreeSet::new()))
                    .collect()
            };
            let mut ra = t
                .reserve_keys(&mut w, keys.iter().copied(), &mut r)
                .unwrap();
            let mut rb = t.reserve(&mut w, 1 + rng.below(3), &mut r).unwrap();
            for _ in 0..rng.below(300) {
                match rng.below(5) {
                    0 | 1 => {
                        let k = fresh(&mut rng, &present, &keys);
                        t.insert(&mut w, k, 1, &mut r).unwrap();
                        present.insert(k);
                    }
                    2 | 3 => {
                        if let Some(&k) = present
                            .iter()
                            .nth(rng.below(present.len() as u64 + 1) as usize)
                        {
                            assert!(t.remove(&mut w, k, &mut r).is_some());
                            present.remove(&k);
                        }
                    }
                    _ => {
                        // Reserved, then given back (a commit that failed).
                        let other: Vec<u64> = (0..rng.below(100))
                            .map(|_| fresh(&mut rng, &present, &keys))
                            .collect();
                        drop(t.reserve_keys(&mut w, other.into_iter(), &mut r).unwrap());
                    }
                }
            }
            // Unreserved changes left the reserved room alone.
            for (_, s) in t.dir_w(&w).segments() {
                let (live, tomb) = s.counts();
                let used = live + tomb + s.reserved();
                assert!(used <= fill_limit(s.cap()), "round {round}");
            }
            // Published after the commit: no allocation, no failure.
            let (a, s) = (allocs(), syncs());
            for &k in &keys {
                ra.insert(&mut w, k, 2, &mut r).unwrap();
                present.insert(k);
            }
            let none = BTreeSet::new();
            while rb.remaining() > 0 {
                let k = fresh(&mut rng, &present, &none);
                rb.insert(&mut w, k, 3, &mut r).unwrap();
                present.insert(k);
            }
            assert_eq!((allocs(), syncs()), (a, s), "round {round} allocated");
            assert_eq!(ra.remaining(), 0);
            drop((ra, rb));
            if round % 50 == 0 {
                check_invariants(&t, &w);
            }
        }
        // The next change drops the room left in segments.
        assert!(t.shape(&w).reserved > 0);
        t.remove(&mut w, 0, &mut r);
        assert_eq!(t.shape(&w).reserved, 0);
        assert_eq!(t.len(), present.len() as u64);
        check_invariants(&t, &w);
        assert!(t.shape(&w).depth >= 3);
        for &k in &present {
            assert!(t.lookup(k).is_some());
        }
    }

    /// Random operations with random allocation failures: the table must
    /// stay consistent and equal to the model.
    #[test]
    fn review_model_with_alloc_failures() {
        let (t, mut w) = T::new(1 << 20, 1 << 20).unwrap();
        let mut model = BTreeMap::new();
        let mut rng = Rng(0x1357_9bdf_2468_ace0);
        let mut r = Retired::new();
        for round in 0..200_000u64 {
            let fail = rng.below(4) == 0;
            if fail {
                crate::set_alloc_budget(Some(rng.below(3) as usize));
            }
            let key = rng.below(30_000) * 7;
            let op = rng.below(10);
            if op < 6 {
                let res = t.insert(&mut w, key, key % 1000, &mut r);
                match res {
                    Ok(()) => assert!(model.insert(key, key % 1000).is_none()),
                    Err(TableError::Exists) => assert!(model.contains_key(&key)),
                    Err(TableError::NoMemory) => assert!(fail && !model.contains_key(&key)),
                    Err(e) => panic!("{e:?}"),
                }
            } else if op < 9 {
                assert_eq!(t.remove(&mut w, key, &mut r), model.remove(&key));
            } else {
                let ks: Vec<u64> = (0..rng.below(50)).map(|i| key + i * 7).collect();
                // Reserved, then given back unused.
                let res = t.reserve_keys(&mut w, ks.iter().copied(), &mut r);
                if !fail {
                    drop(res.unwrap());
                }
            }
            crate::set_alloc_budget(None);
            if round % 5000 == 0 {
                check_invariants(&t, &w);
            }
        }
        crate::set_alloc_budget(None);
        check_invariants(&t, &w);
        for k in 0..30_000 * 7 {
            assert_eq!(t.lookup(k), model.get(&k).copied());
        }
    }

    /// Readers of keys present throughout, in the one segment a writer churns
    /// (tombstones, EMPTY-clearing removes, tombstone reuse, cleaning rebuilds).
    #[test]
    fn review_concurrent_same_segment_churn() {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        let (t, mut w) = T::new(1 << 32, 1 << 21).unwrap();
        let mut r = Retired::new();
        let stable: Vec<u64> = (0..200u64).map(|k| k * 2).collect();
        for &k in &stable {
            t.insert(&mut w, k, k % 1000, &mut r).unwrap();
        }
        drop(r);
        let t = Arc::new(t);
        let stop = Arc::new(AtomicBool::new(false));
        let stable = Arc::new(stable);
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (t, stop, stable) = (t.clone(), stop.clone(), stable.clone());
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        for &k in stable.iter() {
                            assert_eq!(t.lookup(k), Some(k % 1000), "stable {k} missed");
                        }
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let mut rng = Rng(42);
        let mut live = std::collections::BTreeSet::new();
        let start = std::time::Instant::now();
        let mut r = Retired::new();
        while start.elapsed() < std::time::Duration::from_secs(3) {
            let k = rng.below(600) * 2 + 1;
            if live.contains(&k) {
                t.remove(&mut w, k, &mut r);
                live.remove(&k);
            } else if live.len() < 400 {
                t.insert(&mut w, k, 1, &mut r).unwrap();
                live.insert(k);
            }
        }
        drop(r);
        stop.store(true, Ordering::Relaxed);
        for h in readers {
            std::println!("reader passes: {}", h.join().unwrap());
        }
        check_invariants(&t, &w);
    }

    /// Longest and mean miss probe over all segments.
    fn miss_probe_stats<E: Env>(t: &RemapTable<E>, w: &Writer) -> (usize, f64) {
        let d = t.dir_w(w);
        let (mut max, mut sum, mut n) = (0, 0usize, 0usize);
        for (_, s) in d.segments() {
            let slots = s.slots();
            for start in 0..slots.len() {
                let mut len = 0;
                let mut i = start;
                while slots[i].load(Ordering::Relaxed) != EMPTY && len < slots.len() {
                    len += 1;
                    i = (i + 1) % slots.len();
                }
                max = max.max(len + 1);
                sum += len + 1;
                n += 1;
            }
        }
        (max, sum as f64 / n as f64)
    }

    #[test]
    fn review_probe_lengths() {
        // Churn: tombstones are only cleaned when an insert lands in an EMPTY
        // slot at the limit.
        let (t, mut w) = T::new(1 << 32, 1 << 21).unwrap();
        let mut r = Retired::new();
        let mut rng = Rng(9);
        let mut live = Vec::new();
        for _ in 0..5000 {
            let k = rng.below(1 << 32);
            if t.insert(&mut w, k, 0, &mut r).is_ok() {
                live.push(k);
            }
        }
        std::println!(
            "fresh: {:?} miss probe {:?}",
            t.shape(&w),
            miss_probe_stats(&t, &w)
        );
        for _ in 0..200_000 {
            let i = rng.below(live.len() as u64) as usize;
            let k = live.swap_remove(i);
            t.remove(&mut w, k, &mut r);
            let k = rng.below(1 << 32);
            if t.insert(&mut w, k, 0, &mut r).is_ok() {
                live.push(k);
            }
        }
        std::println!(
            "churned: {:?} miss probe {:?}",
            t.shape(&w),
            miss_probe_stats(&t, &w)
        );
        // Short of memory: fill up.
        crate::set_alloc_budget(Some(0));
        loop {
            let k = rng.below(1 << 32);
            if t.insert(&mut w, k, 0, &mut r).is_err() {
                break;
            }
        }
        crate::set_alloc_budget(None);
        let (longest, mean) = miss_probe_stats(&t, &w);
        let shape = t.shape(&w);
        std::println!("full: {shape:?} miss probe {longest}, {mean:.1}");
        assert!(shape.live * 100 <= shape.slots * 90);
        assert!(longest <= 1000, "a miss probes {longest} slots");
        check_invariants(&t, &w);
    }

    /// When segments cannot split (memory short for the halves), they grow,
    /// but no further than [`MAX_GROWN_SLOTS`], then fill to 90 % and
    /// refuse: a miss's probe stays bounded.
    #[test]
    fn growth_without_split_is_capped() {
        let (t, mut w) = RemapTable::<Counting>::new(1 << 32, 1 << 21).unwrap();
        let mut r = Retired::new();
        let mut rng = Rng(0xabcd_ef01_2345_6789);
        while t.shape(&w).slots < (MAX_SEGMENT_SLOTS - HEADER) as u64 {
            let _ = t.insert(&mut w, rng.below(1 << 32), 0, &mut r);
        }
        assert_eq!(t.shape(&w).segments, 1);
        // The directory and split halves are smaller than the segment.
        REFUSE_BELOW.with(|c| c.set(seg_size(MAX_SEGMENT_SLOTS) + 1));
        let mut failed = None;
        for n in 0..60_000 {
            if let Err(e) = t.insert(&mut w, rng.below(1 << 32), 0, &mut r) {
                failed = Some((n, e));
                break;
            }
        }
        REFUSE_BELOW.with(|c| c.set(0));
        let shape = t.shape(&w);
        let (longest, mean) = miss_probe_stats(&t, &w);
        std::println!("{failed:?}: {shape:?}, miss probe {longest}, {mean:.1}");
        assert_eq!(failed.map(|f| f.1), Some(TableError::NoMemory));
        assert_eq!(shape.segments, 1);
        assert!(shape.slots <= (MAX_GROWN_SLOTS - HEADER) as u64);
        assert!(shape.slots > (MAX_SEGMENT_SLOTS - HEADER) as u64);
        assert!(shape.live * 100 <= shape.slots * 90);
        assert!(longest <= 1000, "a miss probes {longest} slots");
        check_invariants(&t, &w);
        drop(r);
        // Memory back: the next insert splits.
        t.insert(&mut w, 1, 0, &mut Retired::new()).unwrap();
        assert!(t.shape(&w).segments > 1);
    }

    #[test]
    fn review_remove_between_reserve_and_insert_oom() {
        let (t, mut w) = T::new(1 << 32, 1 << 21).unwrap();
        let mut r = Retired::new();
        for k in 0..5 {
            t.insert(&mut w, k, k, &mut r).unwrap();
        }
        let keys: Vec<u64> = (1000..1200).collect();
        let mut res = t
            .reserve_keys(&mut w, keys.iter().copied(), &mut r)
            .unwrap();
        // "commit" happens here; then a remove in the same batch, then publish.
        t.remove(&mut w, 3, &mut r);
        crate::set_alloc_budget(Some(0));
        let mut failed = None;
        for (n, &k) in keys.iter().enumerate() {
            if let Err(e) = res.insert(&mut w, k, 0, &mut r) {
                failed = Some((n, e));
                break;
            }
        }
        crate::set_alloc_budget(None);
        std::println!("first failing reserved insert: {failed:?}");
        assert!(failed.is_none());
    }
}

#[cfg(test)]
mod structured_keys {
    use super::*;
    use crate::HostEnv;
    extern crate std;

    /// Slots a lookup of `b` reads: up to its entry or an empty slot.
    fn probes(t: &RemapTable<HostEnv>, w: &Writer, b: u64) -> usize {
        let h = hash(b);
        let d = t.dir_w(w);
        let Some(s) = d.seg(d.index(h)) else {
            return 0;
        };
        let slots = s.slots();
        let mut i = s.home(h);
        for n in 0..slots.len() {
            let e = slots[i].load(Ordering::Relaxed);
            if e == EMPTY || (e != TOMBSTONE && e >> t.vbits == b + 1) {
                return n + 1;
            }
            i = (i + 1) % slots.len();
        }
        slots.len()
    }

    /// Keys made by multiplicative hashing (the benchmark's scattered list,
    /// `i * 2654435761 mod 2^22`) and contiguous runs (a badblocks list)
    /// probe no longer than random keys: the hash leaves no structure for
    /// linear probing to cluster on.
    #[test]
    fn misses_probe_as_for_random_keys() {
        let n = 100_000u64;
        let mut x = 12345u64;
        let mut random = core::iter::from_fn(move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Some(x % (1 << 22))
        });
        let sets: [(&str, &mut dyn Iterator<Item = u64>); 3] = [
            (
                "multiplicative",
                &mut (0..n).map(|i| (i * 2654435761) % (1 << 22)),
            ),
            ("contiguous", &mut (1_000_000..1_000_000 + n)),
            ("random", &mut random),
        ];
        for (name, keys) in sets {
            let (t, mut w) = RemapTable::<HostEnv>::new(1 << 22, 1 << 20).unwrap();
            let mut r = Retired::new();
            for (i, k) in keys.take(n as usize).enumerate() {
                let _ = t.insert(&mut w, k, i as u64, &mut r);
            }
            let (mut sum, mut misses) = (0usize, 0usize);
            for b in (0..(1u64 << 22)).step_by(7) {
                if t.lookup(b).is_none() {
                    sum += probes(&t, &w, b);
                    misses += 1;
                }
            }
            let avg = sum as f64 / misses as f64;
            std::println!("{name}: {} entries, misses read {avg:.1} slots", t.len());
            assert!(avg < 20.0, "{name}: misses read {avg:.1} slots on average");
        }
    }
}
