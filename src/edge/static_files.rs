//! The built single-page app (`server.static_dir`), served for every non-`/api` path.
//!
//! This module owns the mapping from a request path to a file under the static directory,
//! the response headers of that file (type, caching, validators) and the single-page-app
//! fallback: a `GET` that matches no file gets `index.html` with 200, as the original did,
//! so client-side routes such as `/weeks/7` load the app. It must never serve anything
//! outside the directory: the path is percent-decoded once, then every segment is checked
//! (no `..`, `.`, `\`, NUL or hidden names), and the file finally opened must canonicalize
//! to a path under the canonical directory, so a symlink cannot lead out either. It must not
//! route `/api` paths (the router does), and it does not build error responses: a failure is
//! a [`StaticError`], which `edge::error::ApiError` turns into a status and a body (never
//! with a file system path or an IO error's text in it).
//!
//! Decisions worth knowing:
//! - A path whose last segment has a file extension (`/missing.js`) and matches no file
//!   gets 404, not `index.html`: a missing script or image answered with HTML breaks in
//!   confusing ways (a "syntax error" in the browser console) and hides deploy mistakes.
//! - Files over [`MAX_FILE_BYTES`] are answered 404 rather than loaded into memory whole; a
//!   built front end has no such files, and streaming them is not worth the code yet.
//! - Hidden segments (`/.env`, `/.git/config`) are refused, except `.well-known`, so a
//!   stray dotfile in the build directory is not published.
//! - A malformed percent-escape (`%zz`, `%2`) is a 400, like invalid UTF-8 and an encoded
//!   NUL. The `percent-encoding` crate decodes; it passes malformed escapes through as
//!   text, so they are refused before decoding.

use std::borrow::Cow;
use std::io;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, ETAG, X_CONTENT_TYPE_OPTIONS};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;
use percent_encoding::percent_decode_str;
use tokio::io::AsyncReadExt;

use crate::edge::etag::matches_if_none_match;
use crate::edge::hex::Hex;

/// Files larger than this are not served (see the module comment).
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The methods a static file answers, as the `Allow` header of a 405 names them.
pub const ALLOW: &str = "GET, HEAD";

const INDEX: &str = "index.html";
const CACHE_IMMUTABLE: &str = "public, max-age=31536000, immutable";
const CACHE_REVALIDATE: &str = "no-cache";

/// The static front end: a canonical directory that holds an `index.html`.
#[derive(Debug, Clone)]
pub struct StaticFiles {
    /// Canonical (absolute, symlinks resolved), so "is this file inside" is a prefix test.
    root: PathBuf,
}

