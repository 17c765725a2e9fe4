//! One request, start to finish: route, authenticate, resolve the school in the snapshot,
//! take a connection from its pool, run the handler, and write the response.
//!
//! This is the data path of DESIGN.md and nothing else: no catalog query, no lock, no
//! waiting on the control path. Every failure becomes an [`ApiError`] and is turned into
//! a response in one place ([`ApiError::to_response`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, ETAG};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use crate::auth::CacheLookup;
use crate::domain::names::Slug;
use crate::domain::status::SchoolStatus;
use crate::edge::cors::Cors;
use crate::edge::error::ApiError;
use crate::edge::etag;
use crate::edge::request_id::{self, RequestId};
use crate::edge::server::Handler;
use crate::edge::static_files::StaticFiles;
use crate::lunch::handlers::{self, Reply};
use crate::lunch::menu_cache::{Menu, Origin};
use crate::lunch::model;
use crate::lunch::router::{self, Route, RouteName};
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
    let route = routed.as_ref().ok().map(Route::label);
    let route_name = route.map_or("unmatched", RouteName::name);
    let mut school: Option<Arc<Tenant>> = None;

    let result = match routed {
        Err(err) => Err(ApiError::Route(err)),
        Ok(route) => dispatch(app, static_files, route, &parts, body, started, &mut school).await,
    };
    let response = match result {
        Ok(response) => response,
        Err(err) => error_response(app, &err, request_id, route_name, school.as_deref()),
    };
    finish(
        app,
        &parts,
        response,
        request_id,
        route,
        started,
        school.as_deref(),
    )
}

/// Answers a routed request: the probes, preflights and the static front end directly,
/// the API under the in-flight cap and the request timeout.
async fn dispatch(
    app: &Arc<App>,
    static_files: Option<&StaticFiles>,
    route: Route<'_>,
    parts: &Parts,
    body: Incoming,
    started: Instant,
    school: &mut Option<Arc<Tenant>>,
) -> Result<Response<Body>, ApiError> {
    match route {
        Route::Healthz => Ok(json_response(
            StatusCode::OK,
            br#"{"status":"ok"}"#.to_vec(),
        )),
        Route::Readyz => Ok(readiness(app)),
        Route::Preflight => {
            Ok(Cors::new(&app.config.load().server.cors_origins).preflight(&parts.headers))
        }
        Route::NotApi => match static_files {
            Some(files) if matches!(parts.method, Method::GET | Method::HEAD) => Ok(files
                .serve(&parts.method, parts.uri.path(), &parts.headers)
                .await?),
            _ => Err(ApiError::Route(router::RouteError::NotFound)),
        },
        route => match app.in_flight.clone().try_acquire_owned() {
            // Beyond the in-flight cap a request is refused at once, never queued.
            Err(_) => Err(ApiError::Overloaded),
            Ok(_permit) => {
                let timeout = app.config.load().server.request_timeout;
                let deadline = tokio::time::Instant::from_std(started) + timeout;
                let work = serve_api(app, route, parts, body, deadline, school);
                // serve_api keeps the deadline itself once it holds a database connection
                // (so it can cancel the query); this outer bound covers everything, with
                // room for that cancellation.
                match tokio::time::timeout_at(deadline + CANCEL_TIMEOUT * 2, work).await {
                    Ok(result) => result,
                    Err(_) => Err(ApiError::Timeout),
                }
            }
        },
    }
}

/// Logs a failed request and turns its error into the response.
fn error_response(
    app: &App,
    err: &ApiError,
    request_id: RequestId,
    route_name: &'static str,
    school: Option<&Tenant>,
) -> Response<Body> {
    if err.status().is_server_error() {
        tracing::error!(request_id = %request_id, route = route_name, school = school.map(|t| &*t.database), error = %err.cause_chain(), "request failed");
    } else {
        tracing::debug!(request_id = %request_id, route = route_name, error = %err.cause_chain(), "request rejected");
    }
    if let ApiError::Auth(reason) = err {
        app.metrics.jwt_rejected(*reason);
    }
    err.to_response(request_id.as_str())
}

/// What every response gets on its way out: no body for HEAD, CORS headers, the request
/// id; then the request's metrics and its access log line.
fn finish(
    app: &App,
    parts: &Parts,
    mut response: Response<Body>,
    request_id: RequestId,
    route: Option<RouteName>,
    started: Instant,
    school: Option<&Tenant>,
) -> Response<Body> {
    let route_name = route.map_or("unmatched", RouteName::name);
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
        .record_request(route, response.status(), elapsed);
    if let Some(tenant) = school {
        tenant.requests.increment();
    }
    tracing::info!(
        target: "tenant_edge::access",
        method = %parts.method,
        route = route_name,
        status,
        duration_us = elapsed.as_micros() as u64,
        school = school.map(|t| &*t.database),
        request_id = %request_id,
    );
    response
}

