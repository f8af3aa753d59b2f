// SPDX-License-Identifier: GPL-2.0

//! What remaps mean: routing of I/O, and the messages that change or show
//! the remap table.
//!
//! [`route`] is the I/O path's question "where does this piece go". [`Remaps`]
//! is the writer side: it owns the table's [`Writer`] token, the spare pool and
//! the metadata state, and is kept behind a mutex by the target. Every message
//! checks all of its input before it changes anything, and undoes its own
//! partial work if memory or the metadata commit fails, so a refused message
//! changes nothing. A change is acknowledged only once it is on the spare in
//! every copy ([`Remaps::commit`]).

use super::format::{
    self, check_copy, decide, encode_entries, encode_header, encode_pending, CopyState, Crc,
    Decision, Defect, Header, Identity, Layout, PENDING_MAX, RETIRED, SECTOR,
};
use super::geometry::Geometry;
use super::layout::METADATA_AREA_SECTORS;
use super::mem::{Env, RawArray};
use super::message::{Message, SpareArg, HELP};
use super::pool::SparePool;
use super::table::{target_buckets, RemapTable, Retired, Writer};
use core::fmt::{self, Write};

/// Where a piece of a bio goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// To the spare (true) or to main.
    pub to_spare: bool,
    /// Sector on that device.
    pub sector: u64,
    /// Sectors from the start of the bio that go there in one piece.
    pub len: u64,
}

/// Routes the first piece of an I/O of `sectors` sectors at target offset
/// `offset`: the longest prefix whose blocks all go to main, or all go to
/// consecutive spare blocks. `lookup` is the table's lookup. The loop runs at
/// most once per block of the I/O.
pub fn route(
    geo: &Geometry,
    lookup: impl Fn(u64) -> Option<u64>,
    offset: u64,
    sectors: u64,
) -> Route {
    let bs = geo.block_sectors;
    let block = offset / bs;
    let in_block = offset % bs;
    let first = lookup(block);
    let mut len = (bs - in_block).min(sectors);
    let mut next = block + 1;
    while len < sectors {
        let contiguous = match (first, lookup(next)) {
            (None, None) => true,
            (Some(s0), Some(s)) => Some(s) == s0.checked_add(next - block),
            _ => false,
        };
        if !contiguous {
            break;
        }
        len = (len + bs).min(sectors);
        next += 1;
    }
    match first {
        None => Route {
            to_spare: false,
            sector: offset,
            len,
        },
        Some(s) => Route {
            to_spare: true,
            sector: geo.spare_data_start + s * bs + in_block,
            len,
        },
    }
}

/// Something the caller should log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A resize starts.
    Resizing {
        /// Buckets before.
        old: u64,
        /// Buckets after.
        new: u64,
        /// Entries the new size is for.
        count: u64,
    },
    /// A resize finished.
    Resized {
        /// Buckets before.
        old: u64,
        /// Buckets after.
        new: u64,
    },
    /// A resize could not get memory; the table keeps its size.
    ResizeFailed {
        /// Buckets kept.
        old: u64,
        /// Buckets wanted.
        new: u64,
    },
    /// Metadata loaded from a copy.
    Loaded {
        /// The copy.
        copy: u32,
        /// Its generation.
        generation: u64,
        /// Remaps in it.
        remaps: u64,
    },
    /// A stale or defective copy was rewritten.
    Repaired {
        /// The copy.
        copy: u32,
        /// What was wrong with it.
        defect: Defect,
    },
    /// A blank (or, as asked, unusable) metadata area was formatted.
    Formatted {
        /// Copies written.
        copies: u32,
    },
}

/// Why a message was refused. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsgError {
    /// Invalid input.
    Invalid(&'static str),
    /// Invalid input at this sector.
    At(&'static str, u64),
    /// The spare pool has too few free blocks.
    PoolFull {
        /// Blocks needed.
        need: u64,
        /// Blocks free.
        free: u64,
    },
    /// Memory ran short.
    NoMemory,
    /// Writing the metadata failed; the change was undone.
    Io,
    /// The table has not loaded its metadata yet (it loads on resume).
    NotLoaded,
    /// The metadata area cannot describe more pool blocks.
    MetadataFull {
        /// Pool blocks the metadata area can describe.
        slots: u64,
    },
    /// The target is in fail mode; nothing is changed until `clear_fail`.
    FailMode,
}

impl fmt::Display for MsgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MsgError::Invalid(s) => f.write_str(s),
            MsgError::At(s, sector) => write!(f, "{s} (sector {sector})"),
            MsgError::PoolFull { need, free } => {
                write!(f, "spare pool full: {need} blocks needed, {free} free")
            }
            MsgError::NoMemory => f.write_str("out of memory"),
            MsgError::Io => f.write_str("metadata write failed; change undone"),
            MsgError::NotLoaded => f.write_str("metadata not loaded yet; resume the device first"),
            MsgError::MetadataFull { slots } => write!(
                f,
                "metadata area full: it describes {slots} spare blocks and all are in use"
            ),
            MsgError::FailMode => f.write_str("fail mode: send clear_fail first"),
        }
    }
}

/// Reads and writes of the spare's metadata area.
pub trait MetaIo {
    /// Reads whole sectors from `sector` of the spare into `buf`.
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), ()>;
    /// Writes whole sectors; `durable`: everything written before is made
    /// durable first (PREFLUSH) and this write too (FUA).
    fn write(&mut self, sector: u64, buf: &[u8], durable: bool) -> Result<(), ()>;
}

/// Why metadata could not be loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// The spare is refused, with this reason.
    Refused(&'static core::ffi::CStr),
    /// Reading or writing the metadata failed.
    Io,
    /// Memory ran short.
    NoMemory,
}

/// What [`Remaps::add_pending`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PendingAdd {
    /// The block is now on the pending list.
    Added,
    /// The block was on the list already; nothing changed.
    Present,
    /// The list holds [`PENDING_MAX`] blocks; nothing changed.
    Full,
    /// The block lies beyond main; nothing changed.
    OutOfRange,
}

/// Persistence state.
struct Meta {
    layout: Layout,
    identity: Identity,
    generation: u64,
    crc: Crc,
    /// A commit failed part-way: the next one rewrites every copy whole.
    full_rewrite: bool,
    loaded: bool,
    /// Main blocks awaiting a remap, ascending: `pending[..pending_len]`.
    pending: [u64; PENDING_MAX],
    pending_len: usize,
}

/// Reads every copy of `layout` and validates it.
fn survey<E: Env>(
    io: &mut dyn MetaIo,
    layout: &Layout,
    pair: &Identity,
    main_blocks: u64,
    crc: Crc,
) -> Result<([CopyState; format::MAX_COPIES as usize], RawArray<u8, E>), LoadError> {
    // Header, entry sectors and pending sector.
    let bytes = (1 + layout.pending_offset() as usize) * SECTOR;
    let mut buf = RawArray::<u8, E>::new(bytes).ok_or(LoadError::NoMemory)?;
    let mut states = [CopyState::Bad(Defect::Blank); format::MAX_COPIES as usize];
    for i in 0..layout.copies {
        let at = layout.copy_start(i);
        states[i as usize] = match io.read(at, &mut buf) {
            Err(()) => CopyState::Bad(Defect::Unreadable),
            Ok(()) => match check_copy(&buf, at, METADATA_AREA_SECTORS, main_blocks, crc) {
                // Another pair's metadata is valid, just not ours: `decide`
                // tells the two apart.
                Ok(h) if h.layout == *layout || !h.identity.same_pair(pair) => CopyState::Valid(h),
                Ok(_) => CopyState::Bad(Defect::BadLayout),
                // Blank means the whole copy, not just its header.
                Err(Defect::Blank) if buf.iter().any(|&b| b != 0) => {
                    CopyState::Bad(Defect::BadMagic)
                }
                Err(d) => CopyState::Bad(d),
            },
        };
    }
    Ok((states, buf))
}

/// The layout of the copies on a spare: the copy count recorded in copy 0
/// when it is valid, else `copies` (from the table line).
fn find_layout(
    io: &mut dyn MetaIo,
    geo: &Geometry,
    copies: u32,
    crc: Crc,
) -> Result<Layout, LoadError> {
    let mut sector = [0u8; SECTOR];
    let copies = match io.read(0, &mut sector) {
        Ok(()) => match format::decode_header(&sector, 0, METADATA_AREA_SECTORS, crc) {
            Ok(h) => h.layout.copies,
            Err(_) => copies,
        },
        Err(()) => copies,
    };
    Layout::new(
        copies,
        METADATA_AREA_SECTORS,
        geo.spare_data_start,
        geo.spare_data_blocks,
    )
    .ok_or(LoadError::Refused(c"Invalid number of metadata copies"))
}

