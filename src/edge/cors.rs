//! CORS: which origins may read responses, and the answer to a preflight `OPTIONS`.
//!
//! This module owns the CORS response headers of API.md ("Protocol details"): in
//! any-origin mode `Access-Control-Allow-Origin: *` on every response, as the original
//! did; in list mode the request's `Origin` echoed only when it is configured, with
//! `Vary: Origin` so a shared cache never serves one origin's answer to another. It must
//! not decide routing (the router says what is a preflight), authenticate anybody (CORS
//! is a browser read permission, not access control), or choose any status but the
//! preflight's 204.

use bytes::Bytes;
use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS, CONTENT_LENGTH, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Full;

/// The methods API.md promises in a preflight answer, exactly as the original sent them.
pub const ALLOW_METHODS: &str = "GET,HEAD,PUT,PATCH,POST,DELETE";

/// How long a browser may cache a preflight answer, in seconds. Ten minutes: long enough
/// to spare a round trip per request, short enough that a configuration change is seen.
pub const MAX_AGE_SECONDS: &str = "600";

/// The longest `Access-Control-Request-Headers` echoed back. Browsers list a handful of
/// names; anything longer is not a real preflight and is not worth reflecting.
const MAX_REQUEST_HEADERS_BYTES: usize = 1024;

/// The CORS policy of the main listener: a view of `server.cors_origins` in the running
/// configuration, so a reload changes it with nothing else to update.
#[derive(Debug, Clone, Copy)]
pub struct Cors<'a> {
    /// `None`: any origin (`*`). `Some`: only these origins, compared without regard to
    /// ASCII case because scheme and host are case-insensitive.
    allowed: Option<&'a [String]>,
}

impl<'a> Cors<'a> {
    /// `None` allows any origin; `Some(list)` allows only the origins in `list` (an empty
    /// list allows none).
    pub fn new(origins: &'a Option<Vec<String>>) -> Cors<'a> {
        Cors {
            allowed: origins.as_deref(),
        }
    }

    /// Adds the CORS headers of an actual (non-preflight) response.
    pub fn apply(&self, request_origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
        match &self.allowed {
            None => {
                headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
            }
            Some(list) => {
                // Always, even when the origin is refused or absent: the answer depends on
                // the header, so caches must key on it either way.
                headers.append(VARY, HeaderValue::from_static("Origin"));
                if let Some(origin) = request_origin.filter(|o| is_listed(list, o)) {
                    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
                }
            }
        }
    }

    /// The answer to a CORS preflight: 204 with the allowed methods, the requested headers
    /// echoed when they are a well-formed list, and the origin header as in [`Cors::apply`].
    /// An origin that is not allowed gets the same 204 without `Access-Control-Allow-Origin`,
    /// which the browser reads as a refusal.
    pub fn preflight(&self, request_headers: &HeaderMap) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::NO_CONTENT;
        let headers = response.headers_mut();
        self.apply(request_headers.get(ORIGIN), headers);
        headers.insert(
            ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
        );
        if let Some(requested) = requested_headers(request_headers) {
            headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, requested);
        }
        // The echoed list depends on the request header too.
        headers.append(
            VARY,
            HeaderValue::from_static("Access-Control-Request-Headers"),
        );
        headers.insert(
            ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(MAX_AGE_SECONDS),
        );
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        response
    }
}

fn is_listed(list: &[String], origin: &HeaderValue) -> bool {
    let origin = origin.as_bytes();
    list.iter()
        .any(|allowed| allowed.as_bytes().eq_ignore_ascii_case(origin))
}

/// The `Access-Control-Request-Headers` values to echo, or `None` when absent, empty or not
/// a plain list of header names. Reflecting arbitrary bytes would let a caller place text
/// of their choosing in our response; a list of tokens can carry nothing but names.
fn requested_headers(request_headers: &HeaderMap) -> Option<HeaderValue> {
    let mut joined: Vec<u8> = Vec::new();
    for value in request_headers.get_all(ACCESS_CONTROL_REQUEST_HEADERS) {
        let bytes = value.as_bytes();
        if !is_header_name_list(bytes) {
            return None;
        }
        if bytes.iter().all(|&b| is_separator(b)) {
            continue;
        }
        if !joined.is_empty() {
            joined.push(b',');
        }
        joined.extend_from_slice(bytes);
    }
    if joined.is_empty() || joined.len() > MAX_REQUEST_HEADERS_BYTES {
        return None;
    }
    HeaderValue::from_bytes(&joined).ok()
}

/// Tokens (RFC 9110 `tchar`) separated by commas, spaces or tabs.
fn is_header_name_list(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| is_tchar(b) || is_separator(b))
}

