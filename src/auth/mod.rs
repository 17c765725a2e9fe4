//! Authentication: turns an `Authorization: Bearer <JWT>` header into the [`Principal`]
//! (the school's database name) the request is served for.
//!
//! Owns the [`Authenticator`]: the validation rules built from `AuthConfig`, the current
//! key set (swapped whole on refresh), the refetch-on-unknown-kid logic and the
//! verified-token cache. It must not look the school up in the catalog (that is the
//! caller's next step), must not choose a status code or response text beyond
//! [`AuthError::is_forbidden`] and [`AuthError::reason`], and must never take the accepted
//! algorithm or a key location from the token itself (see HARDENING.md, JWT).

mod dev_token;
mod jwks;
mod refetch_budget;
mod token_cache;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::config::{is_hmac, AuthConfig};

pub use dev_token::{sign_dev_token, SCHOOL_NAME_CLAIM};
pub use jwks::{JwksError, MAX_JWKS_BYTES};
use jwks::{JwksSource, KeyLookup, KeySet};
use refetch_budget::RefetchBudget;
use token_cache::TokenCache;

/// The first retry of a key set that was never fetched; each failure doubles it up to
/// [`FIRST_FETCH_RETRY_MAX`]. Until the first fetch succeeds /readyz answers 503, so the
/// retries are quick: the regular refresh interval (minutes) would keep the replica out
/// of service long after the identity provider is back.
const FIRST_FETCH_RETRY: Duration = Duration::from_secs(1);
const FIRST_FETCH_RETRY_MAX: Duration = Duration::from_secs(30);

/// Tokens longer than this are refused before any decoding. Real tokens are well under
/// 2 KiB; the cap bounds the work (base64, JSON, cache memory) a stranger can cause.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Who a verified token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The value of the configured tenant claim: the school's database name.
    pub school_database: Box<str>,
    /// The token's `exp`, in unix seconds.
    pub expires_at: u64,
}

/// What the verified-token cache did for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheLookup {
    /// The token was found, already verified.
    Hit,
    /// The token was looked up, not found, and verified in full.
    Miss,
    /// The cache was not consulted: it is off, or the header held no token.
    NotAsked,
}

/// Why a request is not authenticated. The text is ours, short and safe to show; no
/// jsonwebtoken, IO or key detail is ever in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing authorization header")]
    Missing,
    #[error("authorization scheme is not bearer")]
    BadScheme,
    #[error("token is too large")]
    TooLarge,
    #[error("malformed token")]
    Malformed,
    #[error("invalid token signature")]
    BadSignature,
    #[error("token signed with an unknown key")]
    UnknownKey,
    #[error("token has expired")]
    Expired,
    #[error("token is not yet valid")]
    NotYetValid,
    #[error("token has the wrong issuer")]
    WrongIssuer,
    #[error("token has the wrong audience")]
    WrongAudience,
    #[error("token algorithm is not allowed")]
    AlgorithmNotAllowed,
    #[error("token names no school")]
    NoSchoolClaim,
    #[error("signing keys are not available")]
    KeysUnavailable,
}

impl AuthError {
    /// Every variant in declaration order, so `error as usize` is its position here (the
    /// metrics registry counts rejections by it and checks that at compile time).
    pub const ALL: [AuthError; 13] = [
        AuthError::Missing,
        AuthError::BadScheme,
        AuthError::TooLarge,
        AuthError::Malformed,
        AuthError::BadSignature,
        AuthError::UnknownKey,
        AuthError::Expired,
        AuthError::NotYetValid,
        AuthError::WrongIssuer,
        AuthError::WrongAudience,
        AuthError::AlgorithmNotAllowed,
        AuthError::NoSchoolClaim,
        AuthError::KeysUnavailable,
    ];

    /// A stable snake_case label for metrics and logs.
    pub const fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::BadScheme => "bad_scheme",
            AuthError::TooLarge => "too_large",
            AuthError::Malformed => "malformed",
            AuthError::BadSignature => "bad_signature",
            AuthError::UnknownKey => "unknown_key",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::WrongIssuer => "wrong_issuer",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::AlgorithmNotAllowed => "algorithm_not_allowed",
            AuthError::NoSchoolClaim => "no_school_claim",
            AuthError::KeysUnavailable => "keys_unavailable",
        }
    }

    /// True only for a token that is valid but names no school: the caller is known, and
    /// not allowed in (403). Every other error means "we do not know who you are" (401).
    pub fn is_forbidden(&self) -> bool {
        matches!(self, AuthError::NoSchoolClaim)
    }
}