/// Checks, without writing, whether a spare's metadata area (with the copies
/// of `layout`, see [`Remaps::layout`]) can be used by a target of `geo` whose
/// devices form `pair`: what the constructor runs.
pub fn check_spare<E: Env>(
    io: &mut dyn MetaIo,
    layout: &Layout,
    geo: &Geometry,
    pair: &Identity,
    format_requested: bool,
    crc: Crc,
) -> Result<Decision, LoadError> {
    let (states, _) = survey::<E>(io, layout, pair, geo.main_blocks, crc)?;
    match decide(&states[..layout.copies as usize], pair, format_requested) {
        Decision::Refuse(m) => Err(LoadError::Refused(m)),
        d => Ok(d),
    }
}

/// Most extents an `add_remap` reply lists.
const ADD_REPLY_EXTENTS: usize = 8;

/// The writer side of a target's remaps. See the module documentation.
pub struct Remaps<E: Env> {
    writer: Writer,
    pool: SparePool<E>,
    geo: Geometry,
    meta: Meta,
}

impl<E: Env> Remaps<E> {
    /// An empty, not yet loaded table and its writer for a target of this
    /// geometry, whose devices form `pair`, with metadata in `layout`.
    pub fn new(
        geo: Geometry,
        layout: Layout,
        pair: Identity,
        crc: Crc,
    ) -> Option<(RemapTable<E>, Self)> {
        let (table, writer) = RemapTable::new()?;
        let pool = SparePool::new(layout.slots)?;
        let meta = Meta {
            layout,
            identity: pair,
            generation: 0,
            crc,
            full_rewrite: false,
            loaded: false,
            pending: [0; PENDING_MAX],
            pending_len: 0,
        };
        Some((
            table,
            Self {
                writer,
                pool,
                geo,
                meta,
            },
        ))
    }

    /// The metadata layout of the spare behind `io` for a table line asking
    /// for `copies` copies: the count already on the spare wins.
    pub fn layout(
        io: &mut dyn MetaIo,
        geo: &Geometry,
        copies: u32,
        crc: Crc,
    ) -> Result<Layout, LoadError> {
        find_layout(io, geo, copies, crc)
    }

    /// Spare pool blocks in use.
    pub fn spare_used(&self) -> u64 {
        self.pool.used()
    }

    /// Whether the metadata has been loaded.
    pub fn loaded(&self) -> bool {
        self.meta.loaded
    }

    /// The current metadata generation.
    pub fn generation(&self) -> u64 {
        self.meta.generation
    }

    /// Pool blocks the metadata can describe.
    pub fn slots(&self) -> u64 {
        self.meta.layout.slots
    }

    /// Spare pool blocks retired (bad, never used again).
    pub fn retired(&self) -> u64 {
        self.pool.retired()
    }

    /// Retires pool block `slot`: it is never used again. Returns the main
    /// block it held, if any; the caller takes care of that block's remap
    /// (the table still names `slot` for it, the pool and the next commit no
    /// longer do). Changes memory only: commit with [`Remaps::commit`]
    /// (`lo = hi = slot`).
    pub fn retire_slot(&mut self, slot: u64) -> Option<u64> {
        self.pool.retire(slot)
    }

    /// The main blocks awaiting a remap, ascending.
    pub fn pending(&self) -> &[u64] {
        let n = self.meta.pending_len.min(PENDING_MAX);
        &self.meta.pending[..n]
    }

    /// Puts main block `block` on the pending list. Changes memory only:
    /// commit with [`Remaps::commit`] (`lo > hi` writes just the header and
    /// the pending sector).
    pub fn add_pending(&mut self, block: u64) -> PendingAdd {
        if block >= self.geo.main_blocks {
            return PendingAdd::OutOfRange;
        }
        let n = self.meta.pending_len.min(PENDING_MAX);
        let list = &mut self.meta.pending;
        let mut at = 0;
        while at < n && list[at] < block {
            at += 1;
        }
        if at < n && list[at] == block {
            return PendingAdd::Present;
        }
        if n == PENDING_MAX {
            return PendingAdd::Full;
        }
        list.copy_within(at..n, at + 1);
        list[at] = block;
        self.meta.pending_len = n + 1;
        PendingAdd::Added
    }

    /// Takes main block `block` off the pending list; false if it was not
    /// on it. Changes memory only, like [`Remaps::add_pending`].
    pub fn remove_pending(&mut self, block: u64) -> bool {
        let n = self.meta.pending_len.min(PENDING_MAX);
        let list = &mut self.meta.pending;
        let Some(at) = list[..n].iter().position(|&b| b == block) else {
            return false;
        };
        list.copy_within(at + 1..n, at);
        list[n - 1] = 0;
        self.meta.pending_len = n - 1;
        true
    }

    /// Empties the pending list; returns how many blocks it held. Changes
    /// memory only, like [`Remaps::add_pending`].
    pub fn clear_pending(&mut self) -> u64 {
        let n = self.meta.pending_len.min(PENDING_MAX);
        self.meta.pending = [0; PENDING_MAX];
        self.meta.pending_len = 0;
        n as u64
    }

    /// Loads the metadata: the newest valid copy becomes the table, stale and
    /// defective copies are rewritten, a blank area (or, with
    /// `format_requested`, an unusable one) is formatted with `uuid`.
    /// Loading twice does nothing.
    pub fn load(
        &mut self,
        t: &RemapTable<E>,
        io: &mut dyn MetaIo,
        format_requested: bool,
        uuid: [u8; 16],
        ev: &mut dyn FnMut(Event),
    ) -> Result<(), LoadError> {
        if self.meta.loaded {
            return Ok(());
        }
        let crc = self.meta.crc;
        let layout = self.meta.layout;
        let pair = self.meta.identity;
        let (mut states, mut buf) = survey::<E>(io, &layout, &pair, self.geo.main_blocks, crc)?;
        let copies = layout.copies as usize;
        // A copy whose slots name one main block twice is defective too; try
        // the next best then.
        for _ in 0..copies {
            match decide(&states[..copies], &self.meta.identity, format_requested) {
                Decision::Refuse(m) => return Err(LoadError::Refused(m)),
                Decision::Format => {
                    self.meta.identity.uuid = uuid;
                    self.meta.generation = 1;
                    let _ = t.clear(&mut self.writer);
                    self.pool.reset();
                    self.clear_pending();
                    for i in 0..layout.copies {
                        self.write_copy(io, i)?;
                    }
                    ev(Event::Formatted {
                        copies: layout.copies,
                    });
                    self.meta.loaded = true;
                    return Ok(());
                }
                Decision::Load { copy, repair } => {
                    let at = layout.copy_start(copy);
                    io.read(at, &mut buf).map_err(|()| LoadError::Io)?;
                    let h = match states[copy as usize] {
                        CopyState::Valid(h) => h,
                        CopyState::Bad(_) => return Err(LoadError::Io),
                    };
                    match self.fill(t, &buf, &h, ev) {
                        Ok(()) => {}
                        Err(Some(d)) => {
                            states[copy as usize] = CopyState::Bad(d);
                            continue;
                        }
                        Err(None) => return Err(LoadError::NoMemory),
                    }
                    self.meta.identity = h.identity;
                    self.meta.generation = h.generation;
                    ev(Event::Loaded {
                        copy,
                        generation: h.generation,
                        remaps: h.remaps,
                    });
                    for i in 0..layout.copies {
                        if repair & (1 << i) != 0 {
                            self.write_copy(io, i)?;
                            let defect = match states[i as usize] {
                                CopyState::Bad(d) => d,
                                CopyState::Valid(_) => Defect::Torn {
                                    at: layout.copy_start(i),
                                },
                            };
                            ev(Event::Repaired { copy: i, defect });
                        }
                    }
                    self.meta.loaded = true;
                    return Ok(());
                }
            }
        }
        Err(LoadError::Refused(c"No usable metadata copy"))
    }

