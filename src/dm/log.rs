// SPDX-License-Identifier: GPL-2.0

//! Kernel log macros with the `dm-remap: ` prefix that users' scripts match.
//!
//! The kernel crate's `pr_*!` macros prefix lines with the module name
//! (`dm_remap`); the documented log lines say `dm-remap`.

/// Prints to the kernel log at the given `format_strings` level.
macro_rules! dmr_log {
    ($level:ident, $($arg:tt)+) => {
        // `format_args!` borrows its arguments; `match` keeps the temporaries
        // alive for the call (the same idiom as the kernel crate's macros).
        match format_args!($($arg)+) {
            // SAFETY: The format string is one of the kernel crate's fixed
            // ones, which take exactly one `%pA` argument, and the prefix is
            // NUL-terminated.
            args => unsafe {
                kernel::print::call_printk(
                    &kernel::print::format_strings::$level,
                    b"dm-remap\0",
                    args,
                )
            },
        }
    };
}

/// Logs at `KERN_INFO`.
macro_rules! dmr_info {
    ($($arg:tt)+) => { $crate::dm::log::dmr_log!(INFO, $($arg)+) };
}

/// Logs at `KERN_ERR`.
macro_rules! dmr_err {
    ($($arg:tt)+) => { $crate::dm::log::dmr_log!(ERR, $($arg)+) };
}

pub(crate) use {dmr_err, dmr_info, dmr_log};
