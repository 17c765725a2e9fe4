//! The JSON Web Key Set: parsing it, reading it from `auth.jwks_file`, fetching it from
//! `auth.jwks_url` over HTTP or HTTPS.
//!
//! Owns the [`KeySet`] (verification keys indexed by `kid`) and the small HTTP client that
//! fetches it. It must not decide whether a token is valid (that is `auth::Authenticator`),
//! must never fetch a URL that came from a token (`jku`, `x5u`), and must not panic on any
//! input: a JWKS is data from the network.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;
use serde::Deserialize;

/// A key set larger than this is refused: real sets are a few KiB, and the cap keeps a
/// misbehaving endpoint from filling memory.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// The whole fetch (connect, TLS, headers, body) must finish within this.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a key set could not be loaded. `origin` is the file or URL, for the operator.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("{origin}: cannot read the key set: {source}")]
    Read {
        origin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: the key set is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge { origin: String },
    #[error("{origin}: not a JSON Web Key Set: {source}")]
    Json {
        origin: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{origin}: the key set has no usable signature verification key")]
    NoUsableKeys { origin: String },
    #[error("{origin}: answered with status {status}")]
    Status {
        origin: String,
        status: http::StatusCode,
    },
    #[error("{origin}: no complete answer within {FETCH_TIMEOUT:?}")]
    Timeout { origin: String },
    #[error("{origin}: request failed: {source}")]
    Request {
        origin: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("{origin}: reading the answer failed: {source}")]
    Body {
        origin: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// One usable verification key.
pub struct VerifyingKey {
    pub kid: Option<String>,
    /// The `alg` the JWK declares, if any: a token using this key must use exactly it.
    pub algorithm: Option<Algorithm>,
    pub family: AlgorithmFamily,
    pub key: DecodingKey,
}

/// What a `kid` lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLookup {
    Found(usize),
    /// No key has this kid (or the set is empty): a refetch may help.
    Unknown,
    /// The token names no kid and the set has several keys: guessing is not allowed.
    Ambiguous,
}

/// The verification keys of one JWKS document. Immutable once built; replaced whole.
#[derive(Default)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
    by_kid: HashMap<String, usize>,
}

impl KeySet {
    pub fn empty() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn get(&self, index: usize) -> Option<&VerifyingKey> {
        self.keys.get(index)
    }

    /// Selects a key by the token's `kid`, a plain map lookup. A token without a kid is
    /// accepted only when there is exactly one key, so a rotation (two keys) never makes
    /// us try keys one after another.
    pub fn find(&self, kid: Option<&str>) -> KeyLookup {
        match kid {
            Some(kid) => match self.by_kid.get(kid) {
                Some(index) => KeyLookup::Found(*index),
                None => KeyLookup::Unknown,
            },
            None => match self.keys.len() {
                0 => KeyLookup::Unknown,
                1 => KeyLookup::Found(0),
                _ => KeyLookup::Ambiguous,
            },
        }
    }

    /// Parses a JWKS document. Keys that cannot verify signatures (encryption keys,
    /// symmetric keys, unknown types or algorithms, broken parameters) are skipped with a
    /// warning rather than failing the set, because providers publish such keys beside
    /// the signing ones. A set left with no usable key is an error, so the caller keeps
    /// its last good set.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Self, JwksError> {
        #[derive(Deserialize)]
        struct RawSet {
            keys: Vec<serde_json::Value>,
        }
        let raw: RawSet = serde_json::from_slice(bytes).map_err(|source| JwksError::Json {
            origin: origin.to_string(),
            source,
        })?;
        let mut set = KeySet::default();
        for (position, value) in raw.keys.into_iter().enumerate() {
            match usable_key(value) {
                Ok(key) => {
                    if let Some(kid) = &key.kid {
                        if set.by_kid.contains_key(kid) {
                            tracing::warn!(%origin, position, kid, "skipping a JWK whose kid is already in the set");
                            continue;
                        }
                        set.by_kid.insert(kid.clone(), set.keys.len());
                    }
                    set.keys.push(key);
                }
                Err(why) => tracing::warn!(%origin, position, why, "skipping an unusable JWK"),
            }
        }
        if set.keys.is_empty() {
            return Err(JwksError::NoUsableKeys {
                origin: origin.to_string(),
            });
        }
        Ok(set)
    }
}