    /// Builds the table and pool from a validated copy image. `Err(Some)`: the
    /// copy is defective; `Err(None)`: out of memory.
    fn fill(
        &mut self,
        t: &RemapTable<E>,
        buf: &[u8],
        h: &Header,
        ev: &mut dyn FnMut(Event),
    ) -> Result<(), Option<Defect>> {
        let _ = t.clear(&mut self.writer);
        self.pool.reset();
        self.clear_pending();
        self.resize_for(t, h.remaps, ev);
        for slot in 0..h.layout.slots {
            let k = format::Layout::sector_of(slot) as usize;
            let i = slot as usize % format::SLOTS_PER_SECTOR;
            let v = format::entry_slot(&buf[(1 + k) * SECTOR..(2 + k) * SECTOR], i);
            if v == 0 {
                continue;
            }
            if v == RETIRED {
                self.pool.retire(slot);
                continue;
            }
            let main = v - 1;
            match t.insert(&mut self.writer, main, slot) {
                Ok(()) => {}
                Err(super::table::TableError::Exists) => {
                    let _ = t.clear(&mut self.writer);
                    self.pool.reset();
                    return Err(Some(Defect::Duplicate { block: main }));
                }
                Err(_) => return Err(None),
            }
            self.pool.take(slot, main);
        }
        // The copy was validated: the list is ascending, distinct, inside
        // main and at most `PENDING_MAX` long.
        let p = h.layout.pending_offset() as usize;
        let s = &buf[p * SECTOR..(p + 1) * SECTOR];
        let at = h.layout.copy_start(h.copy_index) + p as u64;
        let n = match format::decode_pending(s, at, self.geo.main_blocks, self.meta.crc) {
            Ok((_, n)) => n.min(PENDING_MAX),
            Err(d) => {
                let _ = t.clear(&mut self.writer);
                self.pool.reset();
                return Err(Some(d));
            }
        };
        for i in 0..n {
            self.meta.pending[i] = format::pending_block(s, i);
        }
        self.meta.pending_len = n;
        Ok(())
    }

    /// Writes copy `i` whole from memory, at the current generation.
    fn write_copy(&mut self, io: &mut dyn MetaIo, i: u32) -> Result<(), LoadError> {
        self.write_sectors(
            io,
            i,
            0,
            self.meta.layout.entry_sectors(),
            self.meta.generation,
        )
        .map_err(|()| LoadError::Io)
    }

    /// Writes entry sectors `k0..k1` of copy `i` and its pending sector,
    /// then its header durably (the header's PREFLUSH makes the others
    /// durable first). The pending sector directly follows the last entry
    /// sector: when `k1` is that sector they go out in one write.
    fn write_sectors(
        &mut self,
        io: &mut dyn MetaIo,
        i: u32,
        k0: u64,
        k1: u64,
        generation: u64,
    ) -> Result<(), ()> {
        let layout = self.meta.layout;
        let at = layout.copy_start(i);
        let crc = self.meta.crc;
        let pending_at = at + layout.pending_offset();
        let (k0, k1) = (k0.min(k1), k1.min(layout.entry_sectors()));
        let n = k1.saturating_sub(k0) as usize;
        let mut buf = RawArray::<u8, E>::new((n + 1) * SECTOR).ok_or(())?;
        for k in k0..k1 {
            let off = (k - k0) as usize * SECTOR;
            encode_entries(
                generation,
                at + 1 + k,
                self.pool.sector_slots(k),
                crc,
                &mut buf[off..off + SECTOR],
            );
        }
        encode_pending(
            generation,
            pending_at,
            self.pending(),
            crc,
            &mut buf[n * SECTOR..(n + 1) * SECTOR],
        );
        if n == 0 {
            io.write(pending_at, &buf, false)?;
        } else if at + 1 + k1 == pending_at {
            io.write(at + 1 + k0, &buf, false)?;
        } else {
            io.write(at + 1 + k0, &buf[..n * SECTOR], false)?;
            io.write(pending_at, &buf[n * SECTOR..], false)?;
        }
        let mut hdr = [0u8; SECTOR];
        encode_header(
            &Header {
                identity: self.meta.identity,
                generation,
                copy_index: i,
                layout,
                remaps: self.pool.used(),
                retired: self.pool.retired(),
            },
            crc,
            &mut hdr,
        );
        io.write(at, &hdr, true)
    }

    /// Makes the in-memory state durable: the entry sectors holding slots
    /// `lo..=hi` (none when `lo > hi`), the pending sector and the header,
    /// copy after copy, with a new generation. The
    /// copies are never all in flight: each is complete (header written with
    /// FUA after a PREFLUSH) before the next begins, so a crash leaves at
    /// least one copy wholly old or wholly new.
    pub fn commit(&mut self, io: &mut dyn MetaIo, lo: u64, hi: u64) -> Result<(), MsgError> {
        let generation = self.meta.generation + 1;
        let (k0, k1) = if self.meta.full_rewrite {
            (0, self.meta.layout.entry_sectors())
        } else if lo > hi {
            (0, 0)
        } else {
            (Layout::sector_of(lo), Layout::sector_of(hi) + 1)
        };
        for i in 0..self.meta.layout.copies {
            if self.write_sectors(io, i, k0, k1, generation).is_err() {
                // Copies now disagree; make the next commit rewrite them all.
                self.meta.full_rewrite = true;
                self.meta.generation = generation;
                return Err(MsgError::Io);
            }
        }
        self.meta.generation = generation;
        self.meta.full_rewrite = false;
        Ok(())
    }

    /// Executes `msg`; replies go to `out`, things to log to `ev`; changes
    /// are committed through `io` before this returns.
    ///
    /// May sleep (grace periods, metadata I/O); never call it on the I/O path.
    pub fn handle<W: Write>(
        &mut self,
        t: &RemapTable<E>,
        io: &mut dyn MetaIo,
        msg: Message,
        out: &mut W,
        ev: &mut dyn FnMut(Event),
    ) -> Result<(), MsgError> {
        if !self.meta.loaded {
            return Err(MsgError::NotLoaded);
        }
        // Replies are best effort: text that does not fit the result buffer
        // is cut, and device-mapper tells dmsetup so.
        match msg {
            Message::Help => {
                let _ = out.write_str(HELP);
            }
            Message::Count => {
                let _ = write!(out, "{}", t.len());
            }
            Message::Query(sector) => {
                let r = self.query(t, sector)?;
                let dev = if r.to_spare { "spare" } else { "main" };
                let _ = write!(out, "{dev} {}", r.sector);
            }
            Message::List { start, max } => self.list(t, start, max, out)?,
            Message::Clear => {
                let n = self.clear(t, io)?;
                let _ = write!(out, "cleared {n}");
            }
            Message::Add { main, spare, nr } => self.add(t, io, main, spare, nr, out, ev)?,
            Message::Remove { main, nr } => {
                let n = self.remove(t, io, main, nr, ev)?;
                let _ = write!(out, "removed {n}");
            }
            // Handled by the target (they concern its error handling and
            // scanner, not the table).
            Message::Pending
            | Message::ClearPending(_)
            | Message::ClearFail
            | Message::Set(_)
            | Message::Policy
            | Message::Scan(_) => return Err(MsgError::Invalid("not a remap table message")),
        }
        Ok(())
    }

    /// Checks that `main..main+nr` is block-aligned and inside the target;
    /// returns its first block and block count.
    fn blocks(&self, main: u64, nr: Option<u64>) -> Result<(u64, u64), MsgError> {
        let bs = self.geo.block_sectors;
        let nr = nr.unwrap_or(bs);
        if main % bs != 0 || nr % bs != 0 {
            return Err(MsgError::Invalid(
                "main sector and length must be multiples of the block size",
            ));
        }
        match main.checked_add(nr) {
            Some(end) if end <= self.geo.main_blocks * bs => Ok((main / bs, nr / bs)),
            _ => Err(MsgError::Invalid(
                "range extends beyond the end of the device",
            )),
        }
    }

    fn query(&self, t: &RemapTable<E>, sector: u64) -> Result<Route, MsgError> {
        if sector >= self.geo.main_blocks * self.geo.block_sectors {
            return Err(MsgError::Invalid("sector beyond the end of the device"));
        }
        Ok(route(&self.geo, |b| t.lookup(b), sector, 1))
    }

