// SPDX-License-Identifier: GPL-2.0

//! The remap table: an RCU-protected hash of main block → spare pool block.
//!
//! Readers ([`RemapTable::lookup`]) run inside a read-side section only: no
//! lock, no atomic read-modify-write, no allocation. Writers are serialised by
//! the caller; the [`Writer`] token, created with the table and not
//! clonable, proves it. Context rules:
//!
//! | function | context |
//! |---|---|
//! | `lookup`, `read`, `len`, `is_empty`, `buckets`, `resizes` | any, including `map` |
//! | `insert` | writer, may allocate (`Env::alloc_zeroed`) |
//! | `remove` | writer; frees after a grace period (batched in [`Retired`]) |
//! | `resize`, `clear`, dropping a [`Retired`] | writer, sleeps (`Env::synchronize`) |
//!
//! Buckets are singly linked chains. An insert links a new node at the head
//! of its chain with a release store; a remove unlinks the node, whose own
//! `next` stays intact for readers still on it, and frees it only after a
//! grace period. A resize builds a complete new version of the table (new
//! buckets, copies of every node), publishes it with one release store, waits
//! for a grace period and frees the old version: readers see either version,
//! never a half-built one.
//!
//! Sizing: 64 buckets at first; before an insert would take the load factor
//! (entries per bucket) above 3/2 the table grows by 4×, and after removals
//! bring it below 3/32 it shrinks by 4× (never below 64). The gap between the
//! two thresholds keeps a table from resizing back and forth.

use super::mem::{Env, RawArray};
use core::alloc::Layout;
use core::marker::PhantomData;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

/// Buckets of a new or cleared table, and the floor for shrinking.
pub const MIN_BUCKETS: u64 = 64;
/// Factor of every resize.
pub const GROWTH: u64 = 4;

/// The most entries a table of `buckets` holds before it grows (load 3/2).
pub fn grow_limit(buckets: u64) -> u64 {
    buckets.saturating_mul(3) / 2
}

/// Below this many entries a table of `buckets` shrinks (load 3/32).
pub fn shrink_limit(buckets: u64) -> u64 {
    buckets.saturating_mul(3) / 32
}

/// Bucket count for `entries` starting from `buckets`: grown by 4× while the
/// entries exceed the grow limit, shrunk by 4× while they are under the shrink
/// limit (never below [`MIN_BUCKETS`]).
pub fn target_buckets(buckets: u64, entries: u64) -> u64 {
    let mut b = buckets.max(MIN_BUCKETS);
    while entries > grow_limit(b) && b <= u64::MAX / GROWTH / 2 {
        b *= GROWTH;
    }
    while b > MIN_BUCKETS && entries < shrink_limit(b) {
        b = (b / GROWTH).max(MIN_BUCKETS);
    }
    b
}

/// One remap: 24 bytes.
#[repr(C)]
struct Node {
    main: u64,
    spare: u64,
    next: AtomicPtr<Node>,
}

/// A published version of the table.
struct Version<E: Env> {
    buckets: RawArray<AtomicPtr<Node>, E>,
    shift: u32,
}

impl<E: Env> Version<E> {
    /// A version with `n` (a power of two) empty buckets, on the heap.
    fn alloc(n: u64) -> Option<NonNull<Self>> {
        let len = usize::try_from(n).ok()?;
        let buckets = RawArray::new(len)?;
        let shift = 64 - n.trailing_zeros();
        let p = E::alloc_zeroed(Layout::new::<Self>())?.cast::<Self>();
        // SAFETY: `p` is fresh memory with the layout of `Self`.
        unsafe { p.as_ptr().write(Self { buckets, shift }) };
        Some(p)
    }