/// Turns one JWK into a verification key, or says in a few words why it is not one.
fn usable_key(value: serde_json::Value) -> Result<VerifyingKey, &'static str> {
    let jwk: Jwk =
        serde_json::from_value(value).map_err(|_| "unsupported key type or malformed key")?;
    match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(_) => return Err("not a signature key (use is not \"sig\")"),
    }
    if let Some(operations) = &jwk.common.key_operations {
        if !operations.contains(&KeyOperations::Verify) {
            return Err("key_ops does not include \"verify\"");
        }
    }
    // A symmetric key in a published set would be a secret anyone can read; HMAC tokens
    // are verified with `auth.hs256_secret` only.
    if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
        return Err("symmetric (oct) keys are never used from a key set");
    }
    let algorithm = match jwk.common.key_algorithm {
        None => None,
        Some(declared) => Some(
            Algorithm::from_str(&declared.to_string())
                .map_err(|_| "its alg is not a signature algorithm")?,
        ),
    };
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| "its key parameters are invalid")?;
    let family = key.family();
    if algorithm.is_some_and(|alg| alg.family() != family) {
        return Err("its alg does not match its key type");
    }
    Ok(VerifyingKey {
        kid: jwk.common.key_id,
        algorithm,
        family,
        key,
    })
}

/// Reads a key set file. Blocking: `Authenticator::new` (not async) calls it directly,
/// [`JwksSource::load`] on tokio's blocking pool.
pub fn read_file(path: &Path) -> Result<KeySet, JwksError> {
    use std::io::Read;
    let origin = path.display().to_string();
    let read_error = |source| JwksError::Read {
        origin: origin.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_JWKS_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(JwksError::TooLarge { origin });
    }
    KeySet::parse(&bytes, &origin)
}

