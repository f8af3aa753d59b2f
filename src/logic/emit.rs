// SPDX-License-Identifier: GPL-2.0

//! Writing text into device-mapper's result buffers (`DMEMIT` in Rust).

use core::fmt;

/// A `fmt::Write` sink over the `result`/`maxlen` buffer that device-mapper
/// passes to `status` and `message`.
///
/// The buffer always holds a NUL-terminated string. Text that does not fit is
/// cut so that the string fills the buffer exactly (`maxlen - 1` bytes plus the
/// NUL), which is how device-mapper recognises an overflow and asks again with
/// a larger buffer; `snprintf` in `DMEMIT` behaves the same.
pub struct Emitter<'a> {
    buf: &'a mut [u8],
    len: usize,
    overflowed: bool,
}

impl<'a> Emitter<'a> {
    /// An emitter that starts writing at the beginning of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        if let Some(first) = buf.first_mut() {
            *first = 0;
        }
        Self {
            buf,
            len: 0,
            overflowed: false,
        }
    }

    /// Bytes written so far, without the NUL.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether some text did not fit.
    #[cfg(test)]
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// The text written so far (device-mapper reads it from the buffer
    /// itself; the host's replay tool from here).
    #[cfg(not(MODULE))]
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl fmt::Write for Emitter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Room for text, keeping one byte for the NUL.
        let room = self.buf.len().saturating_sub(1).saturating_sub(self.len);
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        if let Some(nul) = self.buf.get_mut(self.len) {
            *nul = 0;
        }
        if n < s.len() {
            self.overflowed = true;
            return Err(fmt::Error);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn writes_and_terminates() {
        let mut buf = [0xffu8; 16];
        let mut e = Emitter::new(&mut buf);
        let n = 7;
        write!(e, "{n} x").unwrap();
        assert_eq!(e.as_bytes(), b"7 x");
        assert!(!e.overflowed());
        assert_eq!(&buf[..4], b"7 x\0");
    }

    #[test]
    fn overflow_fills_the_buffer_exactly() {
        let mut buf = [0xffu8; 8];
        let mut e = Emitter::new(&mut buf);
        assert!(write!(e, "0123456789").is_err());
        assert!(e.overflowed());
        assert_eq!(e.len(), 7);
        assert_eq!(&buf, b"0123456\0");
    }

    #[test]
    fn empty_buffer_is_safe() {
        let mut buf = [0u8; 0];
        let mut e = Emitter::new(&mut buf);
        assert!(write!(e, "a").is_err());
        assert!(e.is_empty());
    }
}
