//! Request ids: the `X-Request-Id` a request is logged under and answered with.
//!
//! This module owns which incoming ids are accepted and how new ones are made. An
//! incoming id is kept only when it is 1..=64 bytes of `[A-Za-z0-9._:-]`, so a client can
//! correlate its own logs with ours but can never place other text (CR LF, markup, quotes)
//! in our logs, headers or JSON bodies; anything else is replaced, never echoed. It must not
//! log, read the clock, or make a system call per request: a generated id is one atomic
//! increment and a few multiplications, and a [`RequestId`] is `Copy` with no heap.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use http::HeaderValue;

use crate::edge::hex::Hex;

/// The longest accepted incoming id, in bytes.
pub const MAX_REQUEST_ID_BYTES: usize = 64;

/// The length of a generated id: 16 lowercase hex digits (64 bits).
const GENERATED_LEN: usize = 16;

/// A request id, valid by construction: 1..=64 bytes of `[A-Za-z0-9._:-]`. Stored inline,
/// so it is `Copy` and can be handed to logs, the error body and the response header
/// without allocating.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId {
    bytes: [u8; MAX_REQUEST_ID_BYTES],
    len: u8,
}

/// The incoming `X-Request-Id` if it is acceptable, else a freshly generated id.
pub fn accept_or_generate(header: Option<&HeaderValue>) -> RequestId {
    header
        .and_then(|value| RequestId::parse(value.as_bytes()))
        .unwrap_or_else(RequestId::generate)
}

impl RequestId {
    /// `bytes` as an id if it is 1..=64 bytes of `[A-Za-z0-9._:-]`.
    pub fn parse(bytes: &[u8]) -> Option<RequestId> {
        let acceptable = (1..=MAX_REQUEST_ID_BYTES).contains(&bytes.len())
            && bytes.iter().all(|&b| is_id_byte(b));
        if !acceptable {
            return None;
        }
        let mut id = RequestId {
            bytes: [0; MAX_REQUEST_ID_BYTES],
            // Fits: the length was checked against 64 above.
            len: bytes.len() as u8,
        };
        id.bytes[..bytes.len()].copy_from_slice(bytes);
        Some(id)
    }

    /// A new id, unique within this process: 16 lowercase hex digits.
    ///
    /// A process-wide counter goes through a bijection of the 64-bit integers (the
    /// SplitMix64 finalizer) after adding a per-process random key: distinct counts give
    /// distinct ids for 2^64 requests, ids do not reveal the request rate, and two processes
    /// almost surely produce different sequences. The key is drawn once; after that no
    /// request makes a system call.
    pub fn generate() -> RequestId {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        static KEY: OnceLock<u64> = OnceLock::new();
        let key = *KEY.get_or_init(rand::random::<u64>);
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut id = RequestId {
            bytes: [0; MAX_REQUEST_ID_BYTES],
            len: GENERATED_LEN as u8,
        };
        let digits = Hex::new(mix(count.wrapping_add(key)), GENERATED_LEN as u32);
        id.bytes[..GENERATED_LEN].copy_from_slice(digits.as_bytes());
        id
    }

    pub fn as_str(&self) -> &str {
        // Always ASCII by construction; the fallback only avoids a panic path.
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The id as a header value, for `X-Request-Id` on the response.
    pub fn to_header_value(&self) -> HeaderValue {
        // Every id byte is visible ASCII, which a header value always accepts.
        HeaderValue::from_bytes(self.as_bytes()).unwrap_or(HeaderValue::from_static("-"))
    }
}

impl From<RequestId> for HeaderValue {
    fn from(id: RequestId) -> HeaderValue {
        id.to_header_value()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({:?})", self.as_str())
    }
}

fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')
}

/// The SplitMix64 finalizer: a bijection on u64 that scatters consecutive inputs.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn is_generated(id: &RequestId) -> bool {
        id.as_str().len() == GENERATED_LEN
            && id
                .as_bytes()
                .iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    }

    #[test]
    fn accepts_only_well_formed_ids() {
        let max = "a".repeat(MAX_REQUEST_ID_BYTES);
        let over = "a".repeat(MAX_REQUEST_ID_BYTES + 1);
        // (incoming bytes, accepted as is)
        let cases: &[(&[u8], bool)] = &[
            (b"abc", true),
            (b"A-z_0.9:x", true),
            (b"7f3e2b1c-aaaa-bbbb-cccc-0123456789ab", true),
            (b"x", true),
            (max.as_bytes(), true),
            (b"", false),
            (over.as_bytes(), false),
            (b"a b", false),
            (b"a\tb", false),
            (b"<script>", false),
            (b"a\"b", false),
            (b"a/b", false),
            (b"a%0d%0ab", false),
            (b"caf\xc3\xa9", false),
            (b"\xff", false),
        ];
        for (i, (incoming, accepted)) in cases.iter().enumerate() {
            let header = HeaderValue::from_bytes(incoming).ok();
            let id = accept_or_generate(header.as_ref());
            if *accepted {
                assert_eq!(id.as_bytes(), *incoming, "case {i}");
            } else {
                assert_ne!(id.as_bytes(), *incoming, "case {i}");
                assert!(is_generated(&id), "case {i}: {id}");
            }
        }
    }

    #[test]
    fn injected_text_is_never_echoed() {
        // CR LF cannot be a HeaderValue, but parse sees raw bytes from anywhere.
        for raw in [&b"a\r\nb"[..], b"a\nX-Evil: 1", b"<script>", b"a\0b"] {
            assert!(RequestId::parse(raw).is_none(), "{raw:?}");
        }
        assert!(is_generated(&accept_or_generate(None)));
    }

    #[test]
    fn generated_ids_are_unique_and_hex() {
        let mut seen = HashSet::with_capacity(100_000);
        for _ in 0..100_000 {
            let id = RequestId::generate();
            assert!(is_generated(&id), "{id}");
            assert!(seen.insert(id), "duplicate {id}");
        }
    }

    #[test]
    fn converts_to_a_header_value_and_text() {
        let id = RequestId::parse(b"req-1").unwrap();
        assert_eq!(HeaderValue::from(id), "req-1");
        assert_eq!(id.to_string(), "req-1");
        assert_eq!(format!("{id:?}"), "RequestId(\"req-1\")");
    }

    #[test]
    fn mix_is_a_bijection_on_a_sample() {
        // Distinct inputs near zero, near the top and around a typical key stay distinct.
        let inputs = (0..10_000u64)
            .chain(u64::MAX - 10_000..=u64::MAX)
            .chain((0..10_000u64).map(|i| i.wrapping_add(0x8000_0000_0000_0000)));
        let mut seen = HashSet::new();
        for x in inputs {
            assert!(seen.insert(mix(x)));
        }
    }
}