/// [`read_file`] off the async threads: a reload triggered by an unknown kid runs on a
/// request's task, which must not block its worker on disk.
async fn read_file_off_thread(path: &Path) -> Result<KeySet, JwksError> {
    let owned = path.to_path_buf();
    match tokio::task::spawn_blocking(move || read_file(&owned)).await {
        Ok(result) => result,
        // Only a panic in the read or a runtime shutting down gets here.
        Err(join) => Err(JwksError::Read {
            origin: path.display().to_string(),
            source: std::io::Error::other(join),
        }),
    }
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Where the key set comes from. Fixed by configuration; never by a token.
pub enum JwksSource {
    File(PathBuf),
    Url {
        url: http::Uri,
        origin: String,
        client: Box<HttpClient>,
    },
}

/// Why the client for `jwks_url` could not be built.
#[derive(Debug)]
pub enum UrlSourceError {
    Uri,
    /// A certificate of `auth.jwks_ca_file` is not a usable trust anchor.
    Roots(rustls::Error),
}

impl JwksSource {
    /// Builds the HTTP(S) client for `url`. Trusts the system's roots (an operator's
    /// private CA installed there works), Mozilla's when the system has none (a bare
    /// container), and the certificates of `auth.jwks_ca_file` (`extra_roots`) besides.
    pub fn for_url(
        url: &str,
        extra_roots: &[CertificateDer<'static>],
    ) -> Result<Self, UrlSourceError> {
        let uri: http::Uri = url.parse().map_err(|_| UrlSourceError::Uri)?;
        let roots = trusted_roots(extra_roots).map_err(UrlSourceError::Roots)?;
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(UrlSourceError::Roots)?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        // The set is fetched rarely (once per refresh interval): keeping idle connections
        // would only hold sockets open.
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        Ok(Self::Url {
            url: uri,
            origin: url.to_string(),
            client: Box::new(client),
        })
    }

    pub fn origin(&self) -> String {
        match self {
            JwksSource::File(path) => path.display().to_string(),
            JwksSource::Url { origin, .. } => origin.clone(),
        }
    }

    /// Loads the set once; the caller keeps its last good set on error.
    pub async fn load(&self) -> Result<KeySet, JwksError> {
        match self {
            JwksSource::File(path) => read_file_off_thread(path).await,
            JwksSource::Url {
                url,
                origin,
                client,
            } => match tokio::time::timeout(FETCH_TIMEOUT, fetch(client, url, origin)).await {
                Ok(result) => result,
                Err(_) => Err(JwksError::Timeout {
                    origin: origin.clone(),
                }),
            },
        }
    }
}

/// The system's roots, or Mozilla's when the system has none usable, plus `extra`.
fn trusted_roots(extra: &[CertificateDer<'static>]) -> Result<RootCertStore, rustls::Error> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    if let Some(err) = native.errors.first() {
        tracing::debug!(error = %err, "reading a system root certificate failed");
    }
    // Unparsable system roots are skipped, as hyper-rustls does.
    let (_, ignored) = roots.add_parsable_certificates(native.certs);
    if ignored > 0 {
        tracing::debug!(ignored, "skipped unusable system root certificates");
    }
    if roots.is_empty() {
        tracing::warn!(
            "no usable system root certificates; using the bundled webpki roots for jwks_url"
        );
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    for certificate in extra {
        roots.add(certificate.clone())?;
    }
    Ok(roots)
}

async fn fetch(client: &HttpClient, url: &http::Uri, origin: &str) -> Result<KeySet, JwksError> {
    let request = http::Request::get(url.clone())
        .header(http::header::ACCEPT, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("tenant-edge/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<Bytes>::new())
        .map_err(|err| JwksError::Body {
            origin: origin.to_string(),
            source: Box::new(err),
        })?;
    let response = client
        .request(request)
        .await
        .map_err(|source| JwksError::Request {
            origin: origin.to_string(),
            source,
        })?;
    if response.status() != http::StatusCode::OK {
        return Err(JwksError::Status {
            origin: origin.to_string(),
            status: response.status(),
        });
    }
    let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map_err(|source| {
            if source.is::<LengthLimitError>() {
                JwksError::TooLarge {
                    origin: origin.to_string(),
                }
            } else {
                JwksError::Body {
                    origin: origin.to_string(),
                    source,
                }
            }
        })?
        .to_bytes();
    KeySet::parse(&body, origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWKS_A: &str = include_str!("../../tests/fixtures/jwks_a.json");
    const JWKS_AB: &str = include_str!("../../tests/fixtures/jwks_ab.json");

    #[test]
    fn fixture_sets_parse_and_index_by_kid() {
        let a = KeySet::parse(JWKS_A.as_bytes(), "a").unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a.find(Some("key-a")), KeyLookup::Found(0));
        assert_eq!(a.find(None), KeyLookup::Found(0));
        assert_eq!(a.find(Some("key-b")), KeyLookup::Unknown);
        let ab = KeySet::parse(JWKS_AB.as_bytes(), "ab").unwrap();
        assert_eq!(ab.len(), 2);
        assert_eq!(ab.find(Some("key-b")), KeyLookup::Found(1));
        assert_eq!(ab.find(None), KeyLookup::Ambiguous);
        assert_eq!(ab.get(0).unwrap().algorithm, Some(Algorithm::RS256));
        assert_eq!(ab.get(0).unwrap().family, AlgorithmFamily::Rsa);
    }

    #[test]
    fn unusable_keys_are_skipped_not_fatal() {
        let a: serde_json::Value = serde_json::from_str(JWKS_A).unwrap();
        let good = a["keys"][0].clone();
        let mut enc = good.clone();
        enc["use"] = "enc".into();
        enc["kid"] = "enc-key".into();
        let mut oaep = good.clone();
        oaep["alg"] = "RSA-OAEP".into();
        oaep["kid"] = "oaep".into();
        let mut wrong_alg = good.clone();
        wrong_alg["alg"] = "ES256".into();
        wrong_alg["kid"] = "mismatch".into();
        let mut duplicate = good.clone();
        duplicate["n"] = "AQAB".into();
        let set = serde_json::json!({"keys": [
            good, enc, oaep, wrong_alg, duplicate,
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "XYZ", "kid": "strange"},
            {"kty": "RSA", "kid": "broken", "n": 5, "e": "AQAB"},
            "not an object",
        ]});
        let parsed = KeySet::parse(set.to_string().as_bytes(), "mixed").unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed.find(Some("key-a")), KeyLookup::Found(0));
        for kid in ["enc-key", "oaep", "mismatch", "hmac", "strange", "broken"] {
            assert_eq!(parsed.find(Some(kid)), KeyLookup::Unknown, "{kid}");
        }
    }

    #[test]
    fn ec_and_okp_keys_are_supported() {
        let set = include_str!("../../tests/fixtures/jwks_ec_ed.json");
        let parsed = KeySet::parse(set.as_bytes(), "ec+ed").unwrap();
        let KeyLookup::Found(ec) = parsed.find(Some("ec-key")) else {
            panic!("ec-key missing")
        };
        let KeyLookup::Found(ed) = parsed.find(Some("ed-key")) else {
            panic!("ed-key missing")
        };
        assert_eq!(parsed.get(ec).unwrap().family, AlgorithmFamily::Ec);
        assert_eq!(parsed.get(ed).unwrap().family, AlgorithmFamily::Ed);
    }

    #[test]
    fn bad_documents_are_errors_that_name_the_origin() {
        for text in [
            "",
            "[]",
            "{}",
            "{\"keys\": 5}",
            "{\"keys\": []}",
            "null",
            "\u{0}\u{1}",
        ] {
            let err = KeySet::parse(text.as_bytes(), "somewhere.json")
                .err()
                .expect(text);
            assert!(err.to_string().starts_with("somewhere.json: "), "{err}");
        }
    }

    #[test]
    fn missing_and_oversized_files_are_errors() {
        let missing = read_file(Path::new("/nonexistent/jwks.json"))
            .err()
            .unwrap();
        assert!(
            missing.to_string().contains("/nonexistent/jwks.json"),
            "{missing}"
        );
        let dir = std::env::temp_dir().join(format!("tenant-edge-jwks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big.json");
        std::fs::write(&big, vec![b' '; MAX_JWKS_BYTES + 10]).unwrap();
        assert!(matches!(read_file(&big), Err(JwksError::TooLarge { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