/// Why an [`Authenticator`] could not be built from configuration.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("auth.jwks_file {path}: {source}")]
    JwksFile {
        path: PathBuf,
        #[source]
        source: JwksError,
    },
    #[error("auth.jwks_url {url:?} is not a valid URL")]
    JwksUrl { url: String },
    #[error("auth.jwks_ca_file: {0}")]
    JwksCa(#[source] rustls::Error),
}

/// Verifies bearer tokens. One per configuration: a reload builds a new one (with an
/// empty cache) and swaps it in. Shared as `Arc<Authenticator>`.
pub struct Authenticator {
    /// One `Validation` per configured algorithm, each accepting exactly that algorithm:
    /// jsonwebtoken requires every algorithm of a `Validation` to match the key's family.
    validations: Vec<(Algorithm, Validation)>,
    /// The HMAC key (`auth.hs256_secret`), present only when an HS algorithm is configured.
    hmac_key: Option<DecodingKey>,
    /// The claim that names the school, looked up as a literal key.
    tenant_claim: Box<str>,
    /// The current key set, replaced whole by a successful refresh; a failed one keeps it.
    keys: ArcSwap<KeySet>,
    /// True once a key set was loaded, or when none is needed.
    keys_ready: AtomicBool,
    /// `auth.jwks_url` or `auth.jwks_file`; `None` when neither is set.
    source: Option<JwksSource>,
    /// Serializes key set loads (single flight). Holds how many more loads unknown kids
    /// may cause (`auth.jwks_refetch_cooldown` earns one back).
    refetch: tokio::sync::Mutex<RefetchBudget>,
    /// Counts finished loads, so a request that waited for someone else's load can tell
    /// and use its result instead of loading again.
    loads: AtomicU64,
    refresh_interval: Duration,
    cache: Option<TokenCache>,
}

impl Authenticator {
    /// Builds from configuration. Reads `jwks_file` now (error naming the file if
    /// unreadable/invalid). With `jwks_url`, starts with no keys; the caller awaits
    /// [`refresh_keys`](Self::refresh_keys) at startup.
    pub fn new(config: &AuthConfig) -> Result<Self, AuthSetupError> {
        let leeway = config.leeway.as_secs();
        let validations = config
            .algorithms
            .iter()
            .map(|algorithm| {
                let mut validation = Validation::new(*algorithm);
                validation.algorithms = vec![*algorithm];
                // Without these three in the required list, jsonwebtoken accepts a token
                // whose iss/aud is missing, null or a number (HARDENING.md).
                validation.set_required_spec_claims(&["exp", "iss", "aud"]);
                validation.set_issuer(&[config.issuer.as_str()]);
                validation.set_audience(&[config.audience.as_str()]);
                validation.leeway = leeway;
                validation.validate_exp = true;
                validation.validate_nbf = true;
                (*algorithm, validation)
            })
            .collect();
        let hmac_key = if config.algorithms.iter().any(|alg| is_hmac(*alg)) {
            config
                .hs256_secret
                .as_ref()
                .map(|secret| DecodingKey::from_secret(secret.expose().as_bytes()))
        } else {
            None
        };
        let wants_keys = config.algorithms.iter().any(|alg| !is_hmac(*alg));
        let (source, keys, ready) = match (&config.jwks_file, &config.jwks_url) {
            (Some(path), _) => {
                let keys = jwks::read_file(path).map_err(|source| AuthSetupError::JwksFile {
                    path: path.clone(),
                    source,
                })?;
                (Some(JwksSource::File(path.clone())), keys, true)
            }
            (None, Some(url)) => {
                let source =
                    JwksSource::for_url(url, &config.jwks_ca_certs).map_err(|err| match err {
                        jwks::UrlSourceError::Uri => AuthSetupError::JwksUrl { url: url.clone() },
                        jwks::UrlSourceError::Roots(err) => AuthSetupError::JwksCa(err),
                    })?;
                // Ready at once if no configured algorithm needs the fetched keys.
                (Some(source), KeySet::empty(), !wants_keys)
            }
            // Nothing to load: public-key tokens are rejected (config warned about it), and
            // readiness must not wait for keys that will never come.
            (None, None) => (None, KeySet::empty(), true),
        };
        Ok(Self {
            validations,
            hmac_key,
            tenant_claim: config.tenant_claim.as_str().into(),
            keys: ArcSwap::from_pointee(keys),
            keys_ready: AtomicBool::new(ready),
            source,
            refetch: tokio::sync::Mutex::new(RefetchBudget::new(
                config.jwks_refetch_cooldown,
                Instant::now(),
            )),
            loads: AtomicU64::new(0),
            refresh_interval: config.jwks_refresh_interval,
            cache: TokenCache::new(config.token_cache_capacity),
        })
    }

