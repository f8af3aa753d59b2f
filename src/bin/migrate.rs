// SPDX-License-Identifier: GPL-2.0

//! `dm-remap-tool migrate OLD NEW`: every remap of a spare, with its data,
//! and its pending list, moved to another (larger) spare while no table
//! uses either. The new spare's metadata is built by the module's own code
//! in memory, then written so that the new spare is refused by a table
//! until it is whole: the copies' units first (the area is no longer blank,
//! and holds no valid header), then the data, flushed, then each copy's
//! header, flushed. The old spare is only read.

use crate::spare::{extents, Spare};
use dm_remap::logic::format::{Identity, Layout, Unrecorded, DEFAULT_MAX_SLOTS, SECTOR};
use dm_remap::logic::geometry::{validate, DeviceFacts, Geometry};
use dm_remap::logic::message::{parse, Message};
use dm_remap::logic::remaps::{self, LayoutRequest, MetaIo, PendingAdd, Remaps};
use dm_remap::logic::table_line::Features;
use dm_remap::HostEnv;

/// A metadata area in memory: reads of what was never written are zeros.
#[derive(Default)]
struct Area(Vec<u8>);

impl MetaIo for Area {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), ()> {
        let at = usize::try_from(sector).map_err(|_| ())? * SECTOR;
        buf.fill(0);
        if let Some(have) = self.0.get(at..) {
            let n = have.len().min(buf.len());
            buf[..n].copy_from_slice(&have[..n]);
        }
        Ok(())
    }
    fn write(&mut self, sector: u64, buf: &[u8], _durable: bool) -> Result<(), ()> {
        let at = usize::try_from(sector).map_err(|_| ())? * SECTOR;
        let end = at + buf.len();
        if self.0.len() < end {
            self.0.resize(end, 0);
        }
        self.0[at..end].copy_from_slice(buf);
        Ok(())
    }
}

impl Area {
    fn bytes(&mut self, sector: u64, sectors: u64) -> Vec<u8> {
        let mut b = vec![0u8; sectors as usize * SECTOR];
        let _ = self.read(sector, &mut b);
        b
    }
}

/// One step of writing the new spare, in order.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Write these bytes at this sector of the new spare.
    Write { sector: u64, data: Vec<u8> },
    /// Copy sectors of the old spare to the new one.
    Copy { from: u64, to: u64, sectors: u64 },
    /// Make everything written so far durable.
    Flush,
}

/// What a migration moves, and where: the new spare's layout, and each run
/// of remapped blocks with its place on the old spare and on the new one.
pub(crate) struct Plan {
    /// The new spare's layout.
    pub(crate) layout: Layout,
    /// Runs: (main sector, old spare sector, new spare sector, sectors).
    pub(crate) runs: Vec<(u64, u64, u64, u64)>,
    /// Remapped blocks moved.
    pub(crate) blocks: u64,
    /// Block size in sectors.
    pub(crate) block_sectors: u64,
    pair: Identity,
    geometry: Geometry,
    /// Pending main blocks of the old spare.
    pending: Vec<u64>,
    /// Read errors the old spare's pending list had no room for.
    unrecorded: Unrecorded,
}

fn crc(b: &[u8]) -> u32 {
    crc32fast::hash(b)
}

/// The geometry of a target over the main `pair` records and a spare of
/// `spare_sectors`, both of logical block size `lbs`, as its constructor
/// would validate it; the refusal's reason otherwise.
pub(crate) fn pair_geometry(
    pair: &Identity,
    spare_sectors: u64,
    lbs: u32,
) -> Result<Geometry, &'static str> {
    let bs = (u64::from(pair.block_size) / 512).max(1);
    let main = pair.main_sectors;
    let facts = |dev, sectors| DeviceFacts {
        dev,
        whole: dev,
        sectors,
        logical_block_size: lbs,
    };
    let features = Features {
        block_size: Some(pair.block_size),
        ..Features::default()
    };
    validate(
        main - main % bs,
        &facts(1, main),
        &facts(2, spare_sectors),
        &features,
    )
    .map_err(|r| r.as_str())
}

