// SPDX-License-Identifier: GPL-2.0

//! Pure logic of dm-remap: no kernel calls.
//!
//! These files are compiled unchanged into two crates: the kernel module
//! (`src/dm_remap.rs` declares `mod logic`) and the host library
//! (`src/host.rs`), where `cargo test` exercises them. Everything that decides
//! something (which table lines are valid, how the devices are laid out, what
//! status prints, where a block is remapped to) lives here so that it is
//! tested on the host.
//!
//! Memory and RCU come from the [`mem::Env`] the caller plugs in. Only
//! [`mem`] and [`table`] (the lock-free table) contain `unsafe` code.

pub mod emit;
pub mod format;
pub mod geometry;
#[allow(unsafe_code)]
pub mod mem;
pub mod message;
pub mod number;
pub mod pending;
pub mod policy;
pub mod pool;
pub mod remaps;
pub mod routing;
pub mod stats;
pub mod status;
#[allow(unsafe_code)]
pub mod table;
pub mod table_line;
#[cfg(test)]
pub mod testing;

/// Why a table line, a device pair or a message was refused.
///
/// `msg` is what the user sees: the constructor hands it to device-mapper as
/// `ti->error`, which prints it in the kernel log next to the table line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// A sentence that names what is wrong.
    pub msg: &'static core::ffi::CStr,
}

impl Refusal {
    /// A refusal with this message.
    pub const fn new(msg: &'static core::ffi::CStr) -> Self {
        Self { msg }
    }

    /// The message as text (all messages are ASCII).
    pub fn as_str(&self) -> &'static str {
        match self.msg.to_str() {
            Ok(s) => s,
            Err(_) => "invalid argument",
        }
    }
}

/// xorshift64: a fixed sequence from a seed, for the host tests' generators
/// and fuzzers (a printed seed reproduces a run).
#[cfg(test)]
pub(crate) struct TestRng(pub(crate) u64);

#[cfg(test)]
impl TestRng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value below `n` (below 1 when `n` is 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}
