// SPDX-License-Identifier: GPL-2.0

//! The control messages: the pending list, fail mode, the policy and the
//! scanner (`pending`, `clear_pending`, `clear_fail`, `set`, `policy`,
//! `scan`). The messages that change remaps are the writer's
//! (`Remaps::handle`); `Remap::message` routes between the two.

use super::{scan_state, Core, Remap};
use crate::dm::log::{dmr_err, dmr_info};
use crate::dm::target::Target;
use crate::dm::worker::now_ms;
use crate::logic::emit::Emitter;
use crate::logic::mem::RawArray;
use crate::logic::message::{ControlMsg, MsgError, ScanCmd};
use crate::logic::policy::Setting;
use crate::logic::status::write_lost;
use core::fmt::Write;
use core::sync::atomic::Ordering;

impl Remap {
    /// The messages about error handling and the scanner.
    pub(super) fn control(
        &self,
        ti: &Target,
        c: &mut Core,
        msg: ControlMsg,
        out: &mut Emitter<'_>,
    ) -> Result<(), MsgError> {
        let dev = ti.device_name();
        if !c.remaps.loaded() {
            return Err(MsgError::NotLoaded);
        }
        let bs = self.geometry.block_sectors;
        match msg {
            ControlMsg::Pending => {
                let p = c.remaps.pending();
                if p.is_empty() {
                    let _ = out.write_str("none");
                }
                for (i, b) in p.iter().enumerate() {
                    let _ = write!(out, "{}{}", if i > 0 { " " } else { "" }, b * bs);
                }
            }
            ControlMsg::Lost => {
                let u = c.remaps.unrecorded();
                let _ = write_lost(out, bs, c.remaps.pending(), &u);
            }
            ControlMsg::ClearPending(which) => {
                let n = match which {
                    None => c.remaps.clear_pending(),
                    Some(s) => {
                        if s.checked_rem(bs) != Some(0) {
                            return Err(MsgError::Invalid(
                                "main sector must be a multiple of the block size",
                            ));
                        }
                        if !c.remaps.remove_pending(self.block_of(s)) {
                            return Err(MsgError::At("not pending", s));
                        }
                        1
                    }
                };
                self.pending.set(c.remaps.pending());
                if n > 0 && !self.commit(dev, c, None) {
                    return Err(MsgError::Io);
                }
                let _ = write!(out, "cleared {n}");
            }
            ControlMsg::ClearFail => {
                let mut sio = self.spare_io();
                if c.remaps.rewrite_all(&mut sio).is_err() {
                    dmr_err!("{}: clear_fail: metadata still cannot be written\n", dev);
                    return Err(MsgError::Io);
                }
                if self.fail.swap(false, Ordering::AcqRel) {
                    dmr_info!("{}: metadata written: fail mode cleared\n", dev);
                }
                let _ = out.write_str("ok");
            }
            ControlMsg::Set(s) => {
                let mut p = c.policy;
                p.apply(s);
                p.check(self.geometry.block_size)
                    .map_err(|r| MsgError::Invalid(r.as_str()))?;
                if let Setting::ScanChunk(kib) = s {
                    // A running scanner reads into a buffer of the new size
                    // from its next step on.
                    if c.scan.buf.is_some() {
                        let a = RawArray::new(kib as usize * 1024).ok_or(MsgError::NoMemory)?;
                        c.scan.buf = Some(a);
                    }
                }
                c.policy = p;
                if let Setting::AutoRemap(on) = s {
                    self.auto_remap.store(on, Ordering::Relaxed);
                    if on {
                        // An explicit `on` restarts the threshold count.
                        c.auto_remaps = 0;
                    }
                }
                if let Setting::SpareLow(_) = s {
                    self.report_spare(dev, c);
                }
            }
            ControlMsg::Policy => {
                let _ = c.policy.write_all(out);
            }
            ControlMsg::Scan(ScanCmd::Start) => {
                let bytes = c.policy.scan_chunk as usize * 1024;
                if c.scan.buf.as_ref().map(|b| b.len()) != Some(bytes) {
                    let a = RawArray::new(bytes).ok_or(MsgError::NoMemory)?;
                    c.scan.buf = Some(a);
                }
                if !c.scan.running {
                    c.scan.running = true;
                    c.scan.due_ms = now_ms();
                    self.scanning.store(true, Ordering::Relaxed);
                    dmr_info!(
                        "{}: scan started at sector {}\n",
                        dev,
                        c.scan.position * bs
                    );
                    if !c.suspended {
                        self.worker.scan_after(0);
                    }
                }
            }
            ControlMsg::Scan(ScanCmd::Stop) => {
                if c.scan.running {
                    dmr_info!("{}: scan stopped at sector {}\n", dev, c.scan.position * bs);
                }
                c.scan.running = false;
                c.scan.position = 0;
                self.scanning.store(false, Ordering::Relaxed);
            }
            ControlMsg::Scan(ScanCmd::Status) => {
                let _ = write!(
                    out,
                    "state {} position {} total {} passes {} found {} rate {} last_pass ",
                    scan_state(c).as_str(),
                    c.scan.position * bs,
                    self.geometry.main_blocks * bs,
                    c.scan.passes,
                    c.scan.found,
                    c.policy.scan_rate
                );
                let _ = match c.scan.last_pass_ms {
                    Some(t) => write!(out, "{}", now_ms().saturating_sub(t) / 1000),
                    None => out.write_str("never"),
                };
            }
        }
        Ok(())
    }
}