/// The migration of `old` (read with [`crate::spare::read_spare`]) to a
/// blank spare of `new_sectors` whose logical block size is `lbs`.
pub(crate) fn plan(old: &Spare, new_sectors: u64, lbs: u32) -> Result<Plan, String> {
    let (Some(h), Some(old_layout)) = (old.best, old.layout) else {
        return Err("the old spare holds no valid dm-remap metadata".into());
    };
    let bs = u64::from(h.identity.block_size) / 512;
    let main = h.identity.main_sectors;
    let geometry = pair_geometry(&h.identity, new_sectors, lbs)
        .map_err(|r| format!("the new spare cannot serve this pair: {r}"))?;
    let req = LayoutRequest {
        copies: old_layout.copies,
        max_slots: DEFAULT_MAX_SLOTS,
        format: false,
    };
    let layout =
        remaps::find_layout::<HostEnv>(&mut Area::default(), &geometry, new_sectors, &req, crc)
            .map_err(|e| format!("no metadata layout fits the new spare: {e:?}"))?;
    let ext = extents(old);
    let blocks: u64 = ext.iter().map(|e| e.2 / bs).sum();
    if blocks > layout.slots {
        return Err(format!(
            "the new spare's pool has {} blocks, the remaps need {blocks}",
            layout.slots
        ));
    }
    let mut next = layout.pool_start;
    let runs = ext
        .iter()
        .map(|&(m, s, n)| {
            next += n;
            (m, s, next - n, n)
        })
        .collect();
    Ok(Plan {
        layout,
        runs,
        blocks,
        block_sectors: bs,
        pair: Identity {
            uuid: h.identity.uuid,
            main_sectors: main,
            spare_sectors: new_sectors,
            block_size: h.identity.block_size,
        },
        geometry,
        pending: old.pending.clone(),
        unrecorded: h.unrecorded,
    })
}

impl Plan {
    /// The first steps: mark the new spare's metadata area as taken (a unit
    /// of 0xff bytes, which no loader takes for a copy or for blank space,
    /// so a table refuses the spare from here on), then copy the data.
    pub(crate) fn data_steps(&self) -> Vec<Step> {
        let mut steps = vec![
            Step::Write {
                sector: self.layout.unit_sectors(),
                data: vec![0xff; self.layout.unit()],
            },
            Step::Flush,
        ];
        steps.extend(self.runs.iter().map(|&(_, from, to, sectors)| Step::Copy {
            from,
            to,
            sectors,
        }));
        steps.push(Step::Flush);
        steps
    }

    /// The metadata, built by the module's code, for every run but the main
    /// blocks in `lost` (their data could not be read from the old spare:
    /// they become pending, as a block whose data is gone is): every copy's
    /// units, flushed, then each copy's header, flushed.
    pub(crate) fn metadata_steps(&self, lost: &[u64]) -> Result<Vec<Step>, String> {
        let mut area = Area::default();
        let (t, mut r) = Remaps::<HostEnv>::new(self.geometry, self.layout, self.pair, crc)
            .map_err(|e| format!("cannot build the remap table: {e}"))?;
        r.load(&t, &mut area, false, self.pair.uuid, &mut |_| {})
            .map_err(|e| format!("formatting the new metadata failed: {e:?}"))?;
        let bs = self.block_sectors;
        for &(m, _, to, n) in &self.runs {
            // Each stretch of the run between lost blocks.
            let mut k = 0;
            while k < n {
                let mut e = k;
                while e < n && !lost.contains(&((m + e) / bs)) {
                    e += bs;
                }
                if e > k {
                    let words = [
                        "add_remap".to_string(),
                        (m + k).to_string(),
                        (to + k).to_string(),
                        (e - k).to_string(),
                    ];
                    let words: Vec<&str> = words.iter().map(String::as_str).collect();
                    let Ok(Message::Remaps(msg)) = parse(&words) else {
                        return Err(format!("cannot remap main sector {}", m + k));
                    };
                    r.handle(&t, &mut area, msg, &mut String::new(), &mut |_| {})
                        .map_err(|e| format!("remapping main sector {}: {e:?}", m + k))?;
                }
                k = e + bs;
            }
        }
        // A block that does not fit the list is counted as unrecorded, as
        // the module counts it.
        for &b in self.pending.iter().chain(lost) {
            if r.add_pending(b) == PendingAdd::OutOfRange {
                return Err(format!("pending main block {b} lies beyond main"));
            }
        }
        r.add_unrecorded(self.unrecorded);
        if !self.pending.is_empty() || !lost.is_empty() || self.unrecorded.count > 0 {
            r.commit_pending(&mut area)
                .map_err(|e| format!("recording the pending blocks: {e:?}"))?;
        }
        let (layout, unit) = (self.layout, self.layout.unit_sectors());
        let mut steps = Vec::new();
        for i in 0..layout.copies {
            let at = layout.copy_start(i);
            steps.push(Step::Write {
                sector: at + unit,
                data: area.bytes(at + unit, layout.copy_sectors - unit),
            });
        }
        steps.push(Step::Flush);
        for i in 0..layout.copies {
            let at = layout.copy_start(i);
            steps.push(Step::Write {
                sector: at,
                data: area.bytes(at, unit),
            });
            steps.push(Step::Flush);
        }
        Ok(steps)
    }

    /// Every step of a migration in which every block reads.
    #[cfg(test)]
    pub(crate) fn steps(&self) -> Vec<Step> {
        let mut s = self.data_steps();
        s.extend(self.metadata_steps(&[]).unwrap());
        s
    }
}

