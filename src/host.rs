// SPDX-License-Identifier: GPL-2.0

//! Host build of dm-remap's pure logic.
//!
//! The kernel module compiles `src/logic/` into itself; this crate compiles the
//! very same files for the host so that `cargo test` checks them and host tools
//! share them. Nothing here may depend on the standard library outside tests.

#![no_std]

pub mod logic;