/// The authenticated and public API routes: the school, the body, the handler on one of
/// the school's connections, and the reply.
async fn serve_api(
    app: &App,
    route: Route<'_>,
    parts: &Parts,
    body: Incoming,
    deadline: tokio::time::Instant,
    school: &mut Option<Arc<Tenant>>,
) -> Result<Response<Body>, ApiError> {
    // Before the first snapshot every school would look unknown (403 or 404): a replica
    // that just started says it is not ready yet instead.
    if !app.catalog_loaded.load(Ordering::Relaxed) {
        return Err(ApiError::CatalogLoading);
    }
    let tenant = match route {
        Route::PublicWeek { slug, .. } => public_tenant(app, slug)?,
        _ => authenticated_tenant(app, parts).await?,
    };
    *school = Some(tenant.clone());
    // Bodies are read and validated before a connection is taken, so a slow client never
    // holds one of its school's connections.
    let input = match tokio::time::timeout_at(deadline, read_input(app, route, parts, body)).await {
        Ok(input) => input?,
        Err(_) => return Err(ApiError::BodyTimeout),
    };
    if let Route::PublicWeek { week_of, .. } = route {
        return public_week(app, &tenant, route, week_of, &parts.headers, deadline).await;
    }
    let reply = run_in_time(app, &tenant, route, input, deadline).await;
    if writes_menus(route) {
        // Before the response is sent, and after a failure too (it may have committed).
        menus_written(app, &tenant);
    }
    Ok(match reply? {
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

/// The public week: from the published-menu cache, or from the school's database (the
/// 404 "No menu has been published" answer alike).
async fn public_week(
    app: &App,
    tenant: &Arc<Tenant>,
    route: Route<'_>,
    week_of: crate::domain::date::Date,
    request: &http::HeaderMap,
    deadline: tokio::time::Instant,
) -> Result<Response<Body>, ApiError> {
    let fetch = || async {
        match run_in_time(app, tenant, route, Input::None, deadline).await {
            Ok(Reply::Json(body)) => {
                let etag = HeaderValue::from_str(&etag::body_etag(&body)).ok();
                Ok(Menu::Week {
                    body: Bytes::from(body),
                    etag,
                })
            }
            Ok(Reply::Empty) => Err(ApiError::Route(router::RouteError::NotFound)),
            Err(ApiError::NoPublishedWeek(_)) => Ok(Menu::NotPublished),
            Err(err) => Err(err),
        }
    };
    let (menu, _) = app
        .menu_cache
        .get_or_fetch(&tenant.database, week_of, fetch)
        .await?;
    match menu {
        Menu::Week { body, etag } => Ok(tagged(request, body, etag)),
        Menu::NotPublished => Err(ApiError::NoPublishedWeek(week_of)),
    }
}

/// The routes that change a school's weeks or days.
fn writes_menus(route: Route<'_>) -> bool {
    matches!(
        route,
        Route::CreateWeek
            | Route::UpdateWeek(_)
            | Route::DeleteWeek(_)
            | Route::CreateDay(_)
            | Route::UpdateDay(..)
            | Route::DeleteDay(..)
    )
}

/// A write to the school's menus: its cached answers go now, and the other replicas are
/// told through the control path (never waited on here).
fn menus_written(app: &App, tenant: &Tenant) {
    if app.menu_cache.enabled() {
        app.menu_cache.drop_school(&tenant.database, Origin::Local);
        let _ = app.menu_writes.send(tenant.database.clone());
    }
}

/// The school of a public route: reached only through the catalog snapshot, by slug.
fn public_tenant(app: &App, slug: Slug<'_>) -> Result<Arc<Tenant>, ApiError> {
    let snapshot = app.snapshot.load();
    let tenant = snapshot.by_slug(slug).ok_or(ApiError::SchoolNotFound)?;
    match tenant.status {
        SchoolStatus::Active => Ok(tenant.clone()),
        SchoolStatus::Provisioning => {
            Err(ApiError::SchoolProvisioning(tenant.database.to_string()))
        }
        SchoolStatus::Suspended => Err(ApiError::SchoolNotFound),
    }
}

/// The school named by the request's bearer token. Two `Authorization` fields are refused
/// rather than one of them chosen: HTTP/1 and HTTP/2 alike keep every field in `headers`.
async fn authenticated_tenant(app: &App, parts: &Parts) -> Result<Arc<Tenant>, ApiError> {
    let mut fields = parts.headers.get_all(http::header::AUTHORIZATION).iter();
    let authorization = fields.next();
    if fields.next().is_some() {
        return Err(ApiError::SeveralAuthorizations);
    }
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
    let snapshot = app.snapshot.load();
    let tenant = snapshot
        .by_database(&principal.school_database)
        .ok_or_else(|| ApiError::SchoolNotInCatalog(principal.school_database.to_string()))?;
    match tenant.status {
        SchoolStatus::Active => Ok(tenant.clone()),
        SchoolStatus::Suspended => Err(ApiError::SchoolSuspended(tenant.database.to_string())),
        SchoolStatus::Provisioning => {
            Err(ApiError::SchoolProvisioning(tenant.database.to_string()))
        }
    }
}

/// The parsed and validated body of the routes that take one.
async fn read_input(
    app: &App,
    route: Route<'_>,
    parts: &Parts,
    body: Incoming,
) -> Result<Input, ApiError> {
    let limit = app.config.load().server.max_body_bytes;
    Ok(match route {
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
    })
}

/// Runs the handler of `route` on one of the school's connections before `deadline`. A
/// read whose connection turns out to be gone (its backend terminated, a failover, a
/// pooler's idle timeout) runs once more on a fresh connection: a read is one autocommit
/// SELECT and its answer is built from the second run alone, so running it twice changes
/// nothing. A write never runs twice (its query may have executed before the connection
/// closed); it is kept off connections already found closed when it is placed
/// (`pool::lanes`).
async fn run_in_time(
    app: &App,
    tenant: &Tenant,
    route: Route<'_>,
    input: Input,
    deadline: tokio::time::Instant,
) -> Result<Reply, ApiError> {
    let read = matches!(
        route,
        Route::ListWeeks | Route::GetWeek(_) | Route::PublicWeek { .. } | Route::ListDays(_)
    );
    match run_once(tenant, route, input, deadline).await {
        Err(ApiError::Database(err)) if read && handlers::connection_lost(&err) => {
            app.metrics.read_retried();
            tracing::info!(school = %tenant.database, error = %err, "connection lost under a read; running it again on a fresh connection");
            // The school's other idle connections are most likely gone the same way
            // (the same failover or restart): closed, so the retry opens a fresh one.
            tenant.pool.retire_idle_connections();
            run_once(tenant, route, Input::None, deadline).await
        }
        result => result,
    }
}

/// Takes one of the school's connections and runs the handler on it, both before
/// `deadline`.
async fn run_once(
    tenant: &Tenant,
    route: Route<'_>,
    input: Input,
    deadline: tokio::time::Instant,
) -> Result<Reply, ApiError> {
    let conn = match tokio::time::timeout_at(deadline, tenant.pool.get()).await {
        Ok(conn) => conn.map_err(ApiError::Unavailable)?,
        Err(_) => return Err(ApiError::Timeout),
    };
    let run = run_handler(&conn, route, input);
    match tokio::time::timeout_at(deadline, run).await {
        Ok(Err(ApiError::Database(err))) if handlers::connection_lost(&err) => {
            // Retired when this request leaves it (the server may not have closed the
            // socket yet).
            conn.mark_broken();
            Err(ApiError::Database(err))
        }
        Ok(reply) => reply,
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
            Err(ApiError::Timeout)
        }
    }
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
    json_bytes_response(status, Bytes::from(body))
}

fn json_bytes_response(status: StatusCode, body: Bytes) -> Response<Body> {
    let length = body.len();
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, JSON);
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    response
}

/// A 200 JSON response with a weak ETag; `If-None-Match` with that tag gets a 304, as the
/// original's Express did (browsers revalidate with it).
fn with_etag(request: &http::HeaderMap, body: Vec<u8>) -> Response<Body> {
    let tag = HeaderValue::from_str(&etag::body_etag(&body)).ok();
    tagged(request, Bytes::from(body), tag)
}

/// A 200 JSON response with its ETag, or 304 when `If-None-Match` names the tag.
fn tagged(request: &http::HeaderMap, body: Bytes, tag: Option<HeaderValue>) -> Response<Body> {
    let not_modified = tag
        .as_ref()
        .is_some_and(|tag| etag::matches_if_none_match(request, tag.as_bytes()));
    let mut response = if not_modified {
        let mut response = Response::new(Body::default());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        json_bytes_response(StatusCode::OK, body)
    };
    if let Some(tag) = tag {
        response.headers_mut().insert(ETAG, tag);
    }
    response
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