/// Where a plan's steps go: the new spare, and the old one to copy from.
pub(crate) trait Target {
    fn write(&mut self, sector: u64, data: &[u8]) -> std::io::Result<()>;
    /// Reads `sectors` of the old spare from `from`; `Ok(false)` when the
    /// old spare cannot read them.
    fn read_old(&mut self, from: u64, buf: &mut [u8]) -> std::io::Result<bool>;
    /// [`Self::read_old`] of one block, after a larger read failed.
    fn read_old_block(&mut self, from: u64, buf: &mut [u8]) -> std::io::Result<bool> {
        self.read_old(from, buf)
    }
    fn flush(&mut self) -> std::io::Result<()>;
}

/// Why a migration stopped: the step, and the error.
pub(crate) type Stop = (usize, std::io::Error);

/// Copies a run of `sectors` from `from` on the old spare to `to` on the
/// new one, in pieces of up to 1 MiB; a piece the old spare cannot read is
/// read again block by block (of `bs` sectors), and the offsets of the
/// blocks that still fail are returned: their data is lost.
fn copy(
    t: &mut dyn Target,
    from: u64,
    to: u64,
    sectors: u64,
    bs: u64,
) -> std::io::Result<Vec<u64>> {
    let piece = (1 << 20) / SECTOR as u64;
    let mut buf = vec![0u8; piece as usize * SECTOR];
    let mut lost = Vec::new();
    let mut done = 0;
    while done < sectors {
        let n = (sectors - done).min(piece);
        let b = &mut buf[..n as usize * SECTOR];
        if t.read_old(from + done, b)? {
            t.write(to + done, b)?;
        } else {
            for k in (0..n).step_by(bs as usize) {
                let b = &mut buf[..bs as usize * SECTOR];
                if t.read_old_block(from + done + k, b)? {
                    t.write(to + done + k, b)?;
                } else {
                    lost.push(done + k);
                }
            }
        }
        done += n;
    }
    Ok(lost)
}

/// Carries out `steps`; returns the main blocks whose data the old spare
/// could not read (for [`Plan::metadata_steps`]); a copy step's sectors
/// relate to main through `plan`'s runs.
pub(crate) fn run(plan: &Plan, steps: &[Step], t: &mut dyn Target) -> Result<Vec<u64>, Stop> {
    let bs = plan.block_sectors;
    let mut lost = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        match s {
            Step::Write { sector, data } => t.write(*sector, data),
            Step::Copy { from, to, sectors } => copy(t, *from, *to, *sectors, bs).map(|l| {
                if let Some(&(m, ..)) = plan.runs.iter().find(|r| r.1 == *from) {
                    lost.extend(l.iter().map(|o| (m + o) / bs));
                }
            }),
            Step::Flush => t.flush(),
        }
        .map_err(|e| (i, e))?;
    }
    Ok(lost)
}

/// Two files: the old spare, read; the new one, written.
pub(crate) struct Files {
    pub(crate) old: std::fs::File,
    /// The old spare opened with `O_DIRECT`, where it can be: a piece that
    /// fails is read again a block at a time from it, since through the
    /// page cache one bad sector fails the whole page, and so every block
    /// that shares it.
    pub(crate) old_direct: Option<std::fs::File>,
    pub(crate) new: std::fs::File,
}

/// `O_DIRECT` on x86-64 Linux.
const O_DIRECT: i32 = 0o40000;

impl Files {
    /// Opens the two spares.
    pub(crate) fn open(old: &str, new: &str) -> std::io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        Ok(Self {
            old: std::fs::File::open(old)?,
            old_direct: std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(O_DIRECT)
                .open(old)
                .ok(),
            new: std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(new)?,
        })
    }
}

/// A read's result: `Ok(false)` for an I/O error (the device cannot read
/// it), other errors as they are.
fn eio_is_false(r: std::io::Result<()>) -> std::io::Result<bool> {
    match r {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(5) => Ok(false),
        Err(e) => Err(e),
    }
}

impl Target for Files {
    fn write(&mut self, sector: u64, data: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.new.write_all_at(data, sector * SECTOR as u64)
    }
    fn read_old(&mut self, from: u64, buf: &mut [u8]) -> std::io::Result<bool> {
        use std::os::unix::fs::FileExt;
        eio_is_false(self.old.read_exact_at(buf, from * SECTOR as u64))
    }
    fn read_old_block(&mut self, from: u64, buf: &mut [u8]) -> std::io::Result<bool> {
        use std::os::unix::fs::FileExt;
        let Some(d) = &self.old_direct else {
            return self.read_old(from, buf);
        };
        // Past the page cache, into 4 KiB-aligned memory as O_DIRECT wants.
        let mut mem = vec![0u8; buf.len() + 4096];
        let skip = (4096 - mem.as_ptr() as usize % 4096) % 4096;
        let aligned = &mut mem[skip..skip + buf.len()];
        let ok = eio_is_false(d.read_exact_at(aligned, from * SECTOR as u64))?;
        if ok {
            buf.copy_from_slice(aligned);
        }
        Ok(ok)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.new.sync_all()
    }
}
