// SPDX-License-Identifier: GPL-2.0

//! Strict parsing of the numbers in table lines and messages.

/// Parses an unsigned decimal number.
///
/// Refuses what `sscanf("%llu%c")` with a dummy would refuse and more: an empty
/// string, a sign, white space, trailing garbage (`12abc`), hexadecimal, and
/// values that do not fit in a `u64`.
pub fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for b in s.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

/// Parses an unsigned decimal number that must fit in a `u32`.
pub fn parse_u32(s: &str) -> Option<u32> {
    parse_u64(s).and_then(|v| u32::try_from(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_decimals() {
        assert_eq!(parse_u64("0"), Some(0));
        assert_eq!(parse_u64("007"), Some(7));
        assert_eq!(parse_u64("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u32("4294967295"), Some(u32::MAX));
    }

    #[test]
    fn refuses_everything_else() {
        for s in [
            "",
            "-1",
            "+1",
            " 1",
            "1 ",
            "12abc",
            "0x10",
            "1.5",
            "18446744073709551616",
            "99999999999999999999999",
        ] {
            assert_eq!(parse_u64(s), None, "{s:?}");
        }
        assert_eq!(parse_u32("4294967296"), None);
    }
}