    /// The hot path. `authorization` is the raw Authorization header value, if any.
    pub async fn authenticate(
        &self,
        authorization: Option<&[u8]>,
    ) -> Result<Arc<Principal>, AuthError> {
        self.authenticate_counted(authorization).await.0
    }

    /// [`authenticate`](Self::authenticate), also saying whether the verified-token cache
    /// answered, so the caller can count hits and misses in metrics that outlive this
    /// `Authenticator` (a reload replaces it).
    pub async fn authenticate_counted(
        &self,
        authorization: Option<&[u8]>,
    ) -> (Result<Arc<Principal>, AuthError>, CacheLookup) {
        let token = match bearer_token(authorization) {
            Ok(token) => token,
            Err(err) => return (Err(err), CacheLookup::NotAsked),
        };
        let now = unix_now();
        let Some(cache) = &self.cache else {
            return (
                self.verify_and_remember(token, now).await,
                CacheLookup::NotAsked,
            );
        };
        if let Some(principal) = cache.get(token, now) {
            return (Ok(principal), CacheLookup::Hit);
        }
        (
            self.verify_and_remember(token, now).await,
            CacheLookup::Miss,
        )
    }

    /// Full verification of a token the cache does not know (the only place that needs
    /// it as text).
    async fn verify_and_remember(
        &self,
        token: &[u8],
        now: u64,
    ) -> Result<Arc<Principal>, AuthError> {
        let text = std::str::from_utf8(token).map_err(|_| AuthError::Malformed)?;
        let principal = Arc::new(self.verify(text).await?);
        if let Some(cache) = &self.cache {
            cache.insert(token, principal.clone(), now);
        }
        Ok(principal)
    }

    /// Re-reads `jwks_file` or fetches `jwks_url`; on failure keeps the last good key set.
    pub async fn refresh_keys(&self) -> Result<(), JwksError> {
        let Some(source) = &self.source else {
            return Ok(());
        };
        let _guard = self.refetch.lock().await;
        self.load_keys(source).await
    }

    /// True once a key set has been loaded (or none is needed: HS only).
    pub fn keys_ready(&self) -> bool {
        self.keys_ready.load(Ordering::Acquire)
    }

