// SPDX-License-Identifier: GPL-2.0

//! The FFI layer: small safe wrappers over the kernel's C API.
//!
//! Every `unsafe` block of the module lives under this directory. The target
//! code (`src/remap/`) uses only these safe types and the pure logic.

pub(crate) mod bindings;
pub(crate) mod bio;
pub(crate) mod compat;
pub(crate) mod device;
pub(crate) mod io;
pub(crate) mod log;
pub(crate) mod rcu;
pub(crate) mod stats;
pub(crate) mod target;
pub(crate) mod worker;