    #[allow(clippy::too_many_arguments)]
    fn add<W: Write>(
        &mut self,
        t: &RemapTable<E>,
        io: &mut dyn MetaIo,
        main: u64,
        spare: SpareArg,
        nr: Option<u64>,
        out: &mut W,
        ev: &mut dyn FnMut(Event),
    ) -> Result<(), MsgError> {
        let bs = self.geo.block_sectors;
        let (first, n) = self.blocks(main, nr)?;
        for b in first..first + n {
            if t.lookup(b).is_some() {
                return Err(MsgError::At("overlaps an existing remap", b * bs));
            }
        }
        let explicit = match spare {
            SpareArg::Auto => {
                if self.pool.free() < n {
                    if self.pool.total() < self.geo.spare_data_blocks {
                        return Err(MsgError::MetadataFull {
                            slots: self.pool.total(),
                        });
                    }
                    return Err(MsgError::PoolFull {
                        need: n,
                        free: self.pool.free(),
                    });
                }
                None
            }
            SpareArg::Sector(s) => {
                let start = self.geo.spare_data_start;
                if s % bs != 0 {
                    return Err(MsgError::Invalid(
                        "spare sector must be a multiple of the block size",
                    ));
                }
                if s < start {
                    return Err(MsgError::At("spare range lies in the metadata area", s));
                }
                let pb = (s - start) / bs;
                if !matches!(pb.checked_add(n), Some(end) if end <= self.geo.spare_data_blocks) {
                    return Err(MsgError::Invalid(
                        "spare range extends beyond the spare's data pool",
                    ));
                }
                if pb + n > self.pool.total() {
                    return Err(MsgError::MetadataFull {
                        slots: self.pool.total(),
                    });
                }
                for i in 0..n {
                    if self.pool.in_use(pb + i) {
                        return Err(MsgError::At(
                            "spare range is already in use",
                            start + (pb + i) * bs,
                        ));
                    }
                }
                Some(pb)
            }
        };

        self.resize_for(t, t.len() + n, ev);

        // Insert block by block, then commit; undo everything if memory runs
        // out or the commit fails.
        let mut done = 0;
        let mut failed = None;
        let (mut lo, mut hi) = (u64::MAX, 0);
        while done < n {
            let main_block = first + done;
            let sb = match explicit {
                Some(pb) => {
                    self.pool.take(pb + done, main_block);
                    pb + done
                }
                None => match self.pool.alloc(main_block) {
                    Some(b) => b,
                    None => {
                        failed = Some(MsgError::NoMemory);
                        break;
                    }
                },
            };
            if t.insert(&mut self.writer, main_block, sb).is_err() {
                self.pool.release(sb);
                failed = Some(MsgError::NoMemory);
                break;
            }
            lo = lo.min(sb);
            hi = hi.max(sb);
            done += 1;
        }
        if failed.is_none() {
            if let Err(e) = self.commit(io, lo, hi) {
                failed = Some(e);
            }
        }
        if let Some(e) = failed {
            let mut retired = Retired::new();
            for b in first..first + done {
                if let Some(sb) = t.remove(&mut self.writer, b, &mut retired) {
                    self.pool.release(sb);
                }
            }
            return Err(e);
        }

        // Reply: the new remaps as `<main_sector> <spare_sector> <nr_sectors>`.
        let mut extents = 0;
        let mut b = first;
        while b < first + n {
            let s0 = t.lookup(b).unwrap_or(0);
            let mut len = 1;
            while b + len < first + n && t.lookup(b + len) == Some(s0 + len) {
                len += 1;
            }
            if extents == ADD_REPLY_EXTENTS {
                let _ = write!(out, "...");
                break;
            }
            self.write_extent(out, extents > 0, b, s0, len);
            extents += 1;
            b += len;
        }
        Ok(())
    }

    fn remove(
        &mut self,
        t: &RemapTable<E>,
        io: &mut dyn MetaIo,
        main: u64,
        nr: Option<u64>,
        ev: &mut dyn FnMut(Event),
    ) -> Result<u64, MsgError> {
        let bs = self.geo.block_sectors;
        let (first, n) = self.blocks(main, nr)?;
        for b in first..first + n {
            if t.lookup(b).is_none() {
                return Err(MsgError::At("not remapped", b * bs));
            }
        }
        // Free the pool slots and commit first; only then unlink from the
        // table. If the commit fails, take the slots back: nothing changed.
        let (mut lo, mut hi) = (u64::MAX, 0);
        for b in first..first + n {
            if let Some(sb) = t.lookup(b) {
                self.pool.release(sb);
                lo = lo.min(sb);
                hi = hi.max(sb);
            }
        }
        if let Err(e) = self.commit(io, lo, hi) {
            for b in first..first + n {
                if let Some(sb) = t.lookup(b) {
                    self.pool.take(sb, b);
                }
            }
            return Err(e);
        }
        {
            let mut retired = Retired::new();
            for b in first..first + n {
                t.remove(&mut self.writer, b, &mut retired);
            }
            // Dropping `retired` waits for readers and frees the nodes.
        }
        self.resize_for(t, t.len(), ev);
        Ok(n)
    }

    fn clear(&mut self, t: &RemapTable<E>, io: &mut dyn MetaIo) -> Result<u64, MsgError> {
        // Retired pool blocks stay retired.
        let used = self.pool.release_all();
        if let Err(e) = self.commit(io, 0, self.pool.total().saturating_sub(1)) {
            let pool = &mut self.pool;
            t.for_each(&self.writer, |m, s| {
                pool.take(s, m);
            });
            return Err(e);
        }
        let n = t.clear(&mut self.writer).map_err(|_| MsgError::NoMemory)?;
        debug_assert_eq!(n, used);
        Ok(n)
    }

    /// Writes one run of remaps as `<main_sector> <spare_sector> <nr_sectors>`
    /// (after a newline unless it is the first line): `len` blocks from main
    /// block `main` to pool block `pool`.
    fn write_extent<W: Write>(&self, out: &mut W, newline: bool, main: u64, pool: u64, len: u64) {
        let bs = self.geo.block_sectors;
        if newline {
            let _ = out.write_char('\n');
        }
        let _ = write!(
            out,
            "{} {} {}",
            main * bs,
            self.geo.spare_data_start + pool * bs,
            len * bs
        );
    }

    /// Grows or shrinks the table for `entries` entries, if needed.
    fn resize_for(&mut self, t: &RemapTable<E>, entries: u64, ev: &mut dyn FnMut(Event)) {
        let old = t.buckets();
        let new = target_buckets(old, entries);
        if new == old {
            return;
        }
        ev(Event::Resizing {
            old,
            new,
            count: entries,
        });
        match t.resize(&mut self.writer, new) {
            Ok(()) => ev(Event::Resized { old, new }),
            Err(_) => ev(Event::ResizeFailed { old, new }),
        }
    }

    fn list<W: Write>(
        &mut self,
        t: &RemapTable<E>,
        start: u64,
        max: u64,
        out: &mut W,
    ) -> Result<(), MsgError> {
        let mut n = 0usize;
        t.for_each(&self.writer, |m, _| n += usize::from(m >= start));
        if n == 0 {
            return Ok(());
        }
        let mut pairs = RawArray::<[u64; 2], E>::new(n).ok_or(MsgError::NoMemory)?;
        let mut i = 0;
        t.for_each(&self.writer, |m, s| {
            if m >= start && i < n {
                pairs[i] = [m, s];
                i += 1;
            }
        });
        let pairs = &mut pairs[..i];
        heapsort_by_first(pairs);
        let mut lines = 0;
        let mut k = 0;
        while k < pairs.len() {
            let [m0, s0] = pairs[k];
            let mut len = 1;
            while k + (len as usize) < pairs.len()
                && pairs[k + len as usize] == [m0 + len, s0 + len]
            {
                len += 1;
            }
            if lines == max {
                let _ = write!(out, "\nnext {m0}");
                break;
            }
            self.write_extent(out, lines > 0, m0, s0, len);
            lines += 1;
            k += len as usize;
        }
        Ok(())
    }
}

/// The error path: remaps the target makes itself when I/O fails. The caller
/// writes the data to a reserved block, commits, and only then publishes, so
/// that nothing reaches a spare block before the metadata naming it is
/// durable.
impl<E: Env> Remaps<E> {
    /// Spare sector where pool block `slot` starts.
    pub fn slot_sector(&self, slot: u64) -> u64 {
        self.geo.spare_data_start + slot * self.geo.block_sectors
    }

