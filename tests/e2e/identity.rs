//! Who is calling, at the edges: two Authorization headers, a JWKS endpoint that is down
//! at start, a key published right after a probe, a JWKS over HTTPS with a test CA, and a
//! body that is not UTF-8.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use crate::process::{next_line_matching, Process};
use crate::server::*;
use crate::support::*;

/// A JWKS endpoint of the test on 127.0.0.1, over HTTP or (with a certificate) HTTPS,
/// whose answer can change and which counts the requests it answers.
struct JwksEndpoint {
    address: SocketAddr,
    answer: Arc<Mutex<(u16, String)>>,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksEndpoint {
    /// Serves on `address` (port 0: any), with TLS when `tls` is given.
    async fn start(
        address: SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
        status: u16,
        body: &str,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind(address).await.unwrap();
        let address = listener.local_addr().unwrap();
        let answer = Arc::new(Mutex::new((status, body.to_string())));
        let hits = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (answer.clone(), hits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (served, counted, tls) = (served.clone(), counted.clone(), tls.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_| {
                        let (status, body) = served.lock().unwrap().clone();
                        counted.fetch_add(1, Ordering::SeqCst);
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::from(body)))
                                    .unwrap(),
                            )
                        }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                        Some(acceptor) => {
                            // A client that does not trust the certificate ends here.
                            let Ok(stream) = acceptor.accept(stream).await else {
                                return;
                            };
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        Self {
            address,
            answer,
            hits,
            task,
        }
    }

    fn serve(&self, status: u16, body: &str) {
        *self.answer.lock().unwrap() = (status, body.to_string());
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for JwksEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn fixture_text(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap()
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
fn free_port() -> SocketAddr {
    std::net::TcpListener::bind(any_port())
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Starts the in-process server without waiting for /readyz.
async fn start_unready(extra: &str) -> TestServer {
    let scratch = Scratch::new();
    let text = config_text(&scratch, extra);
    let path = scratch.dir.join("proxy.toml");
    std::fs::write(&path, &text).unwrap();
    let config = tenant_edge::config::from_str(&text, &path, &|_| None).expect("test config");
    let running = tenant_edge::serve::start(config)
        .await
        .expect("server starts");
    TestServer {
        base: format!("http://{}", running.address),
        admin: running.admin_address.map(|a| format!("http://{a}")),
        running: Some(running),
        client: http_client(),
        scratch,
    }
}

async fn readyz(server: &TestServer) -> (u16, Value) {
    let (status, _, body) = server.request(Method::GET, "/readyz", &[], None).await;
    (status, parse(&body))
}

// ---------------------------------------------------------------------------------------
// Two Authorization headers

/// The HTTP/2 (prior knowledge) request of `headers` to `path`; status and JSON body.
async fn h2_request(base: &str, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let mut request = http::Request::builder().uri(format!("{base}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(request.body(Full::default()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, parse(&body))
}

#[tokio::test]
async fn two_authorization_headers_are_refused_never_chosen() {
    let server = TestServer::start("").await;
    let (a, b) = (server.scratch.db("auth_a"), server.scratch.db("auth_b"));
    server.add_schools(&[&a, &b]).await;
    let bearer = |token: String| format!("Bearer {token}");
    let (token_a, token_b) = (bearer(token_for(&a)), bearer(hs256(&claims(&b))));
    let garbage = "Bearer not.a.token".to_string();
    for (case, first, second) in [
        ("one per school", &token_a, &token_b),
        ("valid then garbage", &token_a, &garbage),
        ("garbage then valid", &garbage, &token_a),
        ("the same twice", &token_a, &token_a),
    ] {
        let headers = [
            ("authorization", first.as_str()),
            ("authorization", second.as_str()),
        ];
        let (status, response_headers, body) = server
            .request(Method::GET, "/api/lunch-week", &headers, None)
            .await;
        let body = parse(&body);
        assert_eq!(status, 400, "HTTP/1.1, {case}: {body}");
        assert_eq!(body["code"], "several_authorization_headers", "{case}");
        assert_eq!(
            body["message"],
            "Bad request, send exactly one Authorization header"
        );
        assert!(body["requestId"].is_string());
        assert!(response_headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        let (status, body) = h2_request(&server.base, "/api/lunch-week", &headers).await;
        assert_eq!(status, 400, "HTTP/2, {case}: {body}");
        assert_eq!(body["code"], "several_authorization_headers", "{case}");
        // A write is refused the same way, before its body is looked at.
        let (status, _, _) = server
            .request(
                Method::POST,
                "/api/lunch-week",
                &headers,
                Some(r#"{"weekOf":"2020-11-16","isPublished":false}"#),
            )
            .await;
        assert_eq!(status, 400, "POST, {case}");
    }
    // One header alone is served, over both protocols.
    let one = [("authorization", token_a.as_str())];
    let (status, _, _) = server
        .request(Method::GET, "/api/lunch-week", &one, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        h2_request(&server.base, "/api/lunch-week", &one).await.0,
        200
    );
    // The public route takes no token: Authorization headers are ignored there.
    let public = format!("/api/lunch-week-public/{}/2020-11-16", a.replace('_', "-"));
    let (without, _, _) = server.request(Method::GET, &public, &[], None).await;
    let headers = [
        ("authorization", token_a.as_str()),
        ("authorization", garbage.as_str()),
    ];
    let (with_two, _, body) = server.request(Method::GET, &public, &headers, None).await;
    assert_eq!(with_two, without, "{}", String::from_utf8_lossy(&body));
    assert_eq!(parse(&body)["code"], "not_published");
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// The key set: down at start, rotation right after a probe

#[tokio::test]
async fn readyz_turns_ready_within_seconds_of_the_jwks_coming_back() {
    let address = free_port();
    let extra = format!(
        "[auth]\njwks_url = \"http://{address}/.well-known/jwks.json\"\n\
         jwks_refresh_interval = \"10m\"\n"
    );
    let server = start_unready(&extra).await;
    // The catalog loads, the keys do not: /readyz says which is missing.
    let body = wait_for(
        "/readyz to wait on the keys",
        Duration::from_secs(20),
        || async {
            let (status, body) = readyz(&server).await;
            (status == 503 && body["reason"] == "signing keys not fetched yet").then_some(body)
        },
    )
    .await;
    assert_eq!(body["status"], "not ready");
    // Tokens are refused meanwhile (no key to verify them with).
    let school = server.scratch.db("keys");
    server.scratch.insert_schools(&[("School", &school)]).await;
    server.wait_active(&[&school]).await;
    assert_eq!(server.weeks_status(&token_for(&school)).await, 401);
    // The provider comes up, failing at first: the server keeps trying (nothing listened
    // on the port before, so this is a retry after a refused connection).
    let jwks = JwksEndpoint::start(address, None, 503, "").await;
    wait_for("a retried fetch", Duration::from_secs(20), || async {
        (jwks.hits() >= 1).then_some(())
    })
    .await;
    assert_eq!(readyz(&server).await.0, 503);
    // Then it serves the key set: ready within seconds, not at the next regular refresh.
    jwks.serve(200, &fixture_text("jwks_a.json"));
    let back = Instant::now();
    wait_for("/readyz 200", Duration::from_secs(20), || async {
        (readyz(&server).await.0 == 200).then_some(())
    })
    .await;
    assert!(back.elapsed() < Duration::from_secs(20));
    assert_eq!(server.weeks_status(&token_for(&school)).await, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_key_published_right_after_a_probe_is_accepted_and_a_kid_flood_fetches_little() {
    let jwks = JwksEndpoint::start(any_port(), None, 200, &fixture_text("jwks_a.json")).await;
    // Refetches are earned back once an hour here, so the count below is the burst alone.
    let extra = format!(
        "[auth]\njwks_url = \"http://{}/jwks.json\"\njwks_refetch_cooldown = \"1h\"\n",
        jwks.address
    );
    let server = TestServer::start(&extra).await;
    let school = server.scratch.db("rotate");
    server.add_schools(&[&school]).await;
    assert_eq!(jwks.hits(), 1);
    let next_key = rs256("key-b", "rsa_b.pem", &claims(&school));
    assert_eq!(
        server.weeks_status(&next_key).await,
        401,
        "not published yet"
    );
    assert_eq!(jwks.hits(), 2, "the unknown kid caused one refetch");
    // Published a moment after the probe: the very next request finds it.
    jwks.serve(200, &fixture_text("jwks_ab.json"));
    assert_eq!(server.weeks_status(&next_key).await, 200);
    assert_eq!(jwks.hits(), 3);
    // A flood of made-up kids: one more fetch (the burst of three is then spent), and
    // every such request refused.
    for n in 0..30 {
        let token = rs256(&format!("made-up-{n}"), "rsa_a.pem", &claims(&school));
        assert_eq!(server.weeks_status(&token).await, 401);
    }
    assert_eq!(jwks.hits(), 4);
    assert_eq!(server.weeks_status(&token_for(&school)).await, 200);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// The key set over HTTPS

/// A CA and a certificate it signs for 127.0.0.1, as PEM, and the acceptor serving it.
struct TestCa {
    ca_pem: String,
    acceptor: tokio_rustls::TlsAcceptor,
}

fn test_ca(name: &str) -> TestCa {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("tenant-edge test CA {name}"));
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server_params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![server_cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::try_from(server_key.serialize_der()).unwrap(),
    )
    .unwrap();
    TestCa {
        ca_pem: ca.pem(),
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    }
}

#[tokio::test]
async fn the_jwks_over_https_is_trusted_through_jwks_ca_file() {
    let ca = test_ca("trusted");
    let jwks = JwksEndpoint::start(
        any_port(),
        Some(ca.acceptor.clone()),
        200,
        &fixture_text("jwks_a.json"),
    )
    .await;
    let scratch = Scratch::new();
    let ca_file = scratch.dir.join("jwks-ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let extra = format!(
        "[auth]\njwks_url = \"https://127.0.0.1:{}/jwks.json\"\njwks_ca_file = \"{}\"\n",
        jwks.address.port(),
        ca_file.display()
    );
    let server = TestServer::start_in(scratch, &extra).await; // ready: the keys came
    assert_eq!(jwks.hits(), 1);
    let school = server.scratch.db("tls");
    server.add_schools(&[&school]).await;
    assert_eq!(server.weeks_status(&token_for(&school)).await, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_jwks_certificate_the_configured_roots_do_not_trust_fails_closed_and_is_logged() {
    // The endpoint's certificate comes from one CA, the configured file holds another.
    let served = test_ca("served");
    let configured = test_ca("configured");
    let jwks = JwksEndpoint::start(
        any_port(),
        Some(served.acceptor.clone()),
        200,
        &fixture_text("jwks_a.json"),
    )
    .await;
    let scratch = Scratch::new();
    let ca_file = scratch.dir.join("jwks-ca.pem");
    std::fs::write(&ca_file, &configured.ca_pem).unwrap();
    let text = config_text(
        &scratch,
        &format!(
            "[auth]\njwks_url = \"https://127.0.0.1:{}/jwks.json\"\njwks_ca_file = \"{}\"\n",
            jwks.address.port(),
            ca_file.display()
        ),
    )
    .replace(
        "[log]\nlevel = \"warn\"\n",
        "[log]\nlevel = \"info\"\nformat = \"json\"\n",
    )
    .replace("[admin]\nlisten = \"127.0.0.1:0\"\n", "[admin]\n");
    let config = scratch.dir.join("proxy.toml");
    std::fs::write(&config, text).unwrap();
    let mut process = Process::spawn(&scratch, &config, &["serve"]);
    let base = process.listening_address().await;
    // Each failed fetch is logged with the TLS reason, not just "client error (Connect)".
    let line = next_line_matching(&mut process.stderr, Duration::from_secs(20), |l| {
        l.contains("no JWT key set yet")
    })
    .await;
    assert!(line.contains("\"level\":\"ERROR\""), "{line}");
    assert!(line.contains("UnknownIssuer"), "{line}");
    // Fails closed: not ready, tokens refused, and no request of ours got an answer.
    let client = http_client();
    let body = wait_for(
        "/readyz to wait on the keys",
        Duration::from_secs(20),
        || async {
            let (status, _, body) =
                send(&client, Method::GET, &format!("{base}/readyz"), &[], None).await?;
            let body = parse(&body);
            (status == 503 && body["reason"] == "signing keys not fetched yet").then_some(body)
        },
    )
    .await;
    assert_eq!(body["status"], "not ready");
    // A school in the catalog (created by now), and its token refused.
    let school = scratch.db("untrusted");
    scratch.insert_schools(&[("School", &school)]).await;
    let token = format!("Bearer {}", token_for(&school));
    let (status, _, _) = send(
        &client,
        Method::GET,
        &format!("{base}/api/lunch-week"),
        &[("authorization", &token)],
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 401);
    assert_eq!(jwks.hits(), 0, "no request got past the TLS handshake");
    process.signal("TERM");
    assert_eq!(process.exit_code(Duration::from_secs(20)).await, 0);
}

// ---------------------------------------------------------------------------------------
// Bodies that are not UTF-8

#[tokio::test]
async fn a_body_that_is_not_utf8_is_refused_even_in_an_ignored_field() {
    let server = TestServer::start("").await;
    let school = server.scratch.db("utf8");
    server.add_schools(&[&school]).await;
    let post = |body: Vec<u8>| {
        let request = http::Request::builder()
            .method(Method::POST)
            .uri(format!("{}/api/lunch-week", server.base))
            .header("authorization", format!("Bearer {}", token_for(&school)))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let client = server.client.clone();
        async move {
            let response = client.request(request).await.unwrap();
            let status = response.status().as_u16();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, parse(&body))
        }
    };
    let mut bad = br#"{"weekOf":"2020-11-16","isPublished":false,"note":""#.to_vec();
    bad.extend_from_slice(b"\xff\xfe\"}");
    let (status, body) = post(bad).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "body_not_utf8");
    assert_eq!(body["message"], "Request body must be UTF-8 encoded JSON");
    // Nothing was written.
    let (_, weeks) = server
        .call(&token_for(&school), Method::GET, "/api/lunch-week", None)
        .await;
    assert_eq!(weeks, json!([]));
    // The same body with text there is created.
    let good = r#"{"weekOf":"2020-11-16","isPublished":false,"note":"café"}"#;
    let (status, body) = post(good.as_bytes().to_vec()).await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}

/// A SIGHUP that points `[auth]` at another key set keeps that set fresh: the reloaded
/// authenticator refreshes on `jwks_refresh_interval` like the first one did.
#[tokio::test]
async fn after_a_reload_the_new_key_set_is_still_refreshed() {
    let scratch = Scratch::new();
    let process = crate::process::ServerProcess::start(&scratch, "proxy.toml", "").await;
    let jwks = JwksEndpoint::start(any_port(), None, 200, &fixture_text("jwks_a.json")).await;
    let text = std::fs::read_to_string(&process.config).unwrap();
    let file_line = format!("jwks_file = \"{}\"\n", fixture("jwks_a.json").display());
    assert!(text.contains(&file_line), "{text}");
    let reloaded = text.replace(
        &file_line,
        &format!(
            "jwks_url = \"http://{}/.well-known/jwks.json\"\njwks_refresh_interval = \"1s\"\n",
            jwks.address
        ),
    );
    std::fs::write(&process.config, reloaded).unwrap();
    process.signal("HUP");
    // The reload fetches once; only a refresher fetches again, every second.
    wait_for(
        "the reloaded key set to be fetched three times",
        Duration::from_secs(20),
        || async { (jwks.hits() >= 3).then_some(()) },
    )
    .await;
    assert_eq!(process.terminate(Duration::from_secs(10)).await, 0);
}