    /// Background refresh until `shutdown` is cancelled: while no key set was ever
    /// loaded, at once and then with a backoff from [`FIRST_FETCH_RETRY`] to
    /// [`FIRST_FETCH_RETRY_MAX`]; after that every `jwks_refresh_interval`. The task holds
    /// only a weak reference, so it also ends once the Authenticator is dropped (a reload
    /// replaced it).
    pub fn spawn_refresher(
        self: &Arc<Self>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let this: Weak<Self> = Arc::downgrade(self);
        let interval = self.refresh_interval;
        let has_source = self.source.is_some();
        tokio::spawn(async move {
            if !has_source {
                shutdown.cancelled().await;
                return;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = Self::fetch_first_set(this.clone()) => {}
            }
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(interval) => {}
                }
                let Some(authenticator) = this.upgrade() else {
                    return;
                };
                // A fetch can take up to its timeout; shutdown does not wait for it. The
                // failure is already logged by `load_keys`.
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = authenticator.refresh_keys() => {}
                }
            }
        })
    }

    /// Retries the first load with backoff until a key set is in (or the Authenticator is
    /// gone). Returns at once when one already is.
    async fn fetch_first_set(this: Weak<Self>) {
        let mut delay = FIRST_FETCH_RETRY;
        loop {
            let Some(authenticator) = this.upgrade() else {
                return;
            };
            if authenticator.keys_ready() {
                return;
            }
            if let Err(err) = authenticator.refresh_keys().await {
                tracing::error!(error = %error_chain(&err), retry_in = ?delay, "no JWT key set yet: fetching it failed; retrying");
            }
            drop(authenticator);
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(FIRST_FETCH_RETRY_MAX);
        }
    }

    /// Loads the set from `source` and swaps it in. The caller holds `self.refetch`, so
    /// loads never overlap.
    async fn load_keys(&self, source: &JwksSource) -> Result<(), JwksError> {
        let result = source.load().await;
        self.loads.fetch_add(1, Ordering::AcqRel);
        match result {
            Ok(keys) => {
                tracing::info!(origin = %source.origin(), keys = keys.len(), "loaded the JWT key set");
                self.keys.store(Arc::new(keys));
                self.keys_ready.store(true, Ordering::Release);
                Ok(())
            }
            Err(err) => {
                tracing::warn!(error = %error_chain(&err), kept_keys = self.keys.load().len(), "JWT key set refresh failed; keeping the last good set");
                Err(err)
            }
        }
    }

    /// A token named a key we do not have: maybe the provider rotated. Reload the set
    /// while the refetch budget allows, and only one load for any number of such
    /// requests. `loads_seen` is the load count read before the caller looked at the set.
    async fn refetch_for_unknown_key(&self, loads_seen: u64) {
        let Some(source) = &self.source else {
            return;
        };
        let mut budget = self.refetch.lock().await;
        if self.loads.load(Ordering::Acquire) != loads_seen {
            // A load finished since the caller looked at the set (possibly while we
            // waited for the lock): use its result instead of loading again.
            return;
        }
        if !budget.try_take(Instant::now()) {
            return;
        }
        let _ = self.load_keys(source).await;
    }

    /// Full verification of a token that is not in the cache.
    async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let header = peek_header(token)?;
        // The accepted algorithms come from configuration only; the header merely says
        // which of them this token claims, and must be one of them.
        let algorithm =
            Algorithm::from_str(&header.alg).map_err(|_| AuthError::AlgorithmNotAllowed)?;
        let validation = self
            .validations
            .iter()
            .find(|(allowed, _)| *allowed == algorithm)
            .map(|(_, validation)| validation)
            .ok_or(AuthError::AlgorithmNotAllowed)?;
        let claims = if is_hmac(algorithm) {
            let key = self
                .hmac_key
                .as_ref()
                .ok_or(AuthError::AlgorithmNotAllowed)?;
            decode::<Map<String, Value>>(token, key, validation)
        } else {
            let keys = self.key_set_with(header.kid.as_deref()).await?;
            let KeyLookup::Found(index) = keys.find(header.kid.as_deref()) else {
                return Err(AuthError::UnknownKey);
            };
            let Some(key) = keys.get(index) else {
                return Err(AuthError::UnknownKey);
            };
            // A key that declares its algorithm is used with that algorithm only, and an
            // RSA key never verifies an EC token (or the other way round).
            if key.family != algorithm.family() || key.algorithm.is_some_and(|alg| alg != algorithm)
            {
                return Err(AuthError::AlgorithmNotAllowed);
            }
            decode::<Map<String, Value>>(token, &key.key, validation)
        }
        .map_err(|err| {
            let error = classify(&err);
            tracing::debug!(reason = error.reason(), detail = %err, "token rejected");
            error
        })?
        .claims;
        self.principal_from(&claims)
    }

    /// The key set that holds the token's key, after at most one refetch.
    async fn key_set_with(&self, kid: Option<&str>) -> Result<Arc<KeySet>, AuthError> {
        // Read before the set: a load that lands in between then counts as "already
        // refetched" rather than causing a second fetch.
        let loads_seen = self.loads.load(Ordering::Acquire);
        let keys = self.keys.load_full();
        match keys.find(kid) {
            KeyLookup::Found(_) => return Ok(keys),
            KeyLookup::Ambiguous => return Err(AuthError::UnknownKey),
            KeyLookup::Unknown => {}
        }
        self.refetch_for_unknown_key(loads_seen).await;
        let keys = self.keys.load_full();
        match keys.find(kid) {
            KeyLookup::Found(_) => Ok(keys),
            _ if keys.is_empty() => Err(AuthError::KeysUnavailable),
            _ => Err(AuthError::UnknownKey),
        }
    }

    /// Checks jsonwebtoken leaves to us and reads the school.
    fn principal_from(&self, claims: &Map<String, Value>) -> Result<Principal, AuthError> {
        // jsonwebtoken accepts an array issuer; ours is one string.
        if !matches!(claims.get("iss"), Some(Value::String(_))) {
            return Err(AuthError::WrongIssuer);
        }
        let audience_ok = match claims.get("aud") {
            Some(Value::String(_)) => true,
            Some(Value::Array(items)) => !items.is_empty() && items.iter().all(Value::is_string),
            _ => false,
        };
        if !audience_ok {
            return Err(AuthError::WrongAudience);
        }
        let expires_at = claims
            .get("exp")
            .and_then(numeric_date)
            .ok_or(AuthError::Malformed)?;
        // A literal key: claim names are URLs full of dots and slashes, never paths.
        let school = match claims.get(&*self.tenant_claim) {
            Some(Value::String(school)) if !school.is_empty() => school,
            _ => return Err(AuthError::NoSchoolClaim),
        };
        Ok(Principal {
            school_database: school.as_str().into(),
            expires_at,
        })
    }
}

