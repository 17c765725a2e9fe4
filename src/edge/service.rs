//! One request, start to finish: route, authenticate, resolve the school in the snapshot,
//! take a connection from its pool, run the handler, and write the response.
//!
//! This is the data path of DESIGN.md and nothing else: no catalog query, no lock, no
//! waiting on the control path. Every failure becomes an [`ApiError`] and is turned into
//! a response in one place ([`ApiError::to_response`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use crate::auth::CacheLookup;
use crate::domain::status::SchoolStatus;
use crate::edge::cors::Cors;
use crate::edge::error::ApiError;
use crate::edge::request_id;
use crate::edge::server::Handler;
use crate::edge::static_files::StaticFiles;
use crate::lunch::handlers::{self, Reply};
use crate::lunch::model;
use crate::lunch::router::{self, Route};
use crate::pool::TenantConnection;
use crate::state::{App, Readiness};
use crate::tenancy::snapshot::Tenant;

pub type Body = Full<Bytes>;

/// How long a timed-out request waits for its query's cancellation to be delivered.
const CANCEL_TIMEOUT: Duration = Duration::from_millis(500);

const JSON: HeaderValue = HeaderValue::from_static("application/json; charset=utf-8");

/// The main listener's handler: the school-lunch API, the probes and the static front end.
pub struct Site {
    pub app: Arc<App>,
    /// `[server] static_dir`, read at start.
    pub static_files: Option<StaticFiles>,
}

impl Handler for Site {
    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<Body> {
        handle(&self.app, self.static_files.as_ref(), request).await
    }
}

/// Handles one request; never fails (every error is a response).
async fn handle(
    app: &Arc<App>,
    static_files: Option<&StaticFiles>,
    request: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let request_id = request_id::accept_or_generate(parts.headers.get("x-request-id"));
    let routed = router::route(&parts.method, parts.uri.path());
    let route_name = routed.as_ref().map_or("unmatched", Route::name);
    let route_label = routed.as_ref().ok().map(Route::label);
    let mut school: Option<Arc<Tenant>> = None;

    let result = match routed {
        Err(err) => Err(ApiError::Route(err)),
        Ok(Route::Healthz) => Ok(json_response(
            StatusCode::OK,
            br#"{"status":"ok"}"#.to_vec(),
        )),
        Ok(Route::Readyz) => Ok(readiness(app)),
        Ok(Route::Preflight) => {
            Ok(Cors::new(&app.config.load().server.cors_origins).preflight(&parts.headers))
        }
        Ok(Route::NotApi) => match static_files {
            Some(files) if matches!(parts.method, Method::GET | Method::HEAD) => Ok(files
                .serve(&parts.method, parts.uri.path(), &parts.headers)
                .await),
            _ => Err(ApiError::Route(router::RouteError::NotFound)),
        },
        Ok(route) => match app.in_flight.clone().try_acquire_owned() {
            // Beyond the in-flight cap a request is refused at once, never queued.
            Err(_) => Err(ApiError::Overloaded),
            Ok(_permit) => {
                let timeout = app.config.load().server.request_timeout;
                let deadline = tokio::time::Instant::from_std(started) + timeout;
                let work = serve_api(app, route, &parts, body, deadline, &mut school);
                // serve_api keeps the deadline itself once it holds a database connection
                // (so it can cancel the query); this outer bound covers everything, with
                // room for that cancellation.
                match tokio::time::timeout_at(deadline + CANCEL_TIMEOUT * 2, work).await {
                    Ok(result) => result,
                    Err(_) => Err(ApiError::Timeout),
                }
            }
        },
    };

    let mut response = match result {
        Ok(response) => response,
        Err(err) => {
            let status = err.status();
            if status.is_server_error() {
                tracing::error!(request_id = %request_id, route = route_name, school = school.as_ref().map(|t| &*t.database), error = %err.cause_chain(), "request failed");
            } else {
                tracing::debug!(request_id = %request_id, route = route_name, error = %err.cause_chain(), "request rejected");
            }
            if let ApiError::Auth(reason) = &err {
                app.metrics.jwt_rejected(*reason);
            }
            err.to_response(request_id.as_str())
        }
    };
    if parts.method == Method::HEAD {
        strip_body(&mut response);
    }
    let headers = response.headers_mut();
    Cors::new(&app.config.load().server.cors_origins)
        .apply(parts.headers.get(http::header::ORIGIN), headers);
    headers.insert("x-request-id", request_id.to_header_value());

    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    app.metrics
        .record_request(route_label, response.status(), elapsed);
    if let Some(tenant) = &school {
        tenant.requests.increment();
    }
    tracing::info!(
        target: "tenant_edge::access",
        method = %parts.method,
        route = route_name,
        status,
        duration_us = elapsed.as_micros() as u64,
        school = school.as_ref().map(|t| &*t.database),
        request_id = %request_id,
    );
    response
}