fn is_separator(b: u8) -> bool {
    matches!(b, b',' | b' ' | b'\t')
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(origins: &[&str]) -> Cors<'static> {
        Cors::new(Box::leak(Box::new(Some(
            origins.iter().map(|o| o.to_string()).collect(),
        ))))
    }

    fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
        headers.get(name).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn apply_sets_origin_by_mode() {
        let any = Cors::new(&None);
        let listed = list(&["https://app.example", "http://localhost:5173"]);
        // (policy, request Origin, expected Allow-Origin, expected Vary)
        type Case<'a> = (
            &'a Cors<'a>,
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
        );
        let cases: &[Case] = &[
            (&any, None, Some("*"), None),
            (&any, Some("https://evil.example"), Some("*"), None),
            (&listed, None, None, Some("Origin")),
            (
                &listed,
                Some("https://app.example"),
                Some("https://app.example"),
                Some("Origin"),
            ),
            (
                &listed,
                Some("HTTPS://APP.example"),
                Some("HTTPS://APP.example"),
                Some("Origin"),
            ),
            (
                &listed,
                Some("http://localhost:5173"),
                Some("http://localhost:5173"),
                Some("Origin"),
            ),
            (&listed, Some("https://evil.example"), None, Some("Origin")),
            (
                &listed,
                Some("https://app.example.evil"),
                None,
                Some("Origin"),
            ),
            (&listed, Some("null"), None, Some("Origin")),
            (
                &list(&[]),
                Some("https://app.example"),
                None,
                Some("Origin"),
            ),
        ];
        for (i, (cors, origin, allow, vary)) in cases.iter().enumerate() {
            let origin = origin.map(|o| HeaderValue::from_str(o).unwrap());
            let mut headers = HeaderMap::new();
            cors.apply(origin.as_ref(), &mut headers);
            assert_eq!(
                header(&headers, "access-control-allow-origin"),
                *allow,
                "case {i}"
            );
            assert_eq!(header(&headers, "vary"), *vary, "case {i}");
        }
    }

    #[test]
    fn apply_keeps_an_existing_vary() {
        let mut headers = HeaderMap::new();
        headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
        list(&["https://app.example"]).apply(None, &mut headers);
        let vary: Vec<_> = headers.get_all(VARY).iter().collect();
        assert_eq!(vary, ["accept-encoding", "Origin"]);
    }

    #[test]
    fn preflight_echoes_only_well_formed_header_lists() {
        // (Access-Control-Request-Headers values, expected Allow-Headers)
        let cases: &[(&[&[u8]], Option<&str>)] = &[
            (&[], None),
            (&[b"authorization"], Some("authorization")),
            (
                &[b"authorization, content-type"],
                Some("authorization, content-type"),
            ),
            (
                &[b"authorization,content-type"],
                Some("authorization,content-type"),
            ),
            (&[b"x-a", b"x-b"], Some("x-a,x-b")),
            (&[b""], None),
            (&[b" , "], None),
            (&[b"a\r\nb"], None),
            (&[b"a:b"], None),
            (&[b"<script>"], None),
            (&[b"a;b"], None),
            (&[b"\"quoted\""], None),
            (&[b"caf\xc3\xa9"], None),
            (&[b"ok", b"bad/name"], None),
        ];
        let cors = Cors::new(&None);
        for (i, (values, expected)) in cases.iter().enumerate() {
            let mut request = HeaderMap::new();
            for value in values.iter() {
                // Values the http crate itself refuses (CR LF) cannot arrive at all.
                if let Ok(value) = HeaderValue::from_bytes(value) {
                    request.append(ACCESS_CONTROL_REQUEST_HEADERS, value);
                }
            }
            let response = cors.preflight(&request);
            assert_eq!(
                header(response.headers(), "access-control-allow-headers"),
                *expected,
                "case {i}"
            );
        }
    }

    #[test]
    fn preflight_refuses_an_overlong_header_list() {
        let mut request = HeaderMap::new();
        let long = "x-a,".repeat(MAX_REQUEST_HEADERS_BYTES);
        request.insert(
            ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_str(&long).unwrap(),
        );
        let response = Cors::new(&None).preflight(&request);
        assert!(response
            .headers()
            .get(ACCESS_CONTROL_ALLOW_HEADERS)
            .is_none());
    }

    #[test]
    fn preflight_answers_204_with_fixed_headers() {
        let any = Cors::new(&None);
        let listed = list(&["https://app.example"]);
        // (policy, request Origin, expected Allow-Origin)
        let cases: &[(&Cors, Option<&str>, Option<&str>)] = &[
            (&any, None, Some("*")),
            (&any, Some("https://x.example"), Some("*")),
            (
                &listed,
                Some("https://app.example"),
                Some("https://app.example"),
            ),
            (&listed, Some("https://x.example"), None),
            (&listed, None, None),
        ];
        for (i, (cors, origin, allow)) in cases.iter().enumerate() {
            let mut request = HeaderMap::new();
            if let Some(origin) = origin {
                request.insert(ORIGIN, HeaderValue::from_str(origin).unwrap());
            }
            let response = cors.preflight(&request);
            let headers = response.headers();
            assert_eq!(response.status(), StatusCode::NO_CONTENT, "case {i}");
            assert_eq!(
                header(headers, "access-control-allow-origin"),
                *allow,
                "case {i}"
            );
            assert_eq!(
                header(headers, "access-control-allow-methods"),
                Some("GET,HEAD,PUT,PATCH,POST,DELETE")
            );
            assert_eq!(header(headers, "access-control-max-age"), Some("600"));
            assert_eq!(header(headers, "content-length"), Some("0"));
        }
    }
}
