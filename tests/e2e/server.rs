//! Starting the real server in-process, an HTTP client, and tokens, for the API tests.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tenant_edge::serve::{start, Running};

use crate::support::*;

pub const HS_SECRET: &str = "test-secret-0123456789abcdef0123456789abcdef";
pub const ISSUER: &str = "https://school-lunch.example/";
pub const AUDIENCE: &str = "https://school-lunch/api";
pub const CLAIM: &str = "https://school-lunch/school_database";
pub const ADMIN_TOKEN: &str = "admin-test-token";

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A server and the scratch namespace it lives in.
pub struct TestServer {
    pub running: Option<Running>,
    pub base: String,
    pub admin: Option<String>,
    pub client: HttpClient,
    pub scratch: Scratch,
}

/// The configuration text of a test server: both HS256 (dev tokens) and RS256 (JWKS file)
/// accepted, admin API on port 0. `extra` is appended (sections must not repeat).
pub fn config_text(scratch: &Scratch, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{server}\n\
         [catalog]\nurl = \"{catalog}\"\n{catalog_extra}\n\
         [tenants]\n{tenants}\n\
         [auth]\nalgorithms = [\"RS256\", \"HS256\"]\nhs256_secret = \"{HS_SECRET}\"\n{auth}\n\
         [admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{ADMIN_TOKEN}\"\n\
         [log]\nlevel = \"warn\"\n",
        catalog = pg_url(&scratch.catalog()),
        server = section(extra, "server"),
        catalog_extra = section(extra, "catalog"),
        // Test servers give up on a school's database after 1s unless told otherwise.
        tenants = match section(extra, "tenants") {
            t if t.contains("acquire_timeout") => t,
            t => format!("acquire_timeout = \"1s\"\n{t}"),
        },
        // The fixture key set from a file, unless the test brings its own source.
        auth = match section(extra, "auth") {
            a if a.contains("jwks_") => a,
            a => format!("jwks_file = \"{}\"\n{a}", fixture("jwks_a.json").display()),
        },
    )
}

/// The lines of `extra` under `[name]` (extra is written as TOML with sections).
fn section(extra: &str, name: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in extra.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            inside = trimmed == format!("[{name}]");
            continue;
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

impl TestServer {
    pub async fn start(extra: &str) -> Self {
        Self::start_in(Scratch::new(), extra).await
    }

    pub async fn start_in(scratch: Scratch, extra: &str) -> Self {
        let text = config_text(&scratch, extra);
        let path = scratch.dir.join("proxy.toml");
        std::fs::write(&path, &text).unwrap();
        let config = tenant_edge::config::from_str(&text, &path, &|_| None).expect("test config");
        let running = start(config).await.expect("server starts");
        let base = format!("http://{}", running.address);
        let admin = running.admin_address.map(|a| format!("http://{a}"));
        let server = Self {
            running: Some(running),
            base,
            admin,
            client: http_client(),
            scratch,
        };
        server.wait_ready().await;
        server
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    pub async fn wait_ready(&self) {
        wait_for(
            "the server to be ready",
            Duration::from_secs(20),
            || async {
                let (status, _, _) = self.request(Method::GET, "/readyz", &[], None).await;
                (status == 200).then_some(())
            },
        )
        .await;
    }

    /// Adds schools to the catalog and waits until the server has provisioned and
    /// activated every one of them.
    pub async fn add_schools(&self, databases: &[&str]) {
        let rows: Vec<(&str, &str)> = databases.iter().map(|d| ("School", *d)).collect();
        self.scratch.insert_schools(&rows).await;
        self.wait_active(databases).await;
    }

    pub async fn wait_active(&self, databases: &[&str]) {
        wait_for(
            "schools to become active",
            Duration::from_secs(30),
            || async {
                let _ = self.running().refresh().await;
                let snapshot = self.running().app.snapshot.load();
                databases
                    .iter()
                    .all(|d| {
                        snapshot.by_database(d).is_some_and(|t| {
                            t.status == tenant_edge::domain::status::SchoolStatus::Active
                        })
                    })
                    .then_some(())
            },
        )
        .await;
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> (u16, HeaderMap, Vec<u8>) {
        self.request_to(&self.base, method, path, headers, body)
            .await
    }

    pub async fn request_to(
        &self,
        base: &str,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> (u16, HeaderMap, Vec<u8>) {
        send(
            &self.client,
            method,
            &format!("{base}{path}"),
            headers,
            body,
        )
        .await
        .expect("HTTP request")
    }

    /// A request with a token; returns status and parsed JSON (Null for an empty body).
    pub async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let auth = format!("Bearer {token}");
        let body = body.map(|b| b.to_string());
        let (status, _, bytes) = self
            .request(method, path, &[("authorization", &auth)], body.as_deref())
            .await;
        (status, parse(&bytes))
    }

    /// Status of `GET /api/lunch-week` with `token`.
    pub async fn weeks_status(&self, token: &str) -> u16 {
        self.call(token, Method::GET, "/api/lunch-week", None)
            .await
            .0
    }

    /// Waits until `GET /api/lunch-week` with `token` answers `status`.
    pub async fn wait_weeks_status(
        &self,
        token: &str,
        status: u16,
        what: &str,
        deadline: Duration,
    ) {
        wait_for(what, deadline, || async {
            (self.weeks_status(token).await == status).then_some(())
        })
        .await;
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // A test that panicked did not call stop(): close the pools so the scratch
        // databases can be dropped.
        if let Some(running) = self.running.take() {
            for tenant in running.app.snapshot.load().tenants() {
                tenant.pool.close();
            }
        }
    }
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// The tests' HTTP client. Its idle connections are dropped after 500 ms, below any
/// timeout after which a test's server closes an idle connection (the shortest a test sets
/// is 1 s): a client that reuses a connection the server is closing at that moment gets
/// `IncompleteMessage` (forty_schools_share_a_budget_of_ten_connections
/// hit it in 11 of 11 full-suite runs on 2026-11-27: its client connection sat idle through the 5 s of
/// provisioning 40 schools, and the server then closed idle connections at
/// header_read_timeout; since 260df80 it keeps them for keep_alive_timeout, 75 s). A
/// client, like a load balancer, must give up idle connections before the server does.
pub fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_millis(500))
        .pool_timer(TokioTimer::new())
        .build_http()
}

/// One HTTP request (a JSON body when given); None when the connection fails.
pub async fn send(
    client: &HttpClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Option<(u16, HeaderMap, Vec<u8>)> {
    let mut builder = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    if body.is_some() {
        builder = builder.header("content-type", "application/json");
    }
    let request = builder
        .body(Full::new(Bytes::from(body.unwrap_or("").to_string())))
        .unwrap();
    let response = match client.request(request).await {
        Ok(response) => response,
        Err(err) => {
            eprintln!("request to {url} failed: {err:?}");
            return None;
        }
    };
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .ok()?
        .to_bytes()
        .to_vec();
    Some((status, headers, body))
}

pub fn parse(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(bytes)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(bytes)))
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Standard claims for `school`, to be adjusted by a test.
pub fn claims(school: &str) -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": now() + 3600,
        "iat": now(),
        "sub": "auth0|test",
        CLAIM: school,
        "https://school-lunch/school_name": "Test School",
    })
}

pub fn hs256(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .unwrap()
}

pub fn rs256(kid: &str, key_file: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    let pem = std::fs::read(fixture(key_file)).unwrap();
    encode(&header, claims, &EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap()
}

pub fn token_for(school: &str) -> String {
    rs256("key-a", "rsa_a.pem", &claims(school))
}