    /// The pool block starting at spare sector `sector`, if it is one.
    pub fn slot_at(&self, sector: u64) -> Option<u64> {
        let rel = sector.checked_sub(self.geo.spare_data_start)?;
        if rel.checked_rem(self.geo.block_sectors) != Some(0) {
            return None;
        }
        let slot = rel.checked_div(self.geo.block_sectors)?;
        (slot < self.pool.total()).then_some(slot)
    }

    /// The main block pool block `slot` holds.
    pub fn holder(&self, slot: u64) -> Option<u64> {
        self.pool.holder(slot)
    }

    /// Free pool blocks.
    pub fn free_slots(&self) -> u64 {
        self.pool.free()
    }

    /// Reserves a free pool block for main block `main` (memory only);
    /// `None` when the pool is exhausted.
    pub fn reserve(&mut self, main: u64) -> Option<u64> {
        self.pool.alloc(main)
    }

    /// Returns a reserved block that was never committed.
    pub fn unreserve(&mut self, slot: u64) {
        self.pool.release(slot);
    }

    /// Undoes [`Self::retire`] of `slot`, which held `main`, after the
    /// commit recording it failed.
    pub fn unretire(&mut self, slot: u64, main: u64) {
        self.pool.unretire(slot, main);
    }

    /// Publishes the committed remap `main → slot` to readers; a block
    /// already remapped moves to `slot` in one step.
    pub fn publish(
        &mut self,
        t: &RemapTable<E>,
        main: u64,
        slot: u64,
        ev: &mut dyn FnMut(Event),
    ) -> Result<(), MsgError> {
        let mut retired = Retired::new();
        if t.lookup(main).is_some() {
            t.replace(&mut self.writer, main, slot, &mut retired)
                .map(|_| ())
                .map_err(|_| MsgError::NoMemory)
        } else {
            self.resize_for(t, t.len() + 1, ev);
            t.insert(&mut self.writer, main, slot)
                .map_err(|_| MsgError::NoMemory)
        }
    }

    /// Rewrites every copy whole from memory (leaving fail mode).
    pub fn rewrite_all(&mut self, io: &mut dyn MetaIo) -> Result<(), MsgError> {
        self.meta.full_rewrite = true;
        self.commit(io, 1, 0)
    }

    /// Reads every copy and rewrites those that are not a valid image of the
    /// current generation (stale, torn or damaged since they were written).
    /// Returns the number rewritten.
    pub fn verify(
        &mut self,
        io: &mut dyn MetaIo,
        ev: &mut dyn FnMut(Event),
    ) -> Result<u32, LoadError> {
        if !self.meta.loaded {
            return Ok(0);
        }
        let layout = self.meta.layout;
        let (states, _) = survey::<E>(
            io,
            &layout,
            &self.meta.identity,
            self.geo.main_blocks,
            self.meta.crc,
        )?;
        let mut n = 0;
        for i in 0..layout.copies {
            let defect = match states[i as usize] {
                CopyState::Valid(h)
                    if h.generation == self.meta.generation && h.identity == self.meta.identity =>
                {
                    continue
                }
                CopyState::Valid(_) => Defect::Torn {
                    at: layout.copy_start(i),
                },
                CopyState::Bad(d) => d,
            };
            self.write_copy(io, i)?;
            ev(Event::Repaired { copy: i, defect });
            n += 1;
        }
        Ok(n)
    }
}