/// Why a static request was not answered with a file; `edge::error::ApiError` maps it
/// to a response.
#[derive(Debug, thiserror::Error)]
pub enum StaticError {
    /// Malformed percent-escape, invalid UTF-8 or an encoded NUL in the path.
    #[error("malformed static path")]
    BadRequest,
    /// No such file, a refused path or a file too large.
    #[error("no such static file")]
    NotFound,
    /// Not `GET` or `HEAD`.
    #[error("method not allowed for static files")]
    MethodNotAllowed,
    /// The file exists but could not be read. The source is for logs only.
    #[error("cannot read static file")]
    Io(#[source] io::Error),
}

impl StaticFiles {
    /// Opens `dir`: it must be a directory with an `index.html` file in it. Runs once at
    /// startup, so blocking file system calls are fine here.
    pub fn new(dir: PathBuf) -> io::Result<StaticFiles> {
        let root = std::fs::canonicalize(&dir)?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a directory", dir.display()),
            ));
        }
        let index = std::fs::canonicalize(root.join(INDEX))?;
        if !index.starts_with(&root) || !index.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} has no index.html file", dir.display()),
            ));
        }
        Ok(StaticFiles { root })
    }

    /// The canonical directory served.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Answers a request for a non-`/api` path with a file, or says why not.
    pub async fn serve(
        &self,
        method: &Method,
        raw_path: &str,
        request_headers: &HeaderMap,
    ) -> Result<Response<Full<Bytes>>, StaticError> {
        let head = *method == Method::HEAD;
        if !head && *method != Method::GET {
            return Err(StaticError::MethodNotAllowed);
        }
        let decoded = decode_path(raw_path)?;
        let segments = checked_segments(&decoded).ok_or(StaticError::NotFound)?;

        let (relative, immutable_candidate) = match segments.last() {
            None => (PathBuf::from(INDEX), false),
            Some(_) => (segments.iter().collect(), true),
        };
        if let Some(file) = self.open(&relative).await? {
            let cache = if immutable_candidate && is_immutable(&segments) {
                CACHE_IMMUTABLE
            } else {
                CACHE_REVALIDATE
            };
            return file.into_response(cache, head, request_headers);
        }
        if segments.last().is_some_and(|last| has_extension(last)) {
            return Err(StaticError::NotFound);
        }
        // The single-page-app fallback: the front end's router handles this path.
        match self.open(Path::new(INDEX)).await? {
            Some(file) => file.into_response(CACHE_REVALIDATE, head, request_headers),
            None => Err(StaticError::NotFound),
        }
    }

    /// The regular file at `relative` under the root, if there is one inside the root.
    async fn open(&self, relative: &Path) -> Result<Option<LoadedFile>, StaticError> {
        let canonical = match tokio::fs::canonicalize(self.root.join(relative)).await {
            Ok(path) => path,
            Err(error) if is_absent(&error) => return Ok(None),
            Err(error) => return Err(StaticError::Io(error)),
        };
        // A symlink that leads out of the directory is treated as no file at all.
        if !canonical.starts_with(&self.root) {
            return Ok(None);
        }
        let mut file = match tokio::fs::File::open(&canonical).await {
            Ok(file) => file,
            Err(error) if is_absent(&error) => return Ok(None),
            Err(error) => return Err(StaticError::Io(error)),
        };
        // The metadata of the open handle, so size, mtime and content belong together.
        let metadata = file.metadata().await.map_err(StaticError::Io)?;
        if !metadata.is_file() {
            return Ok(None);
        }
        if metadata.len() > MAX_FILE_BYTES {
            return Err(StaticError::NotFound);
        }
        let mut content = Vec::with_capacity(metadata.len() as usize);
        // One byte more than allowed, to notice a file that grew after the check.
        (&mut file)
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut content)
            .await
            .map_err(StaticError::Io)?;
        if content.len() as u64 > MAX_FILE_BYTES {
            return Err(StaticError::NotFound);
        }
        let mtime_nanos = metadata
            .modified()
            .ok()
            .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |since| {
                u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
            });
        let etag = file_etag(content.len(), mtime_nanos);
        let content_type = content_type(&canonical);
        Ok(Some(LoadedFile {
            content: Bytes::from(content),
            content_type,
            etag,
        }))
    }
}

/// A file read into memory with what its headers need.
struct LoadedFile {
    content: Bytes,
    content_type: &'static str,
    etag: String,
}