    #[inline]
    fn bucket(&self, block: u64) -> &AtomicPtr<Node> {
        // Fibonacci hashing: the top bits of the product index the buckets.
        let i = (block.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize;
        &self.buckets[i & (self.buckets.len() - 1)]
    }

    /// Frees the version and every node in it.
    ///
    /// # Safety
    ///
    /// `v` came from [`Version::alloc`], is not published, and no reader can
    /// still see it (a grace period has passed since it was unpublished).
    unsafe fn free(v: NonNull<Self>) {
        // SAFETY: Valid and exclusively ours (caller).
        let version = unsafe { v.as_ref() };
        for head in version.buckets.iter() {
            let mut p = head.load(Ordering::Relaxed);
            while let Some(n) = NonNull::new(p) {
                // SAFETY: Nodes of an unreachable version are ours.
                p = unsafe { n.as_ref() }.next.load(Ordering::Relaxed);
                // SAFETY: Allocated by `new_node`, freed once.
                unsafe { free_node::<E>(n) };
            }
        }
        // SAFETY: Allocated in `alloc` with this layout; dropped once.
        unsafe {
            ptr::drop_in_place(v.as_ptr());
            E::free(v.cast(), Layout::new::<Self>());
        }
    }
}

fn new_node<E: Env>(main: u64, spare: u64, next: *mut Node) -> Option<NonNull<Node>> {
    let p = E::alloc_zeroed(Layout::new::<Node>())?.cast::<Node>();
    // SAFETY: Fresh memory with the layout of `Node`.
    unsafe {
        p.as_ptr().write(Node {
            main,
            spare,
            next: AtomicPtr::new(next),
        })
    };
    Some(p)
}

/// # Safety
///
/// `n` came from `new_node::<E>` and is unreachable for readers.
unsafe fn free_node<E: Env>(n: NonNull<Node>) {
    // SAFETY: Guaranteed by the caller.
    unsafe { E::free(n.cast(), Layout::new::<Node>()) }
}

/// Lookups in one version of the table, inside a read-side section.
///
/// # Invariants
///
/// Exists only inside [`RemapTable::read`], so `version` and the nodes
/// reachable from it stay valid for the reader's lifetime.
pub struct Reader<'a, E: Env> {
    version: Option<&'a Version<E>>,
}

impl<E: Env> Reader<'_, E> {
    /// The spare pool block `block` is remapped to, if any.
    #[inline]
    pub fn lookup(&self, block: u64) -> Option<u64> {
        let mut p = self.version?.bucket(block).load(Ordering::Acquire);
        while let Some(n) = NonNull::new(p) {
            // SAFETY: Nodes reachable from a version are freed only after a
            // grace period that cannot end while this reader exists.
            let n = unsafe { n.as_ref() };
            if n.main == block {
                return Some(n.spare);
            }
            p = n.next.load(Ordering::Acquire);
        }
        None
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
}