/// Sorts pairs by their first element, in place, in O(n log n) with no
/// allocation. (`core`'s sort is avoided: its panic helpers are unknown to the
/// objtool of some kernels, which then warns about the module.)
fn heapsort_by_first(v: &mut [[u64; 2]]) {
    fn sift_down(v: &mut [[u64; 2]], mut root: usize, end: usize) {
        loop {
            let mut child = 2 * root + 1;
            if child >= end {
                return;
            }
            if child + 1 < end && v[child][0] < v[child + 1][0] {
                child += 1;
            }
            if v[root][0] >= v[child][0] {
                return;
            }
            v.swap(root, child);
            root = child;
        }
    }
    let n = v.len();
    for i in (0..n / 2).rev() {
        sift_down(v, i, n);
    }
    for end in (1..n).rev() {
        v.swap(0, end);
        sift_down(v, 0, end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logic::geometry::{validate, DeviceFacts};
    use crate::logic::message::parse;
    use crate::logic::table_line::Features;
    use crate::HostEnv;
    extern crate std;
    use std::string::String;
    use std::vec::Vec;

    const MIB: u64 = 2048;

    fn geo(block_size: Option<u32>) -> Geometry {
        let d = |dev, sectors| DeviceFacts {
            dev,
            whole: dev,
            sectors,
            logical_block_size: 512,
        };
        validate(
            64 * MIB,
            &d(1, 64 * MIB),
            &d(2, 64 * MIB),
            &Features {
                block_size,
                ..Features::default()
            },
        )
        .unwrap()
    }

    /// The metadata area in memory, with an optional write fault.
    #[derive(Clone)]
    struct Disk {
        data: Vec<u8>,
        /// Writes that succeed before every further write fails.
        writes_left: Option<usize>,
        /// Writes done: (first sector, sectors).
        log: Vec<(u64, usize)>,
    }

    impl Disk {
        fn new() -> Self {
            Self {
                data: std::vec![0u8; METADATA_AREA_SECTORS as usize * SECTOR],
                writes_left: None,
                log: Vec::new(),
            }
        }
    }

    impl MetaIo for Disk {
        fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), ()> {
            let at = sector as usize * SECTOR;
            buf.copy_from_slice(&self.data[at..at + buf.len()]);
            Ok(())
        }
        fn write(&mut self, sector: u64, buf: &[u8], _durable: bool) -> Result<(), ()> {
            if let Some(n) = self.writes_left.as_mut() {
                if *n == 0 {
                    return Err(());
                }
                *n -= 1;
            }
            let at = sector as usize * SECTOR;
            self.data[at..at + buf.len()].copy_from_slice(buf);
            self.log.push((sector, buf.len() / SECTOR));
            Ok(())
        }
    }

    /// Checks that every copy on `disk` is valid; returns their headers.
    fn all_copies_valid(disk: &mut Disk, layout: &Layout, what: &str) -> Vec<Header> {
        (0..layout.copies)
            .map(|i| {
                let at = layout.copy_start(i);
                let mut buf = std::vec![0u8; (1 + layout.pending_offset() as usize) * SECTOR];
                disk.read(at, &mut buf).unwrap();
                check_copy(&buf, at, METADATA_AREA_SECTORS, 131072, crc32fast::hash)
                    .unwrap_or_else(|d| panic!("{what}: copy {i}: {d}"))
            })
            .collect()
    }

    struct Fixture {
        t: RemapTable<HostEnv>,
        r: Remaps<HostEnv>,
        disk: Disk,
        events: Vec<Event>,
    }

    fn pair(bs: Option<u32>) -> Identity {
        Identity {
            uuid: [0; 16],
            main_sectors: 64 * MIB,
            spare_sectors: 64 * MIB,
            block_size: bs.unwrap_or(512),
        }
    }

    impl Fixture {
        fn new(bs: Option<u32>) -> Self {
            Self::on(bs, Disk::new()).unwrap()
        }

        /// A target loading the metadata already on `disk`.
        fn on(bs: Option<u32>, mut disk: Disk) -> Result<Self, LoadError> {
            let g = geo(bs);
            let layout = Remaps::<HostEnv>::layout(&mut disk, &g, 5, crc32fast::hash).unwrap();
            let (t, mut r) = Remaps::new(g, layout, pair(bs), crc32fast::hash).unwrap();
            let mut events = Vec::new();
            r.load(&t, &mut disk, false, [9; 16], &mut |e| events.push(e))?;
            Ok(Self { t, r, disk, events })
        }

        fn msg(&mut self, line: &str) -> Result<String, String> {
            let words: Vec<&str> = line.split_whitespace().collect();
            let m = parse(&words).map_err(|e| String::from(e.as_str()))?;
            let mut out = String::new();
            let events = &mut self.events;
            self.r
                .handle(&self.t, &mut self.disk, m, &mut out, &mut |e| {
                    events.push(e)
                })
                .map_err(|e| std::format!("{e}"))?;
            Ok(out)
        }

        fn state(&mut self) -> (String, String) {
            (
                self.msg("list 0 10000").unwrap(),
                self.msg("count").unwrap(),
            )
        }
    }

    #[test]
    fn blank_spare_is_formatted_and_reloads() {
        let mut f = Fixture::new(None);
        assert!(f.events.contains(&Event::Formatted { copies: 5 }));
        f.msg("add_remap 1010 5010 10").unwrap();
        f.msg("add_remap 0 auto 3").unwrap();
        let want = f.state();
        let g = f.r.generation();
        let mut again = Fixture::on(None, f.disk.clone()).unwrap();
        assert_eq!(again.state(), want);
        assert_eq!(again.r.generation(), g);
        assert!(
            matches!(again.events[..], [Event::Loaded { generation, remaps: 13, .. }] if generation == g)
        );
        // The generation keeps growing across loads.
        again.msg("remove_remap 0 1").unwrap();
        assert_eq!(again.r.generation(), g + 1);
    }

    #[test]
    fn crash_at_every_write_of_a_commit_loads_old_or_new() {
        let mut f = Fixture::new(None);
        f.msg("add_remap 100 auto 70").unwrap();
        let old = f.state();
        let mut next = Fixture::on(None, f.disk.clone()).unwrap();
        next.msg("add_remap 500 auto 70").unwrap();
        let new = next.state();
        // 5 copies x (entry write + pending write + header write).
        for k in 0..=15 {
            let mut g = Fixture::on(None, f.disk.clone()).unwrap();
            g.disk.writes_left = Some(k);
            let r = g.msg("add_remap 500 auto 70");
            assert_eq!(r.is_ok(), k == 15, "k={k}");
            // The power is cut: memory is gone; what loads is old or new.
            let mut disk = g.disk.clone();
            disk.writes_left = None;
            let mut after = Fixture::on(None, disk).unwrap();
            let st = after.state();
            assert!(st == old || st == new, "k={k}: {st:?}");
            if k == 15 {
                assert_eq!(st, new);
            }
            // Every copy is valid again after the load's repairs.
            let layout = after.r.meta.layout;
            all_copies_valid(&mut after.disk, &layout, &std::format!("k={k}"));
        }
    }

    #[test]
    fn corrupt_copies_are_repaired() {
        let mut f = Fixture::new(None);
        f.msg("add_remap 8 auto 16").unwrap();
        let want = f.state();
        let layout = f.r.meta.layout;
        // Damage all but one copy in different ways.
        let mut disk = f.disk.clone();
        let at = |i: u32| layout.copy_start(i) as usize * SECTOR;
        disk.data[at(0)..at(0) + SECTOR].fill(0); // zeroed header
        disk.data[at(1) + SECTOR + 20] ^= 0x10; // bit flip in an entry sector
        disk.data[at(2) + 100] ^= 1; // bit flip in the header
        let (a, b) = (at(3), at(4));
        let stale = f.disk.data[b..b + 2 * SECTOR].to_vec();
        disk.data[a..a + 2 * SECTOR].copy_from_slice(&stale); // copy 4's sectors at copy 3: wrong location
        let mut g = Fixture::on(None, disk).unwrap();
        assert_eq!(g.state(), want);
        let repaired: Vec<u32> = g
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Repaired { copy, .. } => Some(*copy),
                _ => None,
            })
            .collect();
        assert_eq!(repaired, [0, 1, 2, 3]);
        // Reloading now finds every copy fine.
        let h = Fixture::on(None, g.disk.clone()).unwrap();
        assert!(!h.events.iter().any(|e| matches!(e, Event::Repaired { .. })));
    }

    #[test]
    fn unusable_areas_are_refused_unless_formatting() {
        let mut disk = Disk::new();
        disk.data[12345] = 1;
        assert!(matches!(
            Fixture::on(None, disk.clone()),
            Err(LoadError::Refused(m)) if m.to_str().unwrap().contains("not blank")
        ));
        // Metadata of another device pair.
        let f = Fixture::new(Some(4096));
        assert!(matches!(
            Fixture::on(None, f.disk.clone()),
            Err(LoadError::Refused(m)) if m.to_str().unwrap().contains("different device pair")
        ));
    }

    #[test]
    fn failed_commit_changes_nothing() {
        let mut f = Fixture::new(None);
        f.msg("add_remap 0 auto 4").unwrap();
        let before = f.state();
        f.disk.writes_left = Some(3);
        assert_eq!(
            f.msg("add_remap 8 auto 4").unwrap_err(),
            "metadata write failed; change undone"
        );
        assert_eq!(f.state(), before);
        f.disk.writes_left = Some(3);
        assert!(f.msg("remove_remap 0 4").is_err());
        assert_eq!(f.state(), before);
        f.disk.writes_left = Some(1);
        assert!(f.msg("clear_remaps").is_err());
        assert_eq!(f.state(), before);
        f.disk.writes_left = None;
        f.msg("add_remap 8 auto 4").unwrap();
        let want = f.state();
        assert_eq!(Fixture::on(None, f.disk.clone()).unwrap().state(), want);
    }

    #[test]
    fn full_metadata_area_is_refused() {
        let mut f = Fixture::new(None);
        let slots = f.r.slots();
        assert_eq!(slots, 817 * 61);
        f.msg(&std::format!("add_remap 0 auto {slots}")).unwrap();
        assert_eq!(
            f.msg(&std::format!("add_remap {slots} auto")).unwrap_err(),
            std::format!(
                "metadata area full: it describes {slots} spare blocks and all are in use"
            )
        );
        let beyond = 4096 + slots;
        assert!(f
            .msg(&std::format!("add_remap {} {beyond}", slots + 8))
            .unwrap_err()
            .starts_with("metadata area full"));
    }

    #[test]
    fn seed_loop_resizes_as_documented() {
        let mut f = Fixture::new(None);
        for i in 1..=200u64 {
            let line = std::format!("add_remap {} {} 10", 1000 + i * 10, 5000 + i * 10);
            assert_eq!(
                f.msg(&line).unwrap(),
                std::format!("{} {} 10", 1000 + i * 10, 5000 + i * 10)
            );
        }
        assert_eq!(f.msg("count").unwrap(), "2000");
        let starts: Vec<_> = f
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Resizing { old, new, count } => Some((*old, *new, *count)),
                _ => None,
            })
            .collect();
        assert_eq!(
            starts,
            [(64, 256, 100), (256, 1024, 390), (1024, 4096, 1540)]
        );
        assert_eq!(f.t.resizes(), 3);
        assert_eq!(f.msg("query 1015").unwrap(), "spare 5015");
        assert_eq!(f.msg("query 999").unwrap(), "main 999");
        // Consecutive remaps list as one extent.
        assert_eq!(f.msg("list").unwrap(), "1010 5010 2000");
    }

    #[test]
    fn routing_splits_at_boundaries() {
        let mut f = Fixture::new(None);
        f.msg("add_remap 100 5000 4").unwrap();
        f.msg("add_remap 104 9000 2").unwrap();
        let g = geo(None);
        let lk = |b| f.t.lookup(b);
        // Before the remaps: main up to sector 100.
        assert_eq!(
            route(&g, lk, 90, 20),
            Route {
                to_spare: false,
                sector: 90,
                len: 10
            }
        );
        // Into the first remap: 4 contiguous spare sectors, then a jump.
        assert_eq!(
            route(&g, lk, 100, 20),
            Route {
                to_spare: true,
                sector: 5000,
                len: 4
            }
        );
        assert_eq!(
            route(&g, lk, 104, 20),
            Route {
                to_spare: true,
                sector: 9000,
                len: 2
            }
        );
        assert_eq!(
            route(&g, lk, 106, 20),
            Route {
                to_spare: false,
                sector: 106,
                len: 20
            }
        );
    }

    #[test]
    fn routing_with_large_blocks() {
        let mut f = Fixture::new(Some(4096));
        f.msg("add_remap 16 auto 16").unwrap();
        let g = geo(Some(4096));
        let lk = |b| f.t.lookup(b);
        let r = route(&g, lk, 20, 100);
        assert!(r.to_spare);
        assert_eq!(r.sector, g.spare_data_start + 4);
        assert_eq!(r.len, 12);
        assert_eq!(route(&g, lk, 0, 100).len, 16);
    }

    #[test]
    fn remove_and_clear_restore_main() {
        let mut f = Fixture::new(None);
        f.msg("add_remap 0 auto 300").unwrap();
        assert_eq!(f.t.buckets(), 256);
        assert_eq!(f.r.spare_used(), 300);
        assert_eq!(f.msg("remove_remap 0 290").unwrap(), "removed 290");
        // 10 entries in 256 buckets: below 3/32 of 256, so back to 64.
        assert_eq!(f.t.buckets(), 64);
        assert_eq!(f.msg("query 5").unwrap(), "main 5");
        assert_eq!(f.msg("count").unwrap(), "10");
        assert_eq!(f.msg("clear_remaps").unwrap(), "cleared 10");
        assert_eq!(f.msg("count").unwrap(), "0");
        assert_eq!(f.r.spare_used(), 0);
        assert_eq!(f.msg("list").unwrap(), "");
    }

    #[test]
    fn refusals_change_nothing() {
        let mut f = Fixture::new(Some(4096));
        f.msg("add_remap 8 auto 8").unwrap();
        let before = (f.msg("list").unwrap(), f.r.spare_used());
        let cases = [
            ("add_remap 4 auto", "multiples of the block size"),
            ("add_remap 8 auto 4", "multiples of the block size"),
            (
                "add_remap 0 auto 16",
                "overlaps an existing remap (sector 8)",
            ),
            ("add_remap 131064 auto 16", "beyond the end of the device"),
            (
                "add_remap 16 96",
                "spare range lies in the metadata area (sector 96)",
            ),
            ("add_remap 16 4100", "multiple of the block size"),
            (
                "add_remap 16 4096",
                "spare range is already in use (sector 4096)",
            ),
            ("add_remap 16 131064 16", "beyond the spare's data pool"),
            ("add_remap 16 auto 1000000", "beyond the end of the device"),
            ("remove_remap 16", "not remapped (sector 16)"),
            ("remove_remap 8 16", "not remapped (sector 16)"),
            ("remove_remap 12", "multiples of the block size"),
            ("query 131072", "beyond the end"),
        ];
        for (m, want) in cases {
            let got = f.msg(m).expect_err(m);
            assert!(got.contains(want), "{m}: got {got:?}, want {want:?}");
            assert_eq!((f.msg("list").unwrap(), f.r.spare_used()), before, "{m}");
        }
    }

    #[test]
    fn pool_exhaustion() {
        let mut f = Fixture::new(Some(65536));
        // 62 MiB of pool in 64 KiB blocks: 992 blocks.
        assert_eq!(f.r.pool.total(), 992);
        f.msg("add_remap 0 auto 126976").unwrap();
        let e = f.msg("add_remap 126976 auto 128").unwrap_err();
        assert_eq!(e, "spare pool full: 1 blocks needed, 0 free");
    }

    #[test]
    fn heapsort_sorts() {
        let mut x = 0x1234_5678_u64;
        for n in [0usize, 1, 2, 3, 10, 257] {
            let mut v: Vec<[u64; 2]> = (0..n)
                .map(|i| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    [x >> 40, i as u64]
                })
                .collect();
            let mut want = v.clone();
            want.sort_by_key(|p| p[0]);
            heapsort_by_first(&mut v);
            let keys: Vec<u64> = v.iter().map(|p| p[0]).collect();
            let want_keys: Vec<u64> = want.iter().map(|p| p[0]).collect();
            assert_eq!(keys, want_keys);
        }
    }

    #[test]
    fn list_pages() {
        let mut f = Fixture::new(None);
        for i in 0..5 {
            f.msg(&std::format!("add_remap {} auto", i * 10)).unwrap();
        }
        assert_eq!(f.msg("list 0 2").unwrap(), "0 4096 1\n10 4097 1\nnext 20");
        assert_eq!(f.msg("list 20 2").unwrap(), "20 4098 1\n30 4099 1\nnext 40");
        assert_eq!(f.msg("list 40 2").unwrap(), "40 4100 1");
    }

    #[test]
    fn pending_list_stays_sorted_and_bounded() {
        let mut f = Fixture::new(None);
        assert_eq!(f.r.pending(), &[] as &[u64]);
        for b in [50, 10, 30, 10] {
            f.r.add_pending(b);
        }
        assert_eq!(f.r.pending(), &[10, 30, 50]);
        assert_eq!(f.r.add_pending(30), PendingAdd::Present);
        assert_eq!(f.r.add_pending(131072), PendingAdd::OutOfRange);
        assert_eq!(f.r.add_pending(131071), PendingAdd::Added);
        assert!(f.r.remove_pending(30));
        assert!(!f.r.remove_pending(30));
        assert_eq!(f.r.pending(), &[10, 50, 131071]);
        assert_eq!(f.r.clear_pending(), 3);
        assert_eq!(f.r.pending(), &[] as &[u64]);
        // Fill it from the top down: every insertion lands in front.
        for b in (0..PENDING_MAX as u64).rev() {
            assert_eq!(f.r.add_pending(b * 2 + 1), PendingAdd::Added);
        }
        assert_eq!(f.r.add_pending(0), PendingAdd::Full);
        assert_eq!(f.r.add_pending(1), PendingAdd::Present);
        let want: Vec<u64> = (0..PENDING_MAX as u64).map(|b| b * 2 + 1).collect();
        assert_eq!(f.r.pending(), &want[..]);
        assert!(f.r.remove_pending(1));
        assert!(f.r.remove_pending(PENDING_MAX as u64 * 2 - 1));
        assert_eq!(f.r.pending(), &want[1..PENDING_MAX - 1]);
        assert_eq!(f.r.add_pending(0), PendingAdd::Added);
        assert_eq!(f.r.pending()[0], 0);
    }

    #[test]
    fn pending_and_retired_round_trip() {
        let mut f = Fixture::new(None);
        f.msg("add_remap 0 auto 8").unwrap();
        // Retire a used pool block and a free one.
        assert_eq!(f.r.retire_slot(3), Some(3));
        assert_eq!(f.r.retire_slot(20), None);
        assert_eq!(f.r.retire_slot(20), None);
        assert_eq!(f.r.retired(), 2);
        assert_eq!(f.r.spare_used(), 7);
        for b in [700, 9, 4000] {
            assert_eq!(f.r.add_pending(b), PendingAdd::Added);
        }
        f.r.commit(&mut f.disk, 3, 20).unwrap();
        let g = f.r.generation();
        let layout = f.r.meta.layout;
        for h in all_copies_valid(&mut f.disk, &layout, "after commit") {
            assert_eq!((h.generation, h.remaps, h.retired), (g, 7, 2));
        }
        let mut again = Fixture::on(None, f.disk.clone()).unwrap();
        assert_eq!(again.r.pending(), &[9, 700, 4000]);
        assert_eq!(again.r.retired(), 2);
        assert_eq!(again.r.spare_used(), 7);
        assert!(again.r.pool.in_use(3) && again.r.pool.in_use(20));
        assert_eq!(again.r.pool.holder(3), None);
        assert_eq!(again.r.generation(), g);
        // Retired blocks are skipped by allocation and refused explicitly.
        assert_eq!(again.msg("add_remap 100 auto 1").unwrap(), "100 4104 1");
        assert_eq!(
            again.msg("add_remap 200 4116").unwrap_err(),
            "spare range is already in use (sector 4116)"
        );
        // clear_remaps keeps them retired (and the pending list as it is).
        assert_eq!(again.msg("clear_remaps").unwrap(), "cleared 8");
        assert_eq!(again.r.retired(), 2);
        let third = Fixture::on(None, again.disk.clone()).unwrap();
        assert_eq!(third.r.retired(), 2);
        assert_eq!(third.r.spare_used(), 0);
        assert_eq!(third.r.pending(), &[9, 700, 4000]);
        assert_eq!(third.r.pool.free(), third.r.slots() - 2);
    }

    #[test]
    fn error_path_reserve_commit_publish_and_relocate() {
        let mut f = Fixture::new(Some(4096));
        // A failed write of main block 40: reserve, (write data), commit,
        // publish; nothing is visible before the publish.
        let slot = f.r.reserve(40).unwrap();
        assert_eq!(f.t.lookup(40), None);
        f.r.commit(&mut f.disk, slot, slot).unwrap();
        assert_eq!(f.t.lookup(40), None);
        let mut ev = |_e: Event| {};
        f.r.publish(&f.t, 40, slot, &mut ev).unwrap();
        assert_eq!(f.t.lookup(40), Some(slot));
        assert_eq!(f.r.slot_at(f.r.slot_sector(slot)), Some(slot));
        assert_eq!(f.r.slot_at(f.r.slot_sector(slot) + 1), None);
        assert_eq!(f.r.slot_at(4095), None);
        assert_eq!(f.r.holder(slot), Some(40));
        // Its spare block fails: retire it, move the block to a new one in
        // one step for readers.
        let new = f.r.reserve(40).unwrap();
        assert_ne!(new, slot);
        assert_eq!(f.r.retire_slot(slot), Some(40));
        f.r.commit(&mut f.disk, slot.min(new), slot.max(new))
            .unwrap();
        f.r.publish(&f.t, 40, new, &mut ev).unwrap();
        assert_eq!(f.t.lookup(40), Some(new));
        assert_eq!(f.t.len(), 1);
        let again = Fixture::on(Some(4096), f.disk.clone()).unwrap();
        assert_eq!(again.t.lookup(40), Some(new));
        assert_eq!(again.r.retired(), 1);
        // A commit that fails is undone in memory.
        let slot3 = f.r.reserve(41).unwrap();
        let old_free = f.r.free_slots();
        f.disk.writes_left = Some(0);
        assert_eq!(f.r.commit(&mut f.disk, slot3, slot3), Err(MsgError::Io));
        f.r.unreserve(slot3);
        assert_eq!(f.r.free_slots(), old_free + 1);
        // ... and so is a retirement.
        assert_eq!(f.r.retire_slot(new), Some(40));
        f.r.unretire(new, 40);
        assert_eq!(f.r.holder(new), Some(40));
        assert_eq!(f.r.retired(), 1);
        // Fail mode ends with a full rewrite once writes work again.
        f.disk.writes_left = None;
        f.r.rewrite_all(&mut f.disk).unwrap();
        let back = Fixture::on(Some(4096), f.disk.clone()).unwrap();
        assert_eq!(back.t.lookup(40), Some(new));
        assert_eq!(back.t.lookup(41), None);
    }

    #[test]
    fn verify_rewrites_stale_and_damaged_copies_only() {
        let mut f = Fixture::new(None);
        f.msg("add_remap 0 auto 8").unwrap();
        let layout = f.r.meta.layout;
        let mut ev = Vec::new();
        assert_eq!(f.r.verify(&mut f.disk, &mut |e| ev.push(e)).unwrap(), 0);
        // Damage an entry sector of copy 2 and the header of copy 4.
        let at = (layout.copy_start(2) + 3) as usize * SECTOR;
        f.disk.data[at + 20] ^= 0xff;
        let h4 = layout.copy_start(4) as usize * SECTOR;
        f.disk.data[h4 + 100] ^= 1;
        assert_eq!(f.r.verify(&mut f.disk, &mut |e| ev.push(e)).unwrap(), 2);
        assert!(matches!(
            ev[0],
            Event::Repaired {
                copy: 2,
                defect: Defect::BadCrc
            }
        ));
        assert!(matches!(ev[1], Event::Repaired { copy: 4, .. }));
        all_copies_valid(&mut f.disk, &layout, "after verify");
        assert_eq!(f.r.verify(&mut f.disk, &mut |e| ev.push(e)).unwrap(), 0);
    }

    #[test]
    fn commit_without_slots_rewrites_pending() {
        let mut f = Fixture::new(None);
        f.msg("add_remap 0 auto 4").unwrap();
        let layout = f.r.meta.layout;
        f.r.add_pending(77);
        f.disk.log.clear();
        f.r.commit(&mut f.disk, 1, 0).unwrap();
        // Per copy: the pending sector, then the header; no entry sector.
        let want: Vec<(u64, usize)> = (0..5)
            .flat_map(|i| {
                let at = layout.copy_start(i);
                [(at + layout.pending_offset(), 1), (at, 1)]
            })
            .collect();
        assert_eq!(f.disk.log, want);
        all_copies_valid(&mut f.disk, &layout, "pending only");
        let again = Fixture::on(None, f.disk.clone()).unwrap();
        assert_eq!(again.r.pending(), &[77]);
        assert!(!again
            .events
            .iter()
            .any(|e| matches!(e, Event::Repaired { .. })));
        // Emptying the list is a commit like any other.
        f.r.clear_pending();
        f.r.commit(&mut f.disk, u64::MAX, 0).unwrap();
        assert_eq!(
            Fixture::on(None, f.disk.clone()).unwrap().r.pending(),
            &[] as &[u64]
        );
        // A change to the last entry sector goes out with the pending sector
        // in one write.
        let last = layout.slots - 1;
        f.disk.log.clear();
        f.r.commit(&mut f.disk, last, last).unwrap();
        let at = layout.copy_start(0);
        assert_eq!(f.disk.log[..2], [(at + layout.entry_sectors(), 2), (at, 1)]);
    }

    #[test]
    fn torn_pending_sector_is_repaired_from_another_copy() {
        let mut f = Fixture::new(None);
        f.msg("add_remap 0 auto 4").unwrap();
        f.r.add_pending(5);
        f.r.commit(&mut f.disk, 1, 0).unwrap();
        let g = f.r.generation();
        let layout = f.r.meta.layout;
        // A later commit changing only the pending list is cut after copy 0
        // and copy 1's pending sector: copy 0 is new, copy 1 torn.
        let mut g1 = Fixture::on(None, f.disk.clone()).unwrap();
        g1.r.add_pending(6);
        g1.disk.writes_left = Some(3);
        assert_eq!(g1.r.commit(&mut g1.disk, 1, 0), Err(MsgError::Io));
        let mut disk = g1.disk.clone();
        disk.writes_left = None;
        let at1 = layout.copy_start(1);
        let mut buf = std::vec![0u8; (1 + layout.pending_offset() as usize) * SECTOR];
        disk.read(at1, &mut buf).unwrap();
        assert_eq!(
            check_copy(&buf, at1, METADATA_AREA_SECTORS, 131072, crc32fast::hash),
            Err(Defect::Torn {
                at: at1 + layout.pending_offset()
            })
        );
        let after = Fixture::on(None, disk).unwrap();
        assert_eq!(after.r.pending(), &[5, 6]);
        assert_eq!(after.r.generation(), g + 1);
        let repaired: Vec<(u32, Defect)> = after
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Repaired { copy, defect } => Some((*copy, *defect)),
                _ => None,
            })
            .collect();
        assert_eq!(repaired[0].0, 1);
        assert!(matches!(repaired[0].1, Defect::Torn { .. }));
        assert_eq!(repaired.len(), 4);
        let mut disk = after.disk;
        all_copies_valid(&mut disk, &layout, "after repair");

        // A torn pending sector in the newest copy alone: the others, one
        // generation older, are loaded and it is rewritten from them.
        let mut disk = f.disk.clone();
        let at0 = layout.copy_start(0);
        let p = (at0 + layout.pending_offset()) as usize * SECTOR;
        format::encode_pending(
            g + 1,
            at0 + layout.pending_offset(),
            &[1, 2],
            crc32fast::hash,
            &mut disk.data[p..p + SECTOR],
        );
        let after = Fixture::on(None, disk).unwrap();
        assert_eq!(after.r.pending(), &[5]);
        assert_eq!(after.r.generation(), g);
        assert!(after.events.contains(&Event::Repaired {
            copy: 0,
            defect: Defect::Torn {
                at: at0 + layout.pending_offset()
            }
        }));
    }

    #[test]
    fn crash_while_committing_pending_loads_old_or_new() {
        let mut f = Fixture::new(None);
        f.msg("add_remap 0 auto 4").unwrap();
        f.r.add_pending(10);
        f.r.commit(&mut f.disk, 1, 0).unwrap();
        // 5 copies x (entry write + pending write + header write).
        for k in 0..=15 {
            let mut g = Fixture::on(None, f.disk.clone()).unwrap();
            g.r.add_pending(20);
            g.r.retire_slot(2);
            g.disk.writes_left = Some(k);
            assert_eq!(g.r.commit(&mut g.disk, 2, 2).is_ok(), k == 15, "k={k}");
            let mut disk = g.disk.clone();
            disk.writes_left = None;
            let after = Fixture::on(None, disk).unwrap();
            let got = (after.r.pending().to_vec(), after.r.retired());
            let new = (std::vec![10, 20], 1);
            assert!(got == (std::vec![10], 0) || got == new, "k={k}: {got:?}");
            if k == 15 {
                assert_eq!(got, new);
                assert_eq!(after.r.spare_used(), 3);
            }
            let layout = after.r.meta.layout;
            let mut disk = after.disk;
            all_copies_valid(&mut disk, &layout, &std::format!("k={k}"));
        }
    }
}