/// The token of an `Authorization: Bearer <token>` value, length-checked before anything
/// else looks at it. Bytes: the verified-token cache is asked first, and a hit needs no
/// UTF-8 check (`verify_and_remember` makes it text).
fn bearer_token(authorization: Option<&[u8]>) -> Result<&[u8], AuthError> {
    let value = match authorization {
        None => return Err(AuthError::Missing),
        Some(value) if value.trim_ascii().is_empty() => return Err(AuthError::Missing),
        Some(value) => value.trim_ascii(),
    };
    const SCHEME: &[u8] = b"bearer";
    let scheme_matches = value.len() > SCHEME.len()
        && value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME)
        && value[SCHEME.len()] == b' ';
    if !scheme_matches {
        return Err(AuthError::BadScheme);
    }
    let token = value[SCHEME.len()..].trim_ascii_start();
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::TooLarge);
    }
    if token.is_empty() {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

/// The two header fields we read ourselves: which configured algorithm the token claims,
/// and which key it names. Everything else in the header (jku, x5u, jwk, x5c) is ignored.
#[derive(Deserialize)]
struct PeekedHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    /// Extensions the token says a verifier must understand. We understand none, so any
    /// `crit` is a rejection (RFC 7515 4.1.11); jsonwebtoken would silently ignore it.
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

/// Reads the header without trusting it. Done here rather than with
/// `jsonwebtoken::decode_header` so an `alg` jsonwebtoken does not know (`none`) is
/// reported as a disallowed algorithm rather than as a parse error.
fn peek_header(token: &str) -> Result<PeekedHeader, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed);
    };
    let json = base64url_decode(header.as_bytes()).ok_or(AuthError::Malformed)?;
    let header: PeekedHeader = serde_json::from_slice(&json).map_err(|_| AuthError::Malformed)?;
    if header.crit.is_some() {
        return Err(AuthError::Malformed);
    }
    Ok(header)
}

/// Unpadded base64url, as JWTs use it (RFC 7515 2): padding, characters outside the
/// URL-safe alphabet and non-zero trailing bits are refused, as jsonwebtoken does for
/// the segments it decodes.
fn base64url_decode(input: &[u8]) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(input).ok()
}

/// `exp` as jsonwebtoken reads it: a non-negative integer, or a finite float rounded.
fn numeric_date(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && *f < u64::MAX as f64)
            .map(|f| f.round() as u64)
    })
}

/// Maps jsonwebtoken's error to ours; its text stays in debug logs.
fn classify(err: &jsonwebtoken::errors::Error) -> AuthError {
    match err.kind() {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidKeyFormat => AuthError::BadSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) | ErrorKind::InvalidClaimFormat(claim) => {
            match claim.as_str() {
                "iss" => AuthError::WrongIssuer,
                "aud" => AuthError::WrongAudience,
                _ => AuthError::Malformed,
            }
        }
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName => AuthError::AlgorithmNotAllowed,
        _ => AuthError::Malformed,
    }
}

/// An error and its sources, `: `-separated: a TLS failure is only in the source of the
/// HTTP client's error ("client error (Connect)"), and an operator needs to read it.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Unix seconds; a clock before 1970 (a broken host) reads as 0 rather than panicking.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