/// The authenticated and public API routes.
async fn serve_api(
    app: &App,
    route: Route<'_>,
    parts: &Parts,
    body: Incoming,
    deadline: tokio::time::Instant,
    school: &mut Option<Arc<Tenant>>,
) -> Result<Response<Body>, ApiError> {
    let snapshot = app.snapshot.load();
    let tenant = match route {
        Route::PublicWeek { slug, .. } => {
            // The public route reaches a school only through the catalog snapshot.
            let tenant = snapshot.by_slug(slug).ok_or(ApiError::SchoolNotFound)?;
            match tenant.status {
                SchoolStatus::Active => tenant.clone(),
                SchoolStatus::Provisioning => {
                    return Err(ApiError::SchoolProvisioning(tenant.database.to_string()))
                }
                SchoolStatus::Suspended => return Err(ApiError::SchoolNotFound),
            }
        }
        _ => {
            let authorization = parts.headers.get(http::header::AUTHORIZATION);
            let (principal, lookup) = app
                .auth
                .load()
                .authenticate_counted(authorization.map(HeaderValue::as_bytes))
                .await;
            match lookup {
                CacheLookup::Hit => app.metrics.token_cache_hit(),
                CacheLookup::Miss => app.metrics.token_cache_miss(),
                CacheLookup::NotAsked => {}
            }
            let principal = principal?;
            let tenant = snapshot
                .by_database(&principal.school_database)
                .ok_or_else(|| {
                    ApiError::SchoolNotInCatalog(principal.school_database.to_string())
                })?;
            match tenant.status {
                SchoolStatus::Active => tenant.clone(),
                SchoolStatus::Suspended => {
                    return Err(ApiError::SchoolSuspended(tenant.database.to_string()))
                }
                SchoolStatus::Provisioning => {
                    return Err(ApiError::SchoolProvisioning(tenant.database.to_string()))
                }
            }
        }
    };
    *school = Some(tenant.clone());
    drop(snapshot);

    // Bodies are read and validated before a connection is taken, so a slow client never
    // holds one of its school's connections.
    let limit = app.config.load().server.max_body_bytes;
    let input = match route {
        Route::CreateWeek => Input::Week(model::parse_new_week(
            &read_body(parts, body, limit).await?,
        )?),
        Route::UpdateWeek(id) => Input::Week(model::parse_week_update(
            id,
            &read_body(parts, body, limit).await?,
        )?),
        Route::CreateDay(week) => Input::Day(model::parse_new_day(
            week,
            &read_body(parts, body, limit).await?,
        )?),
        Route::UpdateDay(week, day) => Input::Day(model::parse_day_update(
            week,
            day,
            &read_body(parts, body, limit).await?,
        )?),
        _ => Input::None,
    };

    let conn = match tokio::time::timeout_at(deadline, tenant.pool.get()).await {
        Ok(conn) => conn.map_err(ApiError::Unavailable)?,
        Err(_) => return Err(ApiError::Timeout),
    };
    let run = run_handler(&conn, route, input);
    let reply = match tokio::time::timeout_at(deadline, run).await {
        Ok(reply) => reply?,
        Err(_) => {
            // The query is still running on the server (waiting on a lock, say). Its
            // connection is retired: it takes no new request and closes once the requests
            // on it finish. The query is cancelled, so the backend stops now rather than at
            // statement_timeout, only when no other request shares the connection: the
            // cancel signal hits whatever the backend runs when it arrives, and must never
            // land on another request's query.
            if conn.retire_alone() {
                let cancelled = tokio::time::timeout(CANCEL_TIMEOUT, conn.cancel_query()).await;
                if !matches!(cancelled, Ok(true)) {
                    tracing::warn!(school = %tenant.database, "cancelling a timed-out query failed");
                }
            }
            return Err(ApiError::Timeout);
        }
    };
    drop(conn);
    Ok(match reply {
        Reply::Json(body) => with_etag(&parts.headers, body),
        Reply::Empty => {
            let mut response = Response::new(Body::default());
            response
                .headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
            response
        }
    })
}