/// Proof of being the table's one writer. Not `Clone`.
pub struct Writer {
    id: usize,
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

/// The remap table. See the module documentation.
pub struct RemapTable<E: Env> {
    current: AtomicPtr<Version<E>>,
    count: AtomicU64,
    buckets: AtomicU64,
    resizes: AtomicU64,
    id: usize,
    _p: PhantomData<E>,
}

// SAFETY: Readers only follow published pointers under the read-side
// protection of `E`; writers are serialised by the `Writer` token.
unsafe impl<E: Env> Sync for RemapTable<E> {}
// SAFETY: The table owns its nodes and versions.
unsafe impl<E: Env> Send for RemapTable<E> {}

impl<E: Env> RemapTable<E> {
    /// An empty table of [`MIN_BUCKETS`] buckets and its writer token.
    pub fn new() -> Option<(Self, Writer)> {
        let v = Version::<E>::alloc(MIN_BUCKETS)?;
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        Some((
            Self {
                current: AtomicPtr::new(v.as_ptr()),
                count: AtomicU64::new(0),
                buckets: AtomicU64::new(MIN_BUCKETS),
                resizes: AtomicU64::new(0),
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

    /// Runs `f` inside one read-side section with one version of the table:
    /// for several lookups (a bio spanning blocks) at the cost of one.
    #[inline]
    pub fn read<R>(&self, f: impl FnOnce(&Reader<'_, E>) -> R) -> R {
        E::read_lock();
        // INVARIANT: Inside the read-side section until `f` returns.
        let r = Reader {
            // SAFETY: A published version stays valid until a grace period
            // after it is replaced, and we are in a read-side section that
            // lasts as long as the `Reader` (it cannot escape `f`).
            version: unsafe { self.current.load(Ordering::Acquire).as_ref() },
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

    /// Current bucket count.
    pub fn buckets(&self) -> u64 {
        self.buckets.load(Ordering::Relaxed)
    }

    /// Resizes since the table was created.
    pub fn resizes(&self) -> u64 {
        self.resizes.load(Ordering::Relaxed)
    }

    fn check(&self, w: &Writer) -> Result<(), TableError> {
        if w.id == self.id {
            Ok(())
        } else {
            Err(TableError::WrongWriter)
        }
    }

    fn version(&self, _w: &Writer) -> &Version<E> {
        // SAFETY: The writer is the only one who replaces or frees versions,
        // so the current one stays valid while it holds the token.
        unsafe { &*self.current.load(Ordering::Acquire) }
    }

    /// Adds `main → spare`.
    pub fn insert(&self, w: &mut Writer, main: u64, spare: u64) -> Result<(), TableError> {
        let node = Nodes::new(1)
            .and_then(|mut n| n.pop())
            .ok_or(TableError::NoMemory)?;
        self.insert_node(w, main, spare, node)
    }

    /// [`Self::insert`] into a node allocated beforehand (see [`Nodes`]):
    /// fails only for an existing entry or a foreign writer token.
    pub fn insert_node(
        &self,
        w: &mut Writer,
        main: u64,
        spare: u64,
        node: NodeBox<E>,
    ) -> Result<(), TableError> {
        self.check(w)?;
        if self.lookup(main).is_some() {
            return Err(TableError::Exists);
        }
        let head = self.version(w).bucket(main);
        let node = node.fill(main, spare, head.load(Ordering::Relaxed));
        // Publish: the node (with its `next`) is complete before readers can
        // reach it.
        head.store(node.as_ptr(), Ordering::Release);
        self.count.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Removes `main`; returns its spare block. The node is handed to
    /// `retired`, which frees it after a grace period.
    pub fn remove(&self, w: &mut Writer, main: u64, retired: &mut Retired<E>) -> Option<u64> {
        self.check(w).ok()?;
        let mut link = self.version(w).bucket(main);
        loop {
            let p = NonNull::new(link.load(Ordering::Relaxed))?;
            // SAFETY: Reachable nodes are valid; only the writer frees them.
            let n = unsafe { p.as_ref() };
            if n.main == main {
                // Readers on `n` keep following its intact `next`.
                link.store(n.next.load(Ordering::Relaxed), Ordering::Release);
                self.count.fetch_sub(1, Ordering::Release);
                let spare = n.spare;
                retired.push(p);
                return Some(spare);
            }
            link = &n.next;
        }
    }

    /// Points `main` at `spare` instead of its current spare block, in one
    /// step for readers: they see the old node or its complete replacement,
    /// never neither. Returns the old spare block; the old node goes to
    /// `retired`. (The target allocates the node first, `replace_node`.)
    #[cfg(test)]
    pub fn replace(
        &self,
        w: &mut Writer,
        main: u64,
        spare: u64,
        retired: &mut Retired<E>,
    ) -> Result<u64, TableError> {
        let node = Nodes::new(1)
            .and_then(|mut n| n.pop())
            .ok_or(TableError::NoMemory)?;
        self.replace_node(w, main, spare, node, retired)
    }

    /// [`Self::replace`] with a node allocated beforehand: fails only for a
    /// missing entry or a foreign writer token.
    pub fn replace_node(
        &self,
        w: &mut Writer,
        main: u64,
        spare: u64,
        node: NodeBox<E>,
        retired: &mut Retired<E>,
    ) -> Result<u64, TableError> {
        self.check(w)?;
        let mut link = self.version(w).bucket(main);
        loop {
            let p = NonNull::new(link.load(Ordering::Relaxed)).ok_or(TableError::Missing)?;
            // SAFETY: Reachable nodes are valid; only the writer frees them.
            let n = unsafe { p.as_ref() };
            if n.main == main {
                let node = node.fill(main, spare, n.next.load(Ordering::Relaxed));
                // The new node is complete before readers can reach it;
                // readers already on the old one follow its intact `next`.
                link.store(node.as_ptr(), Ordering::Release);
                let old = n.spare;
                retired.push(p);
                return Ok(old);
            }
            link = &n.next;
        }
    }

    /// Calls `f(main, spare)` for every entry, in no particular order.
    pub fn for_each(&self, w: &Writer, mut f: impl FnMut(u64, u64)) {
        if self.check(w).is_err() {
            return;
        }
        for head in self.version(w).buckets.iter() {
            let mut p = head.load(Ordering::Acquire);
            while let Some(n) = NonNull::new(p) {
                // SAFETY: Reachable nodes are valid while the writer holds
                // the token.
                let n = unsafe { n.as_ref() };
                f(n.main, n.spare);
                p = n.next.load(Ordering::Acquire);
            }
        }
    }

    /// Replaces the table with one of `new_buckets` buckets (a power of two)
    /// holding the same entries. Sleeps for a grace period. On failure the old
    /// table stays in place.
    pub fn resize(&self, w: &mut Writer, new_buckets: u64) -> Result<(), TableError> {
        self.check(w)?;
        if !new_buckets.is_power_of_two() {
            return Err(TableError::NoMemory);
        }
        let new = Version::<E>::alloc(new_buckets).ok_or(TableError::NoMemory)?;
        // SAFETY: `new` is ours alone until published.
        let nv = unsafe { new.as_ref() };
        let mut failed = false;
        self.for_each(w, |main, spare| {
            if failed {
                return;
            }
            let head = nv.bucket(main);
            match new_node::<E>(main, spare, head.load(Ordering::Relaxed)) {
                Some(n) => head.store(n.as_ptr(), Ordering::Relaxed),
                None => failed = true,
            }
        });
        if failed {
            // SAFETY: Never published.
            unsafe { Version::free(new) };
            return Err(TableError::NoMemory);
        }
        let old = self.current.swap(new.as_ptr(), Ordering::AcqRel);
        self.buckets.store(new_buckets, Ordering::Relaxed);
        self.resizes.fetch_add(1, Ordering::Relaxed);
        E::synchronize();
        if let Some(old) = NonNull::new(old) {
            // SAFETY: Unpublished and a grace period has passed.
            unsafe { Version::free(old) };
        }
        Ok(())
    }

    /// Removes every entry, leaving [`MIN_BUCKETS`] buckets. Sleeps for a
    /// grace period. Returns how many entries were removed.
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
        let old = self.current.swap(new.as_ptr(), Ordering::AcqRel);
        let n = self.count.swap(0, Ordering::AcqRel);
        self.buckets.store(MIN_BUCKETS, Ordering::Relaxed);
        E::synchronize();
        if let Some(old) = NonNull::new(old) {
            // SAFETY: Unpublished and a grace period has passed.
            unsafe { Version::free(old) };
        }
        Ok(n)
    }
}

/// Table nodes allocated ahead of a change that must not fail for memory
/// once it is durable ([`RemapTable::insert_node`],
/// [`RemapTable::replace_node`]); those not used are freed on drop.
pub struct Nodes<E: Env> {
    /// Unpublished nodes, linked through `next`.
    head: *mut Node,
    _env: core::marker::PhantomData<E>,
}

impl<E: Env> Nodes<E> {
    /// `n` nodes; `None` (nothing kept) when memory is short.
    pub fn new(n: u64) -> Option<Self> {
        let mut nodes = Self {
            head: core::ptr::null_mut(),
            _env: core::marker::PhantomData,
        };
        for _ in 0..n {
            // On failure `nodes` drops and frees what it holds.
            let p = new_node::<E>(0, 0, nodes.head)?;
            nodes.head = p.as_ptr();
        }
        Some(nodes)
    }

    /// One of the nodes, if any is left.
    pub fn pop(&mut self) -> Option<NodeBox<E>> {
        let p = NonNull::new(self.head)?;
        // SAFETY: Nodes on the list are valid and ours alone.
        self.head = unsafe { p.as_ref() }.next.load(Ordering::Relaxed);
        Some(NodeBox(p, core::marker::PhantomData))
    }
}

impl<E: Env> Drop for Nodes<E> {
    fn drop(&mut self) {
        while let Some(n) = self.pop() {
            drop(n);
        }
    }
}

/// One unpublished node; freed on drop unless published.
pub struct NodeBox<E: Env>(NonNull<Node>, core::marker::PhantomData<E>);

impl<E: Env> NodeBox<E> {
    /// Fills the node in for publishing; the caller publishes it.
    fn fill(self, main: u64, spare: u64, next: *mut Node) -> NonNull<Node> {
        let p = self.0;
        core::mem::forget(self);
        // SAFETY: Ours alone until published.
        unsafe {
            p.as_ptr().write(Node {
                main,
                spare,
                next: AtomicPtr::new(next),
            })
        };
        p
    }
}

impl<E: Env> Drop for NodeBox<E> {
    fn drop(&mut self) {
        // SAFETY: From `new_node::<E>`, never published.
        unsafe { free_node::<E>(self.0) }
    }
}

/// An empty table version allocated ahead of [`RemapTable::clear_into`];
/// freed if unused.
pub struct Empty<E: Env>(NonNull<Version<E>>);

impl<E: Env> Empty<E> {
    /// `None` when memory is short.
    pub fn new() -> Option<Self> {
        Version::<E>::alloc(MIN_BUCKETS).map(Self)
    }
}

impl<E: Env> Drop for Empty<E> {
    fn drop(&mut self) {
        // SAFETY: Never published; ours alone.
        unsafe { Version::free(self.0) };
    }
}

impl<E: Env> Drop for RemapTable<E> {
    fn drop(&mut self) {
        // `&mut self`: no reader can hold a reference any more (device-mapper
        // drops the target only after all I/O to it has finished).
        if let Some(v) = NonNull::new(*self.current.get_mut()) {
            // SAFETY: The version is ours alone now.
            unsafe { Version::free(v) };
        }
    }
}

/// Nodes unlinked by [`RemapTable::remove`], freed in batches after a grace
/// period: when the batch is full and when it is dropped.
pub struct Retired<E: Env> {
    nodes: [*mut Node; RETIRE_BATCH],
    n: usize,
    _p: PhantomData<E>,
}

impl<E: Env> Default for Retired<E> {
    fn default() -> Self {
        Self::new()
    }
}

/// Nodes freed per grace period.
const RETIRE_BATCH: usize = 64;

impl<E: Env> Retired<E> {
    /// An empty batch.
    pub fn new() -> Self {
        Self {
            nodes: [ptr::null_mut(); RETIRE_BATCH],
            n: 0,
            _p: PhantomData,
        }
    }

    fn push(&mut self, node: NonNull<Node>) {
        if self.n == RETIRE_BATCH {
            self.flush();
        }
        self.nodes[self.n] = node.as_ptr();
        self.n += 1;
    }

    /// Waits for a grace period and frees the batch.
    pub fn flush(&mut self) {
        if self.n == 0 {
            return;
        }
        E::synchronize();
        for p in &self.nodes[..self.n] {
            if let Some(p) = NonNull::new(*p) {
                // SAFETY: Unlinked by `remove` before the grace period that
                // just ended; freed once.
                unsafe { free_node::<E>(p) };
            }
        }
        self.n = 0;
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
    use crate::HostEnv;
    extern crate std;
    use std::collections::BTreeMap;

    type T = RemapTable<HostEnv>;

    use crate::logic::TestRng as Rng;

    #[test]
    fn replace_keeps_the_entry_visible() {
        let (t, mut w) = RemapTable::<HostEnv>::new().unwrap();
        for b in 0..200 {
            t.insert(&mut w, b, b + 1000).unwrap();
        }
        let mut retired = Retired::new();
        assert_eq!(t.replace(&mut w, 77, 5, &mut retired), Ok(1077));
        assert_eq!(t.lookup(77), Some(5));
        assert_eq!(t.len(), 200);
        assert_eq!(
            t.replace(&mut w, 999, 5, &mut retired),
            Err(TableError::Missing)
        );
        for b in (0..200).filter(|&b| b != 77) {
            assert_eq!(t.lookup(b), Some(b + 1000));
        }
    }

    #[test]
    fn sizing_policy() {
        assert_eq!(target_buckets(64, 96), 64);
        assert_eq!(target_buckets(64, 97), 256);
        assert_eq!(target_buckets(64, 100), 256);
        assert_eq!(target_buckets(256, 384), 256);
        assert_eq!(target_buckets(256, 390), 1024);
        assert_eq!(target_buckets(64, 100_000), 262_144);
        // Hysteresis: no shrink until the load falls below 3/32.
        assert_eq!(target_buckets(256, 24), 256);
        assert_eq!(target_buckets(256, 23), 64);
        assert_eq!(target_buckets(1024, 0), 64);
        assert_eq!(target_buckets(64, 0), 64);
    }

    #[test]
    fn insert_lookup_remove() {
        let (t, mut w) = T::new().unwrap();
        assert!(t.is_empty());
        t.insert(&mut w, 10, 100).unwrap();
        assert_eq!(t.insert(&mut w, 10, 7), Err(TableError::Exists));
        assert_eq!(t.lookup(10), Some(100));
        assert_eq!(t.lookup(11), None);
        let mut r = Retired::new();
        assert_eq!(t.remove(&mut w, 10, &mut r), Some(100));
        assert_eq!(t.remove(&mut w, 10, &mut r), None);
        assert!(t.is_empty());
    }

    #[test]
    fn wrong_writer_is_refused() {
        let (a, _wa) = T::new().unwrap();
        let (_b, mut wb) = T::new().unwrap();
        assert_eq!(a.insert(&mut wb, 1, 1), Err(TableError::WrongWriter));
    }

    /// The table against a BTreeMap under random operations that cross
    /// several resizes in both directions.
    #[test]
    fn model_check() {
        let (t, mut w) = T::new().unwrap();
        let mut model = BTreeMap::new();
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut retired = Retired::new();
        let mut max_buckets = 0;
        for round in 0..40_000u64 {
            // Phases: grow to ~6000 entries, shrink to ~0, repeat.
            let growing = (round / 10_000) % 2 == 0;
            let key = rng.next() % 2048;
            let op = rng.next() % 10;
            if op < 6 {
                let insert = growing && op < 5;
                if insert {
                    let want = target_buckets(t.buckets(), t.len() + 1);
                    if want != t.buckets() {
                        t.resize(&mut w, want).unwrap();
                    }
                    let r = t.insert(&mut w, key, key * 3);
                    match model.entry(key) {
                        std::collections::btree_map::Entry::Occupied(_) => {
                            assert_eq!(r, Err(TableError::Exists));
                        }
                        std::collections::btree_map::Entry::Vacant(e) => {
                            r.unwrap();
                            e.insert(key * 3);
                        }
                    }
                } else {
                    assert_eq!(t.remove(&mut w, key, &mut retired), model.remove(&key));
                    let want = target_buckets(t.buckets(), t.len());
                    if want < t.buckets() {
                        t.resize(&mut w, want).unwrap();
                    }
                }
            } else {
                assert_eq!(t.lookup(key), model.get(&key).copied());
            }
            assert_eq!(t.len(), model.len() as u64);
            max_buckets = max_buckets.max(t.buckets());
        }
        assert!(max_buckets >= 1024, "did not grow enough: {max_buckets}");
        assert!(t.resizes() >= 6, "too few resizes: {}", t.resizes());
        let mut seen = BTreeMap::new();
        t.for_each(&w, |m, s| {
            seen.insert(m, s);
        });
        assert_eq!(seen, model);
        assert_eq!(t.clear(&mut w).unwrap(), model.len() as u64);
        assert!(t.is_empty());
        assert_eq!(t.buckets(), MIN_BUCKETS);
    }

    /// Readers on other threads see every stable entry while a writer inserts,
    /// removes and resizes.
    #[test]
    fn concurrent_readers() {
        extern crate std;
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        let (t, mut w) = T::new().unwrap();
        // Stable entries: never removed, always visible.
        for k in 0..200 {
            t.insert(&mut w, 1_000_000 + k, k).unwrap();
        }
        let t = Arc::new(t);
        let stop = Arc::new(AtomicBool::new(false));
        let passes = Arc::new(AtomicU64::new(0));
        let readers: std::vec::Vec<_> = (0..2)
            .map(|_| {
                let (t, stop, passes) = (t.clone(), stop.clone(), passes.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        for k in 0..200 {
                            assert_eq!(t.lookup(1_000_000 + k), Some(k));
                        }
                        passes.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        // Start writing only once both readers run, and stop them only after
        // they made progress during the writes.
        while passes.load(Ordering::Relaxed) < 2 {
            std::thread::yield_now();
        }
        let before = passes.load(Ordering::Relaxed);
        let mut retired = Retired::new();
        for round in 0..30u64 {
            for k in 0..500 {
                let want = target_buckets(t.buckets(), t.len() + 1);
                if want != t.buckets() {
                    t.resize(&mut w, want).unwrap();
                }
                t.insert(&mut w, round * 1000 + k, k).unwrap();
            }
            for k in 0..500 {
                assert_eq!(t.remove(&mut w, round * 1000 + k, &mut retired), Some(k));
            }
            let want = target_buckets(t.buckets(), t.len());
            if want < t.buckets() {
                t.resize(&mut w, want).unwrap();
            }
        }
        while passes.load(Ordering::Relaxed) < before + 2 {
            std::thread::yield_now();
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            r.join().unwrap();
        }
    }
}
