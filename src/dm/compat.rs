// SPDX-License-Identifier: GPL-2.0

//! What differs between the kernels the module builds against (6.12 LTS to
//! the newest 7.x), in one place, so no other file needs to know.
//!
//! Kbuild probes the kernel tree it builds against
//! (`scripts/kbuild/kernel-cfg.sh`) and passes what it found as cfgs, the
//! way the kernel's own `include/generated/rustc_cfg` carries its config:
//!
//! - `dmr_core_cstr`: `kernel::str::CStr` is `core::ffi::CStr`, and its
//!   conversions from and to the kernel's `char` pointers are the
//!   `kernel::str::CStrExt` trait (core's own, `from_ptr` and `as_ptr`,
//!   take core's signed `c_char`, and the kernel's clippy configuration
//!   forbids them). Before, `kernel::str::CStr` was the kernel's own type
//!   with those conversions as inherent methods, and `c"..."` literals,
//!   which the module uses for static strings, were a different type.
//! - `dmr_module_authors`: `module!` takes `authors: [..]` and refuses the
//!   older `author:`.

use kernel::ffi::c_char;
#[cfg(dmr_core_cstr)]
use kernel::str::CStrExt as _;

/// Borrows the NUL-terminated string at `ptr` as UTF-8, or `None` if it is
/// not.
///
/// # Safety
///
/// `ptr` points to a NUL-terminated string that stays valid and unchanged
/// for `'a`.
pub(crate) unsafe fn str_at<'a>(ptr: *const c_char) -> Option<&'a str> {
    // SAFETY: The caller's guarantee.
    unsafe { kernel::str::CStr::from_char_ptr(ptr) }.to_str().ok()
}

/// The kernel `char` pointer of a static C string literal (`c"..."`), for
/// fields such as `ti->error` and `target_type.name`.
pub(crate) fn static_chars(s: &'static core::ffi::CStr) -> *const c_char {
    #[cfg(dmr_core_cstr)]
    let p = s.as_char_ptr();
    #[cfg(not(dmr_core_cstr))]
    let p = s.as_ptr().cast::<c_char>();
    p
}

/// `module!` with one author and the rest as given, spelt the way this
/// kernel's macro wants it.
#[cfg(dmr_module_authors)]
macro_rules! module_with_author {
    (type: $t:tt, name: $n:tt, author: $a:tt, $($rest:tt)*) => {
        ::kernel::prelude::module! { type: $t, name: $n, authors: [$a], $($rest)* }
    };
}
#[cfg(not(dmr_module_authors))]
macro_rules! module_with_author {
    (type: $t:tt, name: $n:tt, author: $a:tt, $($rest:tt)*) => {
        ::kernel::prelude::module! { type: $t, name: $n, author: $a, $($rest)* }
    };
}
pub(crate) use module_with_author;