/// Runs the handler of `route` on the school's connection.
async fn run_handler(
    conn: &TenantConnection,
    route: Route<'_>,
    input: Input,
) -> Result<Reply, ApiError> {
    let reply = match (route, input) {
        (Route::ListWeeks, _) => handlers::list_weeks(conn).await,
        (Route::GetWeek(id), _) => handlers::get_week(conn, id).await,
        (Route::PublicWeek { week_of, .. }, _) => handlers::public_week(conn, week_of).await,
        (Route::CreateWeek, Input::Week(week)) => handlers::create_week(conn, week).await,
        (Route::UpdateWeek(id), Input::Week(week)) => handlers::update_week(conn, id, week).await,
        (Route::DeleteWeek(id), _) => handlers::delete_week(conn, id).await,
        (Route::ListDays(week), _) => handlers::list_days(conn, week).await,
        (Route::CreateDay(week), Input::Day(day)) => handlers::create_day(conn, week, day).await,
        (Route::UpdateDay(week, id), Input::Day(day)) => {
            handlers::update_day(conn, week, id, day).await
        }
        (Route::DeleteDay(week, id), _) => handlers::delete_day(conn, week, id).await,
        // Every other route was answered before a connection was taken.
        _ => return Err(ApiError::Route(router::RouteError::NotFound)),
    };
    Ok(reply?)
}

enum Input {
    None,
    Week(model::WeekInput),
    Day(model::DayInput),
}

/// Reads a body of at most `limit` bytes: refused from `Content-Length` before any byte
/// is read (so no `100 Continue` is sent for it), and cut off while reading a chunked one.
async fn read_body(parts: &Parts, body: Incoming, limit: u64) -> Result<Bytes, ApiError> {
    if let Some(length) = parts.headers.get(CONTENT_LENGTH) {
        let length: u64 = length
            .to_str()
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .ok_or(ApiError::BodyRead)?;
        if length > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
    }
    match Limited::new(body, limit as usize).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::PayloadTooLarge { limit })
        }
        Err(_) => Err(ApiError::BodyRead),
    }
}

pub fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let length = body.len();
    let mut response = Response::new(Body::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, JSON);
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    response
}

/// A 200 JSON response with a weak ETag; `If-None-Match` with that tag gets a 304, as the
/// original's Express did (browsers revalidate with it).
fn with_etag(request: &http::HeaderMap, body: Vec<u8>) -> Response<Body> {
    let tag = etag(&body);
    let matches = request
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|candidate| {
            candidate == "*" || candidate.trim_start_matches("W/") == tag.trim_start_matches("W/")
        });
    let mut response = if matches {
        let mut response = Response::new(Body::default());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        json_response(StatusCode::OK, body)
    };
    if let Ok(value) = HeaderValue::from_str(&tag) {
        response.headers_mut().insert(ETAG, value);
    }
    response
}

/// `W/"<length in hex>-<hash in 16 hex digits>"`, written without the formatting machinery
/// (this runs on every JSON response).
fn etag(body: &[u8]) -> String {
    fn hex(out: &mut String, value: u64, min_digits: u32) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let digits = (64 - value.leading_zeros()).div_ceil(4).max(min_digits);
        for shift in (0..digits).rev() {
            out.push(char::from(DIGITS[(value >> (shift * 4)) as usize & 0xf]));
        }
    }
    let mut tag = String::with_capacity(40);
    tag.push_str("W/\"");
    hex(&mut tag, body.len() as u64, 1);
    tag.push('-');
    hex(&mut tag, body_hash(body), 16);
    tag.push('"');
    tag
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

/// HEAD: the same status and headers as GET, no body.
fn strip_body(response: &mut Response<Body>) {
    *response.body_mut() = Body::default();
}

fn readiness(app: &App) -> Response<Body> {
    match app.readiness() {
        Readiness::Ready => json_response(StatusCode::OK, br#"{"status":"ready"}"#.to_vec()),
        Readiness::NotReady(reason) => {
            let body = serde_json::json!({ "status": "not ready", "reason": reason });
            let mut response = json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                body.to_string().into_bytes(),
            );
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{body_hash, etag};

    #[test]
    fn etag_is_length_and_hash_in_hex() {
        for body in [&b""[..], b"x", &[7u8; 3100]] {
            let expected = format!("W/\"{:x}-{:016x}\"", body.len(), body_hash(body));
            assert_eq!(etag(body), expected);
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
}
