// SPDX-License-Identifier: GPL-2.0

//! Routing: where each piece of a bio goes.
//!
//! [`route`] is the data path's question "where does this piece go", asked
//! by `map` under RCU with the table's lookup; [`blocks_of`] and [`hold`]
//! cut a write at the first block the worker takes over (a pending block,
//! or the block it is writing); [`pieces`] splits a bio the worker handles
//! into per-block pieces. All of it is plain arithmetic on the
//! [`Geometry`], tested here on the host.

use super::geometry::Geometry;

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

/// How much of a write `map` sends on, once it knows the first block of it
/// that must go through the worker instead (`held`: a pending block, or the
/// block the worker is writing): the sectors before that block go where the
/// route says; a write that starts in that block is deferred, that block
/// alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hold {
    /// Sectors from the start of the write in this piece.
    pub len: u64,
    /// The piece goes to the worker.
    pub deferred: bool,
}

/// The blocks a routed piece of `len` sectors at target offset `offset`
/// touches: the first and how many.
pub fn blocks_of(geo: &Geometry, offset: u64, len: u64) -> (u64, u64) {
    let bs = geo.block_sectors;
    let first = offset / bs;
    (first, (offset + len).div_ceil(bs) - first)
}

/// Cuts a routed piece of `len` sectors at target offset `offset` (of a
/// write) at `held`, the first block in it that goes through the worker
/// (see [`Hold`]). `held` is one of the piece's blocks.
pub fn hold(geo: &Geometry, offset: u64, len: u64, held: Option<u64>) -> Hold {
    let bs = geo.block_sectors;
    match held {
        None => Hold {
            len,
            deferred: false,
        },
        Some(p) => {
            let start = p * bs;
            if start <= offset {
                Hold {
                    len: len.min(start + bs - offset),
                    deferred: true,
                }
            } else {
                Hold {
                    len: start - offset,
                    deferred: false,
                }
            }
        }
    }
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

/// One block's share of an I/O, as the error path handles it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    /// The main block.
    pub block: u64,
    /// Sectors into the block where the piece starts.
    pub in_block: u64,
    /// Sectors in the piece (the whole block when `in_block == 0` and
    /// `len == block_sectors`).
    pub len: u64,
    /// Sectors into the I/O where the piece starts.
    pub skip: u64,
}

/// The pieces of an I/O of `sectors` sectors at target offset `offset`, one
/// per block it touches, in order. The mapped device's logical block size is
/// the devices' own, so an I/O may start or end inside a block.
pub fn pieces(geo: &Geometry, offset: u64, sectors: u64) -> impl Iterator<Item = Piece> {
    let bs = geo.block_sectors.max(1);
    let mut skip = 0;
    core::iter::from_fn(move || {
        if skip >= sectors {
            return None;
        }
        let at = offset + skip;
        let in_block = at % bs;
        let len = (bs - in_block).min(sectors - skip);
        let p = Piece {
            block: at / bs,
            in_block,
            len,
            skip,
        };
        skip += len;
        Some(p)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logic::testing::geo;
    extern crate std;
    use std::vec::Vec;

    #[test]
    fn a_write_is_cut_at_the_first_block_the_worker_takes() {
        // 4 KiB blocks (8 sectors). A write of sectors 13..33 touches
        // blocks 1-4.
        let g = geo(Some(4096));
        assert_eq!(blocks_of(&g, 13, 20), (1, 4));
        assert_eq!(blocks_of(&g, 16, 8), (2, 1));
        assert_eq!(blocks_of(&g, 16, 9), (2, 2));
        assert_eq!(blocks_of(&g, 0, 1), (0, 1));
        let h = |held| hold(&g, 13, 20, held);
        // Nothing held: all of it, as routed.
        assert_eq!(
            h(None),
            Hold {
                len: 20,
                deferred: false
            }
        );
        // Its first block held: that block's part alone, to the worker.
        assert_eq!(
            h(Some(1)),
            Hold {
                len: 3,
                deferred: true
            }
        );
        // A later block held: the sectors before it go on now; the next
        // piece starts in the held block.
        assert_eq!(
            h(Some(2)),
            Hold {
                len: 3,
                deferred: false
            }
        );
        assert_eq!(
            h(Some(4)),
            Hold {
                len: 19,
                deferred: false
            }
        );
        // A write inside one block, held: all of it, deferred.
        assert_eq!(
            hold(&g, 17, 4, Some(2)),
            Hold {
                len: 4,
                deferred: true
            }
        );
        // The next piece of the cut write starts in the held block: the
        // block alone is deferred, the rest follows in later pieces.
        assert_eq!(
            hold(&g, 32, 1, Some(4)),
            Hold {
                len: 1,
                deferred: true
            }
        );
        assert_eq!(
            hold(&g, 16, 17, Some(2)),
            Hold {
                len: 8,
                deferred: true
            }
        );
        // Every cut covers at least one sector and never more than asked.
        for offset in 0..40 {
            for len in 1..40 {
                let (first, n) = blocks_of(&g, offset, len);
                for p in first..first + n {
                    let c = hold(&g, offset, len, Some(p));
                    assert!(c.len >= 1 && c.len <= len, "{offset}+{len} at {p}: {c:?}");
                    // A deferred piece stays inside the held block.
                    if c.deferred {
                        assert_eq!(blocks_of(&g, offset, c.len), (p, 1));
                    } else {
                        assert_eq!(offset + c.len, p * 8);
                    }
                }
            }
        }
    }

    #[test]
    fn pieces_split_at_block_boundaries() {
        let g = geo(Some(4096));
        let v: Vec<Piece> = pieces(&g, 13, 20).collect();
        assert_eq!(
            v,
            [
                Piece {
                    block: 1,
                    in_block: 5,
                    len: 3,
                    skip: 0
                },
                Piece {
                    block: 2,
                    in_block: 0,
                    len: 8,
                    skip: 3
                },
                Piece {
                    block: 3,
                    in_block: 0,
                    len: 8,
                    skip: 11
                },
                Piece {
                    block: 4,
                    in_block: 0,
                    len: 1,
                    skip: 19
                },
            ]
        );
        let v: Vec<Piece> = pieces(&g, 16, 8).collect();
        assert_eq!(
            v,
            [Piece {
                block: 2,
                in_block: 0,
                len: 8,
                skip: 0
            }]
        );
        assert_eq!(pieces(&g, 16, 0).count(), 0);
        let v: Vec<Piece> = pieces(&g, 17, 2).collect();
        assert_eq!(
            v,
            [Piece {
                block: 2,
                in_block: 1,
                len: 2,
                skip: 0
            }]
        );
        // 512-byte blocks: one piece per sector.
        let g = geo(None);
        assert_eq!(
            pieces(&g, 5, 3).map(|p| p.block).collect::<Vec<_>>(),
            [5, 6, 7]
        );
    }
}
