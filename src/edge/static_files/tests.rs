//! Tests of the `static_files` module against a scratch directory each test creates (and
//! removes), with files outside it that must never be served. Failures are answered the
//! way the service answers them, through `ApiError::to_response`.

use std::sync::atomic::{AtomicUsize, Ordering};

use http_body_util::BodyExt;

use super::*;
use crate::edge::error::ApiError;
use http::header::IF_NONE_MATCH;

const INDEX_HTML: &str = "<!doctype html><title>lunch</title>";
const APP_JS: &str = "console.log('app')";
const STYLE_CSS: &str = "body{}";
const OUTSIDE: &str = "OUTSIDE SECRET";

/// A scratch tree: `base/site` is the static directory; `base/Cargo.toml` and
/// `base/outside/secret.txt` are what traversal would reach.
struct Scratch {
    base: PathBuf,
    files: StaticFiles,
}

impl Scratch {
    fn new() -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let base = std::env::temp_dir().join(format!(
            "tenant-edge-static-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&base);
        let site = base.join("site");
        std::fs::create_dir_all(site.join("assets")).unwrap();
        std::fs::create_dir_all(site.join("_app/immutable/chunks")).unwrap();
        std::fs::create_dir_all(site.join("docs")).unwrap();
        std::fs::create_dir_all(base.join("outside")).unwrap();
        std::fs::write(site.join("index.html"), INDEX_HTML).unwrap();
        std::fs::write(site.join("assets/app-1a2b3c4d.js"), APP_JS).unwrap();
        std::fs::write(site.join("_app/immutable/chunks/x.js"), APP_JS).unwrap();
        std::fs::write(site.join("style.css"), STYLE_CSS).unwrap();
        std::fs::write(site.join("index-3f9a2b1c.js"), APP_JS).unwrap();
        std::fs::write(site.join("docs/readme.txt"), "read me").unwrap();
        std::fs::write(site.join("font.WOFF2"), "w").unwrap();
        std::fs::write(site.join("data.bin"), "b").unwrap();
        std::fs::write(site.join(".env"), OUTSIDE).unwrap();
        std::fs::write(base.join("Cargo.toml"), OUTSIDE).unwrap();
        std::fs::write(base.join("outside/secret.txt"), OUTSIDE).unwrap();
        std::os::unix::fs::symlink(base.join("outside/secret.txt"), site.join("leak.txt")).unwrap();
        std::os::unix::fs::symlink(base.join("outside"), site.join("outdir")).unwrap();
        std::os::unix::fs::symlink(base.join("outside"), site.join("outroute")).unwrap();
        // A symlink that stays inside is fine.
        std::os::unix::fs::symlink(site.join("style.css"), site.join("alias.css")).unwrap();
        let big = std::fs::File::create(site.join("big.bin")).unwrap();
        big.set_len(MAX_FILE_BYTES + 1).unwrap();
        let files = StaticFiles::new(site).unwrap();
        Scratch { base, files }
    }

    async fn get(&self, path: &str) -> (StatusCode, HeaderMap, String) {
        self.request(Method::GET, path, HeaderMap::new()).await
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        headers: HeaderMap,
    ) -> (StatusCode, HeaderMap, String) {
        let response = match self.files.serve(&method, path, &headers).await {
            Ok(response) => response,
            Err(err) => ApiError::from(err).to_response(REQUEST_ID),
        };
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let body = String::from_utf8(body.to_vec()).unwrap();
        (parts.status, parts.headers, body)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

const REQUEST_ID: &str = "static-test";

/// (status, code, message) of the JSON error bodies.
const NOT_FOUND: (u16, &str, &str) = (404, "not_found", "Not found");
const BAD_REQUEST: (u16, &str, &str) = (400, "invalid_path", "Bad request");

/// Asserts that `body` is the flat JSON error `{"message", "code", "requestId"}`.
fn assert_error_body(body: &str, code: &str, message: &str, context: &str) {
    let parsed: serde_json::Value = serde_json::from_str(body).unwrap();
    let expected = serde_json::json!({
        "message": message,
        "code": code,
        "requestId": REQUEST_ID,
    });
    assert_eq!(parsed, expected, "{context}");
}

#[tokio::test]
async fn serves_files_with_type_and_cache_policy() {
    let scratch = Scratch::new();
    // (path, status, body, content type, cache control)
    let cases: &[(&str, u16, &str, &str, &str)] = &[
        ("/", 200, INDEX_HTML, "text/html; charset=utf-8", "no-cache"),
        (
            "/index.html",
            200,
            INDEX_HTML,
            "text/html; charset=utf-8",
            "no-cache",
        ),
        (
            "/assets/app-1a2b3c4d.js",
            200,
            APP_JS,
            "text/javascript; charset=utf-8",
            CACHE_IMMUTABLE,
        ),
        (
            "/_app/immutable/chunks/x.js",
            200,
            APP_JS,
            "text/javascript; charset=utf-8",
            CACHE_IMMUTABLE,
        ),
        (
            "/index-3f9a2b1c.js",
            200,
            APP_JS,
            "text/javascript; charset=utf-8",
            CACHE_IMMUTABLE,
        ),
        (
            "/style.css",
            200,
            STYLE_CSS,
            "text/css; charset=utf-8",
            "no-cache",
        ),
        (
            "/alias.css",
            200,
            STYLE_CSS,
            "text/css; charset=utf-8",
            "no-cache",
        ),
        (
            "/style.css?v=2",
            200,
            STYLE_CSS,
            "text/css; charset=utf-8",
            "no-cache",
        ),
        (
            "/%73tyle.css",
            200,
            STYLE_CSS,
            "text/css; charset=utf-8",
            "no-cache",
        ),
        (
            "//style.css",
            200,
            STYLE_CSS,
            "text/css; charset=utf-8",
            "no-cache",
        ),
        (
            "/docs/readme.txt",
            200,
            "read me",
            "text/plain; charset=utf-8",
            "no-cache",
        ),
        ("/font.WOFF2", 200, "w", "font/woff2", "no-cache"),
        (
            "/data.bin",
            200,
            "b",
            "application/octet-stream",
            "no-cache",
        ),
        // Client-side routes fall back to the app.
        (
            "/weeks/7",
            200,
            INDEX_HTML,
            "text/html; charset=utf-8",
            "no-cache",
        ),
        (
            "/weeks/7/",
            200,
            INDEX_HTML,
            "text/html; charset=utf-8",
            "no-cache",
        ),
        (
            "/assets",
            200,
            INDEX_HTML,
            "text/html; charset=utf-8",
            "no-cache",
        ),
        (
            "/.well-known",
            200,
            INDEX_HTML,
            "text/html; charset=utf-8",
            "no-cache",
        ),
    ];
    for (path, status, body, content_type, cache) in cases {
        let (got_status, headers, got_body) = scratch.get(path).await;
        assert_eq!(got_status.as_u16(), *status, "{path}");
        assert_eq!(got_body, *body, "{path}");
        assert_eq!(
            header(&headers, "content-type"),
            Some(*content_type),
            "{path}"
        );
        assert_eq!(header(&headers, "cache-control"), Some(*cache), "{path}");
        assert_eq!(
            header(&headers, "content-length"),
            Some(body.len().to_string().as_str()),
            "{path}"
        );
        assert!(header(&headers, "etag").is_some_and(|e| e.starts_with("W/\"")));
    }
}

#[tokio::test]
async fn refuses_what_is_not_a_servable_file() {
    let scratch = Scratch::new();
    // (path, (status, code, message))
    let cases: &[(&str, (u16, &str, &str))] = &[
        ("/missing.js", NOT_FOUND),
        ("/assets/missing-1a2b3c4d.js", NOT_FOUND),
        ("/index.html/x.js", NOT_FOUND),
        ("/../Cargo.toml", NOT_FOUND),
        ("/%2e%2e/Cargo.toml", NOT_FOUND),
        ("/%2E%2E/Cargo.toml", NOT_FOUND),
        ("/assets/..%2f..%2fCargo.toml", NOT_FOUND),
        ("/%2e%2e%2fCargo.toml", NOT_FOUND),
        ("/..%5cCargo.toml", NOT_FOUND),
        ("/..%5c..%5cCargo.toml", NOT_FOUND),
        ("/./style.css", NOT_FOUND),
        ("/assets/../../Cargo.toml", NOT_FOUND),
        ("/.env", NOT_FOUND),
        ("/%2eenv", NOT_FOUND),
        ("/leak.txt", NOT_FOUND),
        ("/outdir/secret.txt", NOT_FOUND),
        ("/big.bin", NOT_FOUND),
        ("/a%00b", BAD_REQUEST),
        ("/%ff", BAD_REQUEST),
        ("/%c3%28", BAD_REQUEST),
        ("/%zz", BAD_REQUEST),
        ("/%2", BAD_REQUEST),
        ("/%", BAD_REQUEST),
        ("relative", NOT_FOUND),
        ("", NOT_FOUND),
    ];
    for (path, (status, code, message)) in cases {
        let (got_status, headers, got_body) = scratch.get(path).await;
        assert_eq!(got_status.as_u16(), *status, "{path}");
        assert_error_body(&got_body, code, message, path);
        assert!(!got_body.contains(OUTSIDE), "{path}");
        assert_eq!(
            header(&headers, "content-type"),
            Some("application/json; charset=utf-8")
        );
    }
}

#[tokio::test]
async fn a_symlinked_directory_route_never_shows_outside_content() {
    let scratch = Scratch::new();
    // `outroute` resolves outside: it is no file, so the extensionless path falls back to
    // the app rather than listing or reading the outside directory.
    let (status, _, body) = scratch.get("/outroute").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, INDEX_HTML);
}

#[tokio::test]
async fn etag_answers_if_none_match_with_304() {
    let scratch = Scratch::new();
    let (_, headers, _) = scratch.get("/style.css").await;
    let etag = header(&headers, "etag").unwrap().to_owned();
    let strong = etag.trim_start_matches("W/").to_owned();
    // (If-None-Match, expected status)
    let cases: &[(&str, u16)] = &[
        (&etag, 304),
        (&strong, 304),
        ("*", 304),
        (&format!("W/\"other\", {etag}"), 304),
        ("W/\"other\"", 200),
        ("garbage", 200),
        ("", 200),
    ];
    for (if_none_match, status) in cases {
        let mut request = HeaderMap::new();
        request.insert(IF_NONE_MATCH, HeaderValue::from_str(if_none_match).unwrap());
        let (got, headers, body) = scratch.request(Method::GET, "/style.css", request).await;
        assert_eq!(got.as_u16(), *status, "{if_none_match}");
        if *status == 304 {
            assert!(body.is_empty());
            assert_eq!(header(&headers, "etag"), Some(etag.as_str()));
            assert_eq!(header(&headers, "cache-control"), Some("no-cache"));
        } else {
            assert_eq!(body, STYLE_CSS);
        }
    }
}

#[tokio::test]
async fn head_has_headers_without_body() {
    let scratch = Scratch::new();
    for path in ["/", "/style.css", "/weeks/7"] {
        let (status, headers, body) = scratch.request(Method::HEAD, path, HeaderMap::new()).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(body.is_empty(), "{path}");
        let expected = if path == "/style.css" {
            STYLE_CSS
        } else {
            INDEX_HTML
        };
        assert_eq!(
            header(&headers, "content-length"),
            Some(expected.len().to_string().as_str()),
            "{path}"
        );
        assert!(header(&headers, "etag").is_some());
    }
}

#[tokio::test]
async fn other_methods_are_405() {
    let scratch = Scratch::new();
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
        let (status, headers, body) = scratch.request(method, "/", HeaderMap::new()).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(header(&headers, "allow"), Some("GET, HEAD"));
        assert_error_body(&body, "method_not_allowed", "Method not allowed", "405");
    }
}

#[test]
fn new_requires_a_directory_with_index_html() {
    let scratch = Scratch::new();
    let site = scratch.files.root().to_path_buf();
    assert!(StaticFiles::new(site.join("style.css")).is_err());
    assert!(StaticFiles::new(site.join("assets")).is_err());
    assert!(StaticFiles::new(site.join("nonexistent")).is_err());
    assert!(StaticFiles::new(site).is_ok());
}

#[test]
fn content_hashes_are_recognised_narrowly() {
    // (file name, has a content hash)
    let cases = [
        ("index-3f9a2b1c.js", true),
        ("app.3f9a2b1c.css", true),
        ("chunk-Bx9kQ2aZ.js", true),
        ("main.0123456789abcdef0123.js", true),
        ("my-component.js", false),
        ("my-abcdefgh.js", false),
        ("3f9a2b1c.js", false),
        ("index-3f9a2b1.js", false),
        ("favicon.ico", false),
        ("index-3f9a2b1c", false),
        ("", false),
        (".", false),
        ("-.", false),
    ];
    for (name, expected) in cases {
        assert_eq!(has_content_hash(name), expected, "{name}");
    }
}

#[tokio::test]
async fn a_file_that_cannot_be_read_is_a_500_without_its_path() {
    let scratch = Scratch::new();
    // A symlink to itself: resolving it fails with ELOOP, an IO error other than "absent"
    // (a permission denial would not do: the tests may run as root).
    let looped = scratch.files.root().join("looped.txt");
    std::os::unix::fs::symlink(&looped, &looped).unwrap();
    let (status, _, body) = scratch.get("/looped.txt").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_error_body(&body, "internal_error", "Internal server error", "500");
    assert!(!body.contains("looped"), "{body}");
}

#[test]
fn paths_are_decoded_once_and_malformed_escapes_refused() {
    // (raw path, decoded; None is a 400)
    let cases: &[(&str, Option<&str>)] = &[
        ("/style.css", Some("/style.css")),
        ("/%73tyle.css?v=%zz", Some("/style.css")),
        ("/a%2fb", Some("/a/b")),
        ("/%252e", Some("/%2e")),
        ("/caf%C3%A9", Some("/café")),
        ("/a#%zz", Some("/a")),
        ("/%zz", None),
        ("/%2", None),
        ("/%", None),
        ("/%%41", None),
        ("/%g0", None),
        ("/a%00b", None),
        ("/%ff", None),
        ("/%c3%28", None),
    ];
    for (raw, expected) in cases {
        let decoded = decode_path(raw).ok();
        assert_eq!(decoded.as_deref(), *expected, "{raw}");
    }
}
