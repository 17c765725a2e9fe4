//! Tests of the Authenticator as the HTTP server uses it: real RS256 tokens signed with
//! the committed fixture keys, key sets from a file or from a tiny JWKS server on port 0.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

use super::*;
use crate::config::Secret;

const TENANT_CLAIM: &str = "https://school-lunch/school_database";
const ISSUER: &str = "https://school-lunch.example.auth0.com/";
const AUDIENCE: &str = "https://school-lunch/api";
const SECRET: &str = "0123456789abcdef0123456789abcdef-dev";
const RSA_A: &[u8] = include_bytes!("../../tests/fixtures/rsa_a.pem");
const RSA_B: &[u8] = include_bytes!("../../tests/fixtures/rsa_b.pem");
const RSA_A_PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/rsa_a.pub.pem");
const JWKS_A: &str = include_str!("../../tests/fixtures/jwks_a.json");
const JWKS_AB: &str = include_str!("../../tests/fixtures/jwks_ab.json");

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn config() -> AuthConfig {
    AuthConfig {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        algorithms: vec![Algorithm::RS256],
        jwks_url: None,
        jwks_file: Some(fixture("jwks_a.json")),
        jwks_ca_file: None,
        jwks_ca_certs: Vec::new(),
        jwks_refresh_interval: Duration::from_secs(3600),
        jwks_refetch_cooldown: Duration::from_secs(60),
        hs256_secret: None,
        tenant_claim: TENANT_CLAIM.into(),
        leeway: Duration::from_secs(0),
        token_cache_capacity: 100,
    }
}

fn now() -> u64 {
    unix_now()
}

fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "auth0|someone",
        "iat": now(),
        "exp": now() + 600,
        TENANT_CLAIM: "pinewood_elementary",
    })
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

fn sign_rsa(pem: &[u8], kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_string);
    encode(&header, claims, &EncodingKey::from_rsa_pem(pem).unwrap()).unwrap()
}

fn sign_a(claims: &Value) -> String {
    sign_rsa(RSA_A, Some("key-a"), claims)
}

