//! Lowercase hex digits of a `u64`, for the ids and entity tags the edge writes.
//!
//! This module owns the one hex writer of the edge. It writes into a fixed buffer, so a
//! caller appends the digits to its own storage without allocating or going through the
//! formatting machinery (request ids and JSON ETags are made on every request).

/// `value` in lowercase hex: as few digits as it needs, but at least `min_digits` (at most
/// 16), zero-padded on the left.
#[derive(Clone, Copy)]
pub struct Hex {
    digits: [u8; 16],
    /// Index of the first digit shown; the digits before it are padding not shown.
    start: usize,
}

impl Hex {
    pub fn new(value: u64, min_digits: u32) -> Hex {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut digits = [0u8; 16];
        for (i, slot) in digits.iter_mut().enumerate() {
            let shift = 60 - 4 * i;
            *slot = DIGITS[((value >> shift) & 0xf) as usize];
        }
        let needed = (64 - value.leading_zeros())
            .div_ceil(4)
            .max(min_digits)
            .clamp(1, 16);
        Hex {
            digits,
            start: 16 - needed as usize,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.digits[self.start..]
    }

    pub fn as_str(&self) -> &str {
        // Always ASCII hex digits; the fallback only avoids a panic path.
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::Hex;

    #[test]
    fn writes_lowercase_digits_with_a_minimum_width() {
        // (value, min_digits, text)
        let cases: &[(u64, u32, &str)] = &[
            (0, 0, "0"),
            (0, 1, "0"),
            (0, 16, "0000000000000000"),
            (0xabc, 1, "abc"),
            (0xabc, 5, "00abc"),
            (0x1f, 2, "1f"),
            (u64::MAX, 1, "ffffffffffffffff"),
            (u64::MAX, 16, "ffffffffffffffff"),
            (1, 40, "0000000000000001"),
            (0x0123_4567_89ab_cdef, 16, "0123456789abcdef"),
        ];
        for &(value, min_digits, text) in cases {
            assert_eq!(Hex::new(value, min_digits).as_str(), text, "{value:x}");
            assert_eq!(
                format!("{value:0width$x}", width = min_digits.min(16) as usize),
                text
            );
        }
    }
}
