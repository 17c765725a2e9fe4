//! Entity tags: the weak ETag of a JSON response body, and `If-None-Match` matching for
//! every response that carries an ETag (the API's JSON and the static files).
//!
//! It must stay cheap: the body's tag is computed on every JSON response, so it hashes
//! without SipHash and writes hex without the formatting machinery.

use http::header::IF_NONE_MATCH;
use http::HeaderMap;

use crate::edge::hex::Hex;

/// The weak ETag of a JSON response body: `W/"<length in hex>-<hash in 16 hex digits>"`,
/// written without the formatting machinery (this runs on every JSON response).
pub fn body_etag(body: &[u8]) -> String {
    let mut tag = String::with_capacity(40);
    tag.push_str("W/\"");
    tag.push_str(Hex::new(body.len() as u64, 1).as_str());
    tag.push('-');
    tag.push_str(Hex::new(body_hash(body), 16).as_str());
    tag.push('"');
    tag
}

/// Whether `If-None-Match` names `etag` (weak comparison, as RFC 9110 asks for GET) or is
/// `*`. Malformed entries simply do not match.
pub fn matches_if_none_match(request_headers: &HeaderMap, etag: &[u8]) -> bool {
    let ours = strip_weak(etag);
    request_headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(|tag| tag.trim_ascii())
        .any(|tag| tag == b"*" || strip_weak(tag) == ours)
}

fn strip_weak(tag: &[u8]) -> &[u8] {
    tag.strip_prefix(b"W/").unwrap_or(tag)
}

/// A fast 64-bit hash of a response body for its weak ETag. SipHash's resistance to
/// chosen collisions buys nothing here, where a collision only costs a client one stale
/// 304 of its own school's data. Four independent lanes take 32 bytes per step, so the
/// multiplies overlap instead of waiting on each other (one lane of 8 bytes was 1.5% of
/// tenant-edge's CPU on the 3 kB week list).
fn body_hash(body: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    fn mix(lane: u64, word: u64) -> u64 {
        (lane.rotate_left(5) ^ word).wrapping_mul(K)
    }
    fn word(bytes: &[u8]) -> u64 {
        u64::from_le_bytes(bytes.try_into().unwrap_or([0; 8]))
    }
    let mut lanes: [u64; 4] = [body.len() as u64, 1, 2, 3];
    let mut blocks = body.chunks_exact(32);
    for block in &mut blocks {
        for (lane, bytes) in lanes.iter_mut().zip(block.chunks_exact(8)) {
            *lane = mix(*lane, word(bytes));
        }
    }
    let mut hash = lanes.iter().fold(0u64, |hash, &lane| mix(hash, lane));
    let mut words = blocks.remainder().chunks_exact(8);
    for bytes in &mut words {
        hash = mix(hash, word(bytes));
    }
    for &byte in words.remainder() {
        hash = mix(hash, u64::from(byte));
    }
    // Final avalanche, so that a change in the last bytes reaches every bit.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^ (hash >> 33)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn etag_is_length_and_hash_in_hex() {
        for body in [&b""[..], b"x", &[7u8; 3100]] {
            let expected = format!("W/\"{:x}-{:016x}\"", body.len(), body_hash(body));
            assert_eq!(body_etag(body), expected);
        }
    }

    #[test]
    fn every_byte_of_a_long_body_changes_the_etag_hash() {
        // Longer than one 32-byte block, with a tail that is neither whole blocks nor words.
        let body: Vec<u8> = (0..203u32).map(|i| (i * 7 % 251) as u8).collect();
        let base = body_hash(&body);
        for position in 0..body.len() {
            let mut changed = body.clone();
            changed[position] ^= 0x80;
            assert_ne!(body_hash(&changed), base, "byte {position}");
        }
        // The same words in other lanes are a different body.
        let mut swapped = body.clone();
        swapped[..16].rotate_left(8);
        assert_ne!(body_hash(&swapped), base);
    }

    #[test]
    fn every_byte_changes_the_etag_hash() {
        let body: Vec<u8> =
            br#"[{"lunchWeekId":1,"weekOf":"2020-01-06","isPublished":true}]"#.to_vec();
        let base = body_hash(&body);
        assert_eq!(base, body_hash(&body.clone()), "deterministic");
        for position in 0..body.len() {
            let mut changed = body.clone();
            changed[position] ^= 1;
            assert_ne!(body_hash(&changed), base, "byte {position}");
        }
        assert_ne!(body_hash(b""), body_hash(b"\0"));
        assert_ne!(body_hash(b"true"), body_hash(b"false"));
    }

    #[test]
    fn if_none_match_compares_weakly_and_accepts_a_list_or_star() {
        let ours = br#"W/"1f-abc""#;
        // (If-None-Match values, matches)
        let cases: &[(&[&str], bool)] = &[
            (&[r#"W/"1f-abc""#], true),
            (&[r#""1f-abc""#], true),
            (&["*"], true),
            (&[r#"W/"other", W/"1f-abc""#], true),
            (&[r#"W/"other""#, r#""1f-abc""#], true),
            (&[r#"  W/"1f-abc"  "#], true),
            (&[r#"W/"other""#], false),
            (&[r#"W/"1f-ab""#], false),
            (&["garbage"], false),
            (&[""], false),
            (&[], false),
        ];
        for (values, expected) in cases {
            let mut headers = HeaderMap::new();
            for value in *values {
                headers.append(IF_NONE_MATCH, HeaderValue::from_str(value).unwrap());
            }
            assert_eq!(
                matches_if_none_match(&headers, ours),
                *expected,
                "{values:?}"
            );
        }
    }
}
