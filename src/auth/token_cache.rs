//! The verified-token cache: full token string -> the [`Principal`] it proved, until the
//! token's `exp`.
//!
//! Owns only the bounded map and the expiry check on lookup. It must not verify anything,
//! must only ever be given tokens that passed every check, and must not outlive its
//! `Authenticator`: a configuration reload (new audience, issuer or keys) builds a new,
//! empty cache, so old tokens are checked again under the new rules at once.

use std::sync::Arc;

use quick_cache::sync::Cache;

use super::Principal;

pub struct TokenCache {
    // Keyed by the whole token, not a hash of it: two different tokens can never share an
    // entry, and quick_cache looks a `Box<[u8]>` key up by `&[u8]` (its `Equivalent` trait
    // through `Borrow<[u8]>`), so a hit allocates nothing. Bytes, not `str`: a hit then
    // needs no UTF-8 check of the ~700-byte header value either (only a miss, which goes
    // on to verification, needs the text). The memory bound is capacity times the 8 KiB
    // token cap.
    entries: Cache<Box<[u8]>, Arc<Principal>>,
}

impl TokenCache {
    /// `None` when `capacity` is 0: caching is off and every request is verified.
    pub fn new(capacity: usize) -> Option<Self> {
        (capacity > 0).then(|| Self {
            entries: Cache::new(capacity),
        })
    }

    /// The principal of an already verified token, while `now` (unix seconds) is before its
    /// `exp`. An expired entry is removed and never returned: the token then goes through
    /// full verification, which rejects it.
    pub fn get(&self, token: &[u8], now: u64) -> Option<Arc<Principal>> {
        let principal = self.entries.get(token)?;
        if now < principal.expires_at {
            Some(principal)
        } else {
            self.entries.remove(token);
            None
        }
    }

    /// Remembers a verified token. A token already past its `exp` (accepted only thanks to
    /// the leeway) is not stored, so the cache never extends a token's life.
    pub fn insert(&self, token: &[u8], principal: Arc<Principal>, now: u64) {
        if now < principal.expires_at {
            self.entries.insert(token.into(), principal);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(expires_at: u64) -> Arc<Principal> {
        Arc::new(Principal {
            school_database: "pinewood".into(),
            expires_at,
        })
    }

    #[test]
    fn zero_capacity_disables_the_cache() {
        assert!(TokenCache::new(0).is_none());
    }

    #[test]
    fn entries_live_until_exp_only() {
        let cache = TokenCache::new(10).unwrap();
        cache.insert(b"a.b.c", principal(100), 50);
        assert_eq!(cache.get(b"a.b.c", 99).unwrap().expires_at, 100);
        assert!(cache.get(b"a.b.c", 100).is_none());
        // The expired entry was dropped, not just hidden.
        assert_eq!(cache.len(), 0);
        assert!(cache.get(b"a.b.c", 50).is_none());
    }

    #[test]
    fn already_expired_tokens_are_not_stored() {
        let cache = TokenCache::new(10).unwrap();
        cache.insert(b"a.b.c", principal(100), 100);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = TokenCache::new(8).unwrap();
        for i in 0..100 {
            cache.insert(format!("token-{i}").as_bytes(), principal(1_000), 0);
        }
        assert!(cache.len() <= 8, "{}", cache.len());
    }
}