fn sign_hmac(secret: &[u8], kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(str::to_string);
    encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

/// A token assembled by hand, for headers jsonwebtoken would refuse to produce.
fn raw_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

async fn auth_with(auth: &Authenticator, token: &str) -> Result<Arc<Principal>, AuthError> {
    auth.authenticate(Some(format!("Bearer {token}").as_bytes()))
        .await
}

/// A JWKS endpoint on 127.0.0.1:0 whose answer the test can change, counting requests.
/// While its gate is closed, requests are counted and then held unanswered.
struct JwksServer {
    url: String,
    answer: Arc<Mutex<(u16, String)>>,
    hits: Arc<AtomicUsize>,
    gate: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    async fn start(body: &str, delay: Duration) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let answer = Arc::new(Mutex::new((200u16, body.to_string())));
        let hits = Arc::new(AtomicUsize::new(0));
        let (gate, gate_open) = tokio::sync::watch::channel(true);
        let (served, counted) = (answer.clone(), hits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (served, counted) = (served.clone(), counted.clone());
                let gate_open = gate_open.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |_request| {
                        let (served, counted) = (served.clone(), counted.clone());
                        let mut gate_open = gate_open.clone();
                        async move {
                            counted.fetch_add(1, Ordering::SeqCst);
                            let _ = gate_open.wait_for(|open| *open).await;
                            tokio::time::sleep(delay).await;
                            let (status, body) = served.lock().unwrap().clone();
                            Ok::<_, Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::from(body)))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            url,
            answer,
            hits,
            gate,
            task,
        }
    }

    fn hold_answers(&self, hold: bool) {
        self.gate.send_replace(!hold);
    }

    fn serve(&self, status: u16, body: &str) {
        *self.answer.lock().unwrap() = (status, body.to_string());
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Takes every refetch an unknown kid could cause now (the test configs earn one back
/// per minute at most).
async fn spend_the_refetch_budget(auth: &Authenticator) {
    let mut budget = auth.refetch.lock().await;
    while budget.try_take(Instant::now()) {}
}

fn url_config(url: &str) -> AuthConfig {
    AuthConfig {
        jwks_url: Some(url.to_string()),
        jwks_file: None,
        ..config()
    }
}

#[tokio::test]
async fn rs256_via_jwks_file() {
    let auth = Authenticator::new(&config()).unwrap();
    assert!(auth.keys_ready());
    let claims = claims();
    let token = sign_a(&claims);
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let header = format!("{scheme} {token}");
        let principal = auth.authenticate(Some(header.as_bytes())).await.unwrap();
        assert_eq!(&*principal.school_database, "pinewood_elementary");
        assert_eq!(principal.expires_at, claims["exp"].as_u64().unwrap());
    }
    // With exactly one key in the set, a token without a kid is accepted.
    assert!(auth_with(&auth, &sign_rsa(RSA_A, None, &claims))
        .await
        .is_ok());
}

#[tokio::test]
async fn rs256_via_jwks_url() {
    let server = JwksServer::start(JWKS_A, Duration::ZERO).await;
    let auth = Authenticator::new(&url_config(&server.url)).unwrap();
    assert!(!auth.keys_ready());
    auth.refresh_keys().await.unwrap();
    assert!(auth.keys_ready());
    let principal = auth_with(&auth, &sign_a(&claims())).await.unwrap();
    assert_eq!(&*principal.school_database, "pinewood_elementary");
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn before_the_first_fetch_tokens_fail_as_keys_unavailable() {
    let server = JwksServer::start("", Duration::ZERO).await;
    server.serve(503, "");
    let auth = Authenticator::new(&url_config(&server.url)).unwrap();
    assert!(auth.refresh_keys().await.is_err());
    assert!(!auth.keys_ready());
    let err = auth_with(&auth, &sign_a(&claims())).await.unwrap_err();
    assert_eq!(err, AuthError::KeysUnavailable);
}

#[tokio::test]
async fn key_rotation_is_picked_up_on_an_unknown_kid() {
    let server = JwksServer::start(JWKS_A, Duration::ZERO).await;
    let config = AuthConfig {
        jwks_refetch_cooldown: Duration::ZERO,
        ..url_config(&server.url)
    };
    let auth = Authenticator::new(&config).unwrap();
    auth.refresh_keys().await.unwrap();
    let token_b = sign_rsa(RSA_B, Some("key-b"), &claims());
    assert_eq!(
        auth_with(&auth, &token_b).await.unwrap_err(),
        AuthError::UnknownKey
    );
    assert_eq!(server.hits(), 2, "the unknown kid caused one refetch");
    // The provider publishes the next key beside the current one.
    server.serve(200, JWKS_AB);
    assert!(auth_with(&auth, &token_b).await.is_ok());
    assert!(auth_with(&auth, &sign_a(&claims())).await.is_ok());
    // Two keys now: a token without a kid no longer picks one.
    let no_kid = sign_rsa(RSA_A, None, &claims());
    assert_eq!(
        auth_with(&auth, &no_kid).await.unwrap_err(),
        AuthError::UnknownKey
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_unknown_kids_share_one_fetch() {
    let server = JwksServer::start(JWKS_A, Duration::ZERO).await;
    // No refetch limit: only the single flight can keep 50 requests to one fetch.
    let config = AuthConfig {
        jwks_refetch_cooldown: Duration::ZERO,
        ..url_config(&server.url)
    };
    let auth = Arc::new(Authenticator::new(&config).unwrap());
    auth.refresh_keys().await.unwrap();
    assert_eq!(server.hits(), 1);
    let token = sign_rsa(RSA_B, Some("key-unknown"), &claims());
    // The fetch is held until every request has looked at the key set: a request polled
    // for the first time runs up to the refetch lock without yielding, so `started`
    // counts requests that read the set before the fetch could land.
    server.hold_answers(true);
    let started = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (auth, token, started) = (auth.clone(), token.clone(), started.clone());
            tokio::spawn(async move {
                started.fetch_add(1, Ordering::SeqCst);
                auth_with(&auth, &token).await
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while started.load(Ordering::SeqCst) < 50 || server.hits() < 2 {
        assert!(Instant::now() < deadline, "requests did not start");
        tokio::task::yield_now().await;
    }
    server.hold_answers(false);
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap_err(), AuthError::UnknownKey);
    }
    assert_eq!(server.hits(), 2, "50 requests, exactly one refetch");
    // The limit is off: a later unknown kid fetches again, so the one fetch above was
    // the single flight's doing.
    assert_eq!(
        auth_with(&auth, &token).await.unwrap_err(),
        AuthError::UnknownKey
    );
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn a_flood_of_unknown_kids_fetches_only_the_burst() {
    let server = JwksServer::start(JWKS_A, Duration::ZERO).await;
    // A period far longer than the test, so no fetch is earned back while it runs.
    let config = AuthConfig {
        jwks_refetch_cooldown: Duration::from_secs(3600),
        token_cache_capacity: 0,
        ..url_config(&server.url)
    };
    let auth = Arc::new(Authenticator::new(&config).unwrap());
    auth.refresh_keys().await.unwrap();
    // The key is looked up before the signature is checked, so made-up signatures do.
    let made_up = |kid: String| raw_token(&json!({"alg": "RS256", "kid": kid}), &claims(), b"sig");
    // One after another, each with a kid never seen: nothing to share, only the budget.
    for n in 0..100 {
        let token = made_up(format!("made-up-{n}"));
        assert_eq!(
            auth_with(&auth, &token).await.unwrap_err(),
            AuthError::UnknownKey
        );
    }
    assert_eq!(server.hits(), 1 + refetch_budget::BURST as usize);
    // Concurrently too.
    let tasks: Vec<_> = (0..100)
        .map(|n| {
            let auth = auth.clone();
            let token = made_up(format!("concurrent-{n}"));
            tokio::spawn(async move { auth_with(&auth, &token).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap_err(), AuthError::UnknownKey);
    }
    assert_eq!(server.hits(), 1 + refetch_budget::BURST as usize);
    // Known keys still verify without a fetch.
    assert!(auth_with(&auth, &sign_a(&claims())).await.is_ok());
    assert_eq!(server.hits(), 1 + refetch_budget::BURST as usize);
}

#[tokio::test]
async fn a_key_published_right_after_an_unknown_kid_probe_is_accepted_at_once() {
    let server = JwksServer::start(JWKS_A, Duration::ZERO).await;
    let config = AuthConfig {
        jwks_refetch_cooldown: Duration::from_secs(20),
        ..url_config(&server.url)
    };
    let auth = Authenticator::new(&config).unwrap();
    auth.refresh_keys().await.unwrap();
    let token_b = sign_rsa(RSA_B, Some("key-b"), &claims());
    // A probe with the next key before it is published: one refetch, refused.
    assert_eq!(
        auth_with(&auth, &token_b).await.unwrap_err(),
        AuthError::UnknownKey
    );
    assert_eq!(server.hits(), 2);
    // Published a moment later: the next request fetches again and is accepted.
    server.serve(200, JWKS_AB);
    assert!(auth_with(&auth, &token_b).await.is_ok());
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn the_leeway_accepts_a_token_that_expired_moments_ago_only() {
    let config = AuthConfig {
        leeway: Duration::from_secs(30),
        ..config()
    };
    let auth = Authenticator::new(&config).unwrap();
    // The margins (10 s inside, 30 s outside) leave room for a slow test machine;
    // jsonwebtoken reads the clock itself.
    let recently_expired = sign_a(&with(claims(), "exp", json!(now() - 10)));
    let principal = auth_with(&auth, &recently_expired).await.unwrap();
    assert_eq!(&*principal.school_database, "pinewood_elementary");
    let long_expired = sign_a(&with(claims(), "exp", json!(now() - 60)));
    assert_eq!(
        auth_with(&auth, &long_expired).await.unwrap_err(),
        AuthError::Expired
    );
    let nearly_valid = sign_a(&with(claims(), "nbf", json!(now() + 10)));
    assert!(auth_with(&auth, &nearly_valid).await.is_ok());
    let not_yet = sign_a(&with(claims(), "nbf", json!(now() + 60)));
    assert_eq!(
        auth_with(&auth, &not_yet).await.unwrap_err(),
        AuthError::NotYetValid
    );
    // Accepted thanks to the leeway, the expired token is not cached: without the
    // leeway's help (a new authenticator without it) it is refused.
    assert_eq!(auth.cache.as_ref().unwrap().len(), 1);
    let strict = Authenticator::new(&AuthConfig {
        leeway: Duration::ZERO,
        ..config
    })
    .unwrap();
    assert_eq!(
        auth_with(&strict, &recently_expired).await.unwrap_err(),
        AuthError::Expired
    );
    assert_eq!(
        auth_with(&strict, &nearly_valid).await.unwrap_err(),
        AuthError::NotYetValid
    );
}

#[tokio::test]
async fn the_last_good_key_set_survives_failed_fetches() {
    let server = JwksServer::start(JWKS_A, Duration::ZERO).await;
    let config = AuthConfig {
        token_cache_capacity: 0,
        ..url_config(&server.url)
    };
    let auth = Authenticator::new(&config).unwrap();
    auth.refresh_keys().await.unwrap();
    let token = sign_a(&claims());
    let oversized = format!(
        "{{\"keys\": [], \"pad\": \"{}\"}}",
        "x".repeat(MAX_JWKS_BYTES)
    );
    let failures: &[(u16, &str)] = &[
        (500, JWKS_AB),
        (404, ""),
        (200, "not json"),
        (200, "{\"keys\": []}"),
        (200, &oversized),
    ];
    for (status, body) in failures {
        server.serve(*status, body);
        let err = auth.refresh_keys().await.unwrap_err();
        assert!(err.to_string().starts_with(&server.url), "{err}");
        assert!(auth.keys_ready());
        // Verified again (no cache), with the kept key.
        assert!(auth_with(&auth, &token).await.is_ok(), "after {status}");
    }
    server.serve(500, "");
    assert!(matches!(
        auth.refresh_keys().await,
        Err(JwksError::Status { .. })
    ));
}

#[tokio::test]
async fn hs256_tokens_verify_with_the_configured_secret() {
    let config = AuthConfig {
        algorithms: vec![Algorithm::HS256],
        jwks_file: None,
        hs256_secret: Some(Secret::new(SECRET)),
        ..config()
    };
    let auth = Authenticator::new(&config).unwrap();
    assert!(auth.keys_ready());
    let token = sign_dev_token(
        &Secret::new(SECRET),
        ISSUER,
        AUDIENCE,
        TENANT_CLAIM,
        "pinewood_elementary",
        Duration::from_secs(60),
    )
    .unwrap();
    let principal = auth_with(&auth, &token).await.unwrap();
    assert_eq!(&*principal.school_database, "pinewood_elementary");
    let wrong_secret = sign_hmac(b"another secret of thirty-two bytes!", None, &claims());
    assert_eq!(
        auth_with(&auth, &wrong_secret).await.unwrap_err(),
        AuthError::BadSignature
    );
    // RS256 is not configured here, so an RSA-signed token is refused by algorithm.
    assert_eq!(
        auth_with(&auth, &sign_a(&claims())).await.unwrap_err(),
        AuthError::AlgorithmNotAllowed
    );
}

#[tokio::test]
async fn rejections() {
    // RS256 and HS256 both allowed, so the HS256-with-the-public-key attack reaches the
    // signature check and must fail there.
    let both = AuthConfig {
        algorithms: vec![Algorithm::RS256, Algorithm::HS256],
        hs256_secret: Some(Secret::new(SECRET)),
        ..config()
    };
    let rs_only = Authenticator::new(&config()).unwrap();
    let both = Authenticator::new(&both).unwrap();
    let unsigned = raw_token(&json!({"alg": "none", "typ": "JWT"}), &claims(), b"");
    let unsigned_kid = raw_token(&json!({"alg": "none", "kid": "key-a"}), &claims(), b"");
    let public_key_as_secret = sign_hmac(RSA_A_PUBLIC, Some("key-a"), &claims());
    let mut critical = Header::new(Algorithm::RS256);
    critical.kid = Some("key-a".into());
    critical.crit = Some(vec!["exp-extension".into()]);
    let critical = encode(
        &critical,
        &claims(),
        &EncodingKey::from_rsa_pem(RSA_A).unwrap(),
    )
    .unwrap();
    let nested_school = json!({"https://school-lunch": {"school_database": "x"}});
    let cases: Vec<(&str, &Authenticator, String, AuthError)> = vec![
        ("alg none", &both, unsigned, AuthError::AlgorithmNotAllowed),
        (
            "alg none with kid",
            &rs_only,
            unsigned_kid,
            AuthError::AlgorithmNotAllowed,
        ),
        (
            "HS256 not configured",
            &rs_only,
            public_key_as_secret.clone(),
            AuthError::AlgorithmNotAllowed,
        ),
        (
            "HS256 with the RSA public key",
            &both,
            public_key_as_secret,
            AuthError::BadSignature,
        ),
        (
            "RS256 with an HMAC header alg mismatch",
            &rs_only,
            raw_token(&json!({"alg": "RS512", "kid": "key-a"}), &claims(), b"sig"),
            AuthError::AlgorithmNotAllowed,
        ),
        (
            "signed by key b, claims key a",
            &rs_only,
            sign_rsa(RSA_B, Some("key-a"), &claims()),
            AuthError::BadSignature,
        ),
        (
            "unknown kid",
            &rs_only,
            sign_rsa(RSA_B, Some("key-b"), &claims()),
            AuthError::UnknownKey,
        ),
        (
            "expired",
            &rs_only,
            sign_a(&with(claims(), "exp", json!(now() - 100))),
            AuthError::Expired,
        ),
        (
            "nbf in the future",
            &rs_only,
            sign_a(&with(claims(), "nbf", json!(now() + 100))),
            AuthError::NotYetValid,
        ),
        (
            "nbf not a number",
            &rs_only,
            sign_a(&with(claims(), "nbf", json!("soon"))),
            AuthError::Malformed,
        ),
        (
            "wrong iss",
            &rs_only,
            sign_a(&with(claims(), "iss", json!("https://evil/"))),
            AuthError::WrongIssuer,
        ),
        (
            "missing iss",
            &rs_only,
            sign_a(&without(claims(), "iss")),
            AuthError::WrongIssuer,
        ),
        (
            "numeric iss",
            &rs_only,
            sign_a(&with(claims(), "iss", json!(7))),
            AuthError::WrongIssuer,
        ),
        (
            "null iss",
            &rs_only,
            sign_a(&with(claims(), "iss", Value::Null)),
            AuthError::WrongIssuer,
        ),
        (
            "array iss",
            &rs_only,
            sign_a(&with(claims(), "iss", json!([ISSUER]))),
            AuthError::WrongIssuer,
        ),
        (
            "wrong aud",
            &rs_only,
            sign_a(&with(claims(), "aud", json!("other-api"))),
            AuthError::WrongAudience,
        ),
        (
            "wrong aud array",
            &rs_only,
            sign_a(&with(claims(), "aud", json!(["a", "b"]))),
            AuthError::WrongAudience,
        ),
        (
            "aud array with a number",
            &rs_only,
            sign_a(&with(claims(), "aud", json!([AUDIENCE, 5]))),
            AuthError::WrongAudience,
        ),
        (
            "missing aud",
            &rs_only,
            sign_a(&without(claims(), "aud")),
            AuthError::WrongAudience,
        ),
        (
            "numeric aud",
            &rs_only,
            sign_a(&with(claims(), "aud", json!(5))),
            AuthError::WrongAudience,
        ),
        (
            "null aud",
            &rs_only,
            sign_a(&with(claims(), "aud", Value::Null)),
            AuthError::WrongAudience,
        ),
        (
            "missing exp",
            &rs_only,
            sign_a(&without(claims(), "exp")),
            AuthError::Malformed,
        ),
        (
            "string exp",
            &rs_only,
            sign_a(&with(claims(), "exp", json!("later"))),
            AuthError::Malformed,
        ),
        (
            "no school",
            &rs_only,
            sign_a(&without(claims(), TENANT_CLAIM)),
            AuthError::NoSchoolClaim,
        ),
        (
            "numeric school",
            &rs_only,
            sign_a(&with(claims(), TENANT_CLAIM, json!(5))),
            AuthError::NoSchoolClaim,
        ),
        (
            "empty school",
            &rs_only,
            sign_a(&with(claims(), TENANT_CLAIM, json!(""))),
            AuthError::NoSchoolClaim,
        ),
        (
            "school only nested",
            &rs_only,
            sign_a(&without(
                with(
                    claims(),
                    "https://school-lunch",
                    nested_school["https://school-lunch"].clone(),
                ),
                TENANT_CLAIM,
            )),
            AuthError::NoSchoolClaim,
        ),
        (
            "unknown crit extension",
            &rs_only,
            critical,
            AuthError::Malformed,
        ),
        ("garbage", &rs_only, "garbage".into(), AuthError::Malformed),
        ("two segments", &rs_only, "a.b".into(), AuthError::Malformed),
        (
            "four segments",
            &rs_only,
            format!("{}.x", sign_a(&claims())),
            AuthError::Malformed,
        ),
        (
            "oversized",
            &rs_only,
            format!("{}.{}.x", "a".repeat(10), "b".repeat(MAX_TOKEN_BYTES)),
            AuthError::TooLarge,
        ),
    ];
    for (name, auth, token, expected) in cases {
        let got = auth_with(auth, &token).await;
        assert_eq!(got.as_ref().err(), Some(&expected), "{name}: {got:?}");
        assert_eq!(
            expected.is_forbidden(),
            expected == AuthError::NoSchoolClaim,
            "{name}"
        );
    }
}

#[tokio::test]
async fn header_problems() {
    let auth = Authenticator::new(&config()).unwrap();
    let token = sign_a(&claims());
    let cases: Vec<(Option<Vec<u8>>, AuthError)> = vec![
        (None, AuthError::Missing),
        (Some(b"".to_vec()), AuthError::Missing),
        (Some(b"   ".to_vec()), AuthError::Missing),
        (
            Some(format!("Basic {token}").into_bytes()),
            AuthError::BadScheme,
        ),
        (
            Some(format!("Bearer{token}").into_bytes()),
            AuthError::BadScheme,
        ),
        (
            Some(format!("Token {token}").into_bytes()),
            AuthError::BadScheme,
        ),
        (Some(token.clone().into_bytes()), AuthError::BadScheme),
        (Some(b"Bearer".to_vec()), AuthError::BadScheme),
        (Some(b"Bearer    ".to_vec()), AuthError::BadScheme),
        (Some(b"Bearer \xff\xfe.a.b".to_vec()), AuthError::Malformed),
        (
            Some([b"Bearer ".as_slice(), &vec![b'a'; MAX_TOKEN_BYTES + 1]].concat()),
            AuthError::TooLarge,
        ),
    ];
    for (header, expected) in cases {
        let got = auth.authenticate(header.as_deref()).await;
        assert_eq!(
            got.err(),
            Some(expected),
            "{:?}",
            header.map(|h| String::from_utf8_lossy(&h).into_owned())
        );
    }
    // Surrounding spaces are tolerated; exactly 8 KiB is not "too large".
    let padded = format!("  Bearer   {token}  ");
    assert!(auth.authenticate(Some(padded.as_bytes())).await.is_ok());
    let at_limit = [b"Bearer ".as_slice(), &vec![b'a'; MAX_TOKEN_BYTES]].concat();
    assert_eq!(
        auth.authenticate(Some(&at_limit)).await.err(),
        Some(AuthError::Malformed)
    );
}

#[tokio::test]
async fn the_tenant_claim_is_a_literal_key() {
    for claim in [
        "https://school-lunch/school_database",
        "school.database",
        "a/b.c",
        "plain",
    ] {
        let config = AuthConfig {
            tenant_claim: claim.into(),
            ..config()
        };
        let auth = Authenticator::new(&config).unwrap();
        let token = sign_a(&with(claims(), claim, json!("maple_high")));
        let principal = auth_with(&auth, &token).await.unwrap();
        assert_eq!(&*principal.school_database, "maple_high", "{claim}");
    }
    // A nested object at the dotted path is not the claim.
    let config = AuthConfig {
        tenant_claim: "school.database".into(),
        ..config()
    };
    let auth = Authenticator::new(&config).unwrap();
    let token = sign_a(&with(claims(), "school", json!({"database": "maple_high"})));
    let err = auth_with(&auth, &token).await.unwrap_err();
    assert_eq!(err, AuthError::NoSchoolClaim);
    assert!(err.is_forbidden());
}

#[tokio::test]
async fn a_cache_hit_does_no_verification() {
    let auth = Authenticator::new(&config()).unwrap();
    let token = sign_a(&claims());
    let first = auth_with(&auth, &token).await.unwrap();
    // With the key set emptied (and no refetch left, so the file is not re-read), only
    // the cache can accept the token.
    auth.keys.store(Arc::new(KeySet::empty()));
    spend_the_refetch_budget(&auth).await;
    let second = auth_with(&auth, &token).await.unwrap();
    assert!(Arc::ptr_eq(&first, &second));
    // A token not seen before does need the (now missing) key.
    let other = sign_a(&with(claims(), "sub", json!("someone-else")));
    assert!(auth_with(&auth, &other).await.is_err());
}

#[tokio::test]
async fn an_expired_cache_entry_is_not_used() {
    let auth = Authenticator::new(&config()).unwrap();
    let expired = sign_a(&with(claims(), "exp", json!(now() - 100)));
    // Plant an entry that was valid when stored and has expired since.
    let stale = Arc::new(Principal {
        school_database: "stale".into(),
        expires_at: now() - 1,
    });
    auth.cache
        .as_ref()
        .unwrap()
        .insert(expired.as_bytes(), stale, now() - 50);
    assert_eq!(
        auth_with(&auth, &expired).await.unwrap_err(),
        AuthError::Expired
    );
}

#[tokio::test]
async fn a_new_authenticator_starts_with_an_empty_cache() {
    let token = sign_a(&claims());
    let before = Authenticator::new(&config()).unwrap();
    assert!(auth_with(&before, &token).await.is_ok());
    let reloaded = AuthConfig {
        audience: "https://new-audience/api".into(),
        ..config()
    };
    let after = Authenticator::new(&reloaded).unwrap();
    assert_eq!(
        auth_with(&after, &token).await.unwrap_err(),
        AuthError::WrongAudience
    );
}

#[tokio::test]
async fn the_cache_can_be_turned_off() {
    let config = AuthConfig {
        token_cache_capacity: 0,
        ..config()
    };
    let auth = Authenticator::new(&config).unwrap();
    let token = sign_a(&claims());
    assert!(auth_with(&auth, &token).await.is_ok());
    auth.keys.store(Arc::new(KeySet::empty()));
    spend_the_refetch_budget(&auth).await;
    assert!(auth_with(&auth, &token).await.is_err());
}

#[tokio::test]
async fn nothing_panics_on_hostile_input() {
    use rand::{Rng, RngCore};
    let auth = Authenticator::new(&config()).unwrap();
    let good = sign_a(&claims());
    // Every prefix of a valid token.
    for end in 0..good.len() {
        assert!(
            auth_with(&auth, &good[..end]).await.is_err(),
            "prefix {end}"
        );
    }
    // Random bytes, with and without the scheme, and random base64url-ish tokens.
    let mut rng = rand::rng();
    for _ in 0..2000 {
        let len = rng.random_range(0..200);
        let mut bytes = vec![0u8; len];
        rng.fill_bytes(&mut bytes);
        let _ = auth.authenticate(Some(&bytes)).await;
        let _ = auth
            .authenticate(Some(&[b"Bearer ".as_slice(), &bytes].concat()))
            .await;
        let alphabet = b"ABCxyz019-_.=+/";
        let token: String = (0..len)
            .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
            .collect();
        assert!(auth_with(&auth, &token).await.is_err());
    }
    let b64 = |text: &str| URL_SAFE_NO_PAD.encode(text);
    let header = b64(r#"{"alg":"RS256","kid":"key-a"}"#);
    let hostile = [
        format!("{}.{}.{}", "A".repeat(8000), b64("{}"), "sig"),
        format!("{header}.{}.{}", "A".repeat(8000), "sig"),
        format!("{header}.{}.{}", b64("not json at all"), "sig"),
        format!("{header}.{}.{}", b64("[1,2,3]"), "sig"),
        format!("{header}.{}.{}", b64("{\"exp\": 1e400}"), "sig"),
        format!("{header}.{}.", b64(&claims().to_string())),
        format!("{header}..{}", "sig"),
        format!("{}.{}.sig", b64(r#"{"alg":5}"#), b64("{}")),
        format!("{}.{}.sig", b64(r#"{"alg":"RS256","kid":7}"#), b64("{}")),
        format!(
            "{}.{}.sig",
            b64(r#"{"alg":"RS256","jku":"http://evil/jwks"}"#),
            b64("{}")
        ),
        format!(
            "{}.{}.sig",
            b64(r#"{"alg":"RS256","kid":"key-a","b64":false}"#),
            b64(&claims().to_string())
        ),
        format!("{}.{}.{}", b64("{}"), b64("{}"), "A".repeat(5000)),
        format!("{}.{}.{}", header, b64(&claims().to_string()), "A"),
        "...".into(),
        ".".repeat(5000),
        "==.==.==".into(),
    ];
    for token in hostile {
        let got = auth_with(&auth, &token).await;
        assert!(got.is_err(), "{token}");
    }
}

#[tokio::test]
async fn setup_errors_name_the_file() {
    let missing = AuthConfig {
        jwks_file: Some("/nonexistent/jwks.json".into()),
        ..config()
    };
    let err = Authenticator::new(&missing).err().unwrap();
    assert!(err.to_string().contains("/nonexistent/jwks.json"), "{err}");
    let invalid = AuthConfig {
        jwks_file: Some(fixture("rsa_a.pub.pem")),
        ..config()
    };
    let err = Authenticator::new(&invalid).err().unwrap();
    assert!(err.to_string().contains("rsa_a.pub.pem"), "{err}");
}

#[tokio::test]
async fn the_refresher_reloads_and_stops_on_shutdown() {
    let dir = std::env::temp_dir().join(format!("tenant-edge-refresher-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("jwks.json");
    std::fs::write(&path, JWKS_A).unwrap();
    let config = AuthConfig {
        jwks_file: Some(path.clone()),
        jwks_refresh_interval: Duration::from_millis(20),
        token_cache_capacity: 0,
        ..config()
    };
    let auth = Arc::new(Authenticator::new(&config).unwrap());
    let token_b = sign_rsa(RSA_B, Some("key-b"), &claims());
    // This spends the unknown-kid refetch; only the refresher can pick up key-b now.
    assert_eq!(
        auth_with(&auth, &token_b).await.unwrap_err(),
        AuthError::UnknownKey
    );
    let shutdown = CancellationToken::new();
    let refresher = auth.spawn_refresher(shutdown.clone());
    std::fs::write(&path, JWKS_AB).unwrap();
    let picked_up = tokio::time::timeout(Duration::from_secs(10), async {
        while auth_with(&auth, &token_b).await.is_err() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(picked_up.is_ok(), "the refresher did not load key-b");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), refresher)
        .await
        .unwrap()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reasons_are_stable_and_only_a_missing_school_is_forbidden() {
    let all = [
        (AuthError::Missing, "missing"),
        (AuthError::BadScheme, "bad_scheme"),
        (AuthError::TooLarge, "too_large"),
        (AuthError::Malformed, "malformed"),
        (AuthError::BadSignature, "bad_signature"),
        (AuthError::UnknownKey, "unknown_key"),
        (AuthError::Expired, "expired"),
        (AuthError::NotYetValid, "not_yet_valid"),
        (AuthError::WrongIssuer, "wrong_issuer"),
        (AuthError::WrongAudience, "wrong_audience"),
        (AuthError::AlgorithmNotAllowed, "algorithm_not_allowed"),
        (AuthError::NoSchoolClaim, "no_school_claim"),
        (AuthError::KeysUnavailable, "keys_unavailable"),
    ];
    for (error, reason) in all {
        assert_eq!(error.reason(), reason);
        assert_eq!(error.is_forbidden(), reason == "no_school_claim");
        let text = error.to_string();
        assert_eq!(text, text.to_lowercase());
        assert!(text.len() < 40, "{text}");
    }
}

#[test]
fn base64url_decoding() {
    assert_eq!(base64url_decode(b"").unwrap(), b"");
    assert_eq!(base64url_decode(b"YQ").unwrap(), b"a");
    assert_eq!(base64url_decode(b"YWI").unwrap(), b"ab");
    assert_eq!(base64url_decode(b"YWJj").unwrap(), b"abc");
    assert_eq!(base64url_decode(b"-_8").unwrap(), [0xfb, 0xff]);
    assert!(base64url_decode(b"Y").is_none());
    assert!(base64url_decode(b"YQ==").is_none());
    assert!(base64url_decode(b"a+b/").is_none());
    assert!(base64url_decode(b"YQ\n").is_none());
    // Non-zero leftover bits: a second spelling of "a", refused as jsonwebtoken does.
    assert!(base64url_decode(b"YR").is_none());
}

#[tokio::test]
async fn es256_and_eddsa_tokens_verify_with_their_jwks_keys() {
    let config = AuthConfig {
        algorithms: vec![Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256],
        jwks_file: Some(fixture("jwks_ec_ed.json")),
        ..config()
    };
    let auth = Authenticator::new(&config).unwrap();
    let ec = EncodingKey::from_ec_pem(include_bytes!("../../tests/fixtures/ec_p256.pem")).unwrap();
    let ed = EncodingKey::from_ed_pem(include_bytes!("../../tests/fixtures/ed25519.pem")).unwrap();
    let sign = |alg, kid: &str, key: &EncodingKey| {
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_string());
        encode(&header, &claims(), key).unwrap()
    };
    assert!(auth_with(&auth, &sign(Algorithm::ES256, "ec-key", &ec))
        .await
        .is_ok());
    assert!(auth_with(&auth, &sign(Algorithm::EdDSA, "ed-key", &ed))
        .await
        .is_ok());
    // A key is used only with its own algorithm and family.
    let swapped = sign(Algorithm::EdDSA, "ec-key", &ed);
    assert_eq!(
        auth_with(&auth, &swapped).await.unwrap_err(),
        AuthError::AlgorithmNotAllowed
    );
    let rsa_on_ec_key = sign_rsa(RSA_A, Some("ec-key"), &claims());
    assert_eq!(
        auth_with(&auth, &rsa_on_ec_key).await.unwrap_err(),
        AuthError::AlgorithmNotAllowed
    );
}

#[test]
fn the_authenticator_can_be_shared_across_tasks() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Authenticator>();
    assert_send_sync::<Arc<Principal>>();
    assert_send_sync::<AuthError>();
    assert_send_sync::<AuthSetupError>();
}