impl LoadedFile {
    fn into_response(
        self,
        cache: &'static str,
        head: bool,
        request_headers: &HeaderMap,
    ) -> Result<Response<Full<Bytes>>, StaticError> {
        let etag = HeaderValue::from_str(&self.etag).ok();
        let not_modified = etag
            .as_ref()
            .is_some_and(|etag| matches_if_none_match(request_headers, etag.as_bytes()));
        let length = self.content.len();
        let body = if head || not_modified {
            Bytes::new()
        } else {
            self.content
        };
        let mut response = Response::new(Full::new(body));
        let headers = response.headers_mut();
        if let Some(etag) = etag {
            headers.insert(ETAG, etag);
        }
        headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
        if not_modified {
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            return Ok(response);
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        // Set explicitly so a HEAD answer carries the length of the GET body.
        headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
        Ok(response)
    }
}

fn is_absent(error: &io::Error) -> bool {
    // NotADirectory: `/index.html/x` walks through a file.
    matches!(
        error.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// `W/"<length in hex>-<modification time in nanoseconds, in hex>"`.
fn file_etag(length: usize, mtime_nanos: u64) -> String {
    let mut tag = String::with_capacity(40);
    tag.push_str("W/\"");
    tag.push_str(Hex::new(length as u64, 1).as_str());
    tag.push('-');
    tag.push_str(Hex::new(mtime_nanos, 1).as_str());
    tag.push('"');
    tag
}

/// Percent-decodes the path part of a raw request target (a query, if any, is dropped).
/// Borrows when there is nothing to decode.
fn decode_path(raw_path: &str) -> Result<Cow<'_, str>, StaticError> {
    let path = raw_path.split(['?', '#']).next().unwrap_or("");
    if !escapes_are_well_formed(path) {
        return Err(StaticError::BadRequest);
    }
    let decoded = percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| StaticError::BadRequest)?;
    if decoded.contains('\0') {
        return Err(StaticError::BadRequest);
    }
    Ok(decoded)
}

/// Whether every `%` starts an escape of two hex digits.
fn escapes_are_well_formed(path: &str) -> bool {
    path.split('%').skip(1).all(|after| {
        after
            .as_bytes()
            .get(..2)
            .is_some_and(|digits| digits.iter().all(u8::is_ascii_hexdigit))
    })
}

/// The non-empty segments of a decoded path, or `None` if any segment is refused.
/// Splitting after decoding means an encoded `%2f` separates segments too, so
/// `..%2f..%2fsecret` is seen as `..`, `..`, `secret` and refused.
fn checked_segments(decoded: &str) -> Option<Vec<&str>> {
    if !decoded.starts_with('/') {
        return None;
    }
    let mut segments = Vec::new();
    for segment in decoded.split('/').filter(|s| !s.is_empty()) {
        let refused = segment == "."
            || segment == ".."
            || segment.contains(['\\', '\0'])
            || (segment.starts_with('.') && segment != ".well-known");
        if refused {
            return None;
        }
        segments.push(segment);
    }
    Some(segments)
}

/// `missing.js` has one; `weeks`, `7` and `.well-known` do not.
fn has_extension(segment: &str) -> bool {
    matches!(segment.rfind('.'), Some(dot) if dot > 0 && dot + 1 < segment.len())
}

/// Whether a file may be cached forever: it sits in a build tool's hashed-output directory
/// (`assets/`, `build/`, `_app/immutable/` at the top), or its name carries a content hash.
/// Anything else must be revalidated, since a redeploy may change it under the same name.
fn is_immutable(segments: &[&str]) -> bool {
    let in_hashed_dir = matches!(
        segments,
        ["assets" | "build", _, ..] | ["_app", "immutable", _, ..]
    );
    in_hashed_dir || segments.last().is_some_and(|name| has_content_hash(name))
}

/// `index-3f9a2b1c.js`, `app.3f9a2b1c.css`, `chunk-Bx9kQ2aZ.js`: the part of the name just
/// before the extension is either 8..=64 hex digits with at least one digit, or exactly
/// 8 letters and digits with at least one of each (Rollup's default). The rule is narrow
/// on purpose: calling a plain name such as `my-component.js` immutable would pin stale
/// code in browsers for a year.
fn has_content_hash(name: &str) -> bool {
    let Some((stem, _extension)) = name.rsplit_once('.') else {
        return false;
    };
    let Some(hash) = stem
        .rsplit(['-', '.'])
        .next()
        .filter(|h| h.len() < stem.len())
    else {
        return false;
    };
    let has_digit = hash.bytes().any(|b| b.is_ascii_digit());
    let hex = (8..=64).contains(&hash.len())
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let rollup = hash.len() == 8
        && hash.bytes().all(|b| b.is_ascii_alphanumeric())
        && hash.bytes().any(|b| b.is_ascii_alphabetic());
    has_digit && (hex || rollup)
}

fn content_type(path: &Path) -> &'static str {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match extension.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "txt" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests;
