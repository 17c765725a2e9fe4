//! The admin listener (`[admin] listen`): `/metrics` for Prometheus, and the tenant admin
//! API guarded by `[admin] token`.
//!
//! Control path: these handlers may query the catalog and wait for a refresh; they never
//! share a listener, a connection limit or a pool with the school-lunch API. Signing up a
//! school (the original's unauthenticated `POST /api/users`) is `POST /admin/schools`.
//! This module owns the admin routes, the token check and the success bodies; it does not
//! choose error statuses or write error bodies: every failure is an `edge::error::ApiError`
//! (403 while `[admin] token` is unset, 401 without the right token, 400, 404, 409, 413,
//! 503 when the catalog or the control loop cannot answer).
//!
//! ```text
//! GET    /metrics                          Prometheus text (no token)
//! GET    /admin/schools                    schools with status, version, pool stats
//! POST   /admin/schools                    {"name": "...", "database": "..."?}
//! POST   /admin/schools/{database}/suspend
//! POST   /admin/schools/{database}/resume
//! DELETE /admin/schools/{database}
//! DELETE /admin/schools/{database}/cache     drop its published-menu cache on this replica
//! POST   /admin/refresh                    re-read the catalog now
//! ```

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::domain::names;
use crate::domain::status::SchoolStatus;
use crate::edge::error::ApiError;
use crate::edge::request_id;
use crate::edge::server::{self, Handler};
use crate::lunch::menu_cache::Origin;
use crate::lunch::router::RouteError;
use crate::state::App;
use crate::state::ControlEvent;
use crate::telemetry::metrics::{PoolGauges, PoolReport};
use crate::tenancy::naming;
use crate::tenancy::store;

type Body = Full<Bytes>;

/// Open connections the admin listener holds at most. Its own cap, not the main
/// listener's: a flood of API clients must not lock the operator out of /metrics.
const MAX_ADMIN_CONNECTIONS: usize = 64;

/// The largest request body the admin API reads (`POST /admin/schools`).
const MAX_ADMIN_BODY_BYTES: usize = 16 * 1024;

/// The admin listener's handler.
struct Admin {
    app: Arc<App>,
}

impl Handler for Admin {
    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<Body> {
        handle(&self.app, request).await
    }
}

/// Serves the admin listener until `stop` is cancelled, through the same accept loop as
/// the main listener (timeouts, connection cap, drain).
pub async fn serve(listener: TcpListener, app: Arc<App>, stop: CancellationToken) {
    let admin = Arc::new(Admin { app: app.clone() });
    let connections = Arc::new(Semaphore::new(MAX_ADMIN_CONNECTIONS));
    server::serve(listener, app, admin, stop, connections).await;
}

/// A successful JSON answer. Failures are `ApiError`s, answered by
/// [`ApiError::to_response`] like every other listener's.
fn reply(status: StatusCode, body: Value) -> Response<Body> {
    let mut response = Response::new(Body::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The admin API is open only with `[admin] token` set, and only to a bearer of it.
fn authorized(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    let config = app.config.load();
    let Some(token) = &config.admin.token else {
        return Err(ApiError::AdminDisabled);
    };
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match presented {
        Some(presented) if same(presented.as_bytes(), token.expose().as_bytes()) => Ok(()),
        _ => Err(ApiError::AdminUnauthorized),
    }
}

/// Answers one admin request; a failure is logged (5xx with its cause chain) and answered
/// through `ApiError`, with the request id in the body and the `X-Request-Id` header.
async fn handle(app: &Arc<App>, request: Request<Incoming>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let request_id = request_id::accept_or_generate(parts.headers.get("x-request-id"));
    let mut response = match respond(app, &parts, body).await {
        Ok(response) => response,
        Err(err) => {
            if err.status().is_server_error() {
                tracing::error!(request_id = %request_id, error = %err.cause_chain(), "admin request failed");
            } else {
                tracing::debug!(request_id = %request_id, error = %err.cause_chain(), "admin request rejected");
            }
            err.to_response(request_id.as_str())
        }
    };
    response
        .headers_mut()
        .insert("x-request-id", request_id.to_header_value());
    response
}

/// Routes an admin request: `/metrics` without a token, everything else with it.
async fn respond(app: &App, parts: &Parts, body: Incoming) -> Result<Response<Body>, ApiError> {
    let path = parts.uri.path().trim_end_matches('/');
    if path == "/metrics" {
        if parts.method != Method::GET && parts.method != Method::HEAD {
            return Err(ApiError::Route(RouteError::MethodNotAllowed {
                allow: "GET, HEAD",
            }));
        }
        let mut response = Response::new(Body::new(Bytes::from(render_metrics(app))));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        return Ok(response);
    }
    authorized(app, &parts.headers)?;
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    match (&parts.method, segments.as_slice()) {
        (&Method::GET, ["admin", "schools"]) => Ok(list(app)),
        (&Method::POST, ["admin", "schools"]) => add(app, &read_body(body).await?).await,
        (&Method::POST, ["admin", "schools", database, "suspend"]) => {
            set_status(app, database, SchoolStatus::Suspended).await
        }
        (&Method::POST, ["admin", "schools", database, "resume"]) => {
            set_status(app, database, SchoolStatus::Active).await
        }
        (&Method::DELETE, ["admin", "schools", database]) => remove(app, database).await,
        (&Method::DELETE, ["admin", "schools", database, "cache"]) => drop_cache(app, database),
        (&Method::POST, ["admin", "refresh"]) => {
            let report = refresh(app).await?;
            Ok(reply(
                StatusCode::OK,
                json!({ "generation": report.generation, "schools": report.schools, "rejected": report.rejected }),
            ))
        }
        _ => Err(ApiError::Route(RouteError::NotFound)),
    }
}

/// A request body of at most [`MAX_ADMIN_BODY_BYTES`].
async fn read_body(body: Incoming) -> Result<Bytes, ApiError> {
    match Limited::new(body, MAX_ADMIN_BODY_BYTES).collect().await {
        Ok(body) => Ok(body.to_bytes()),
        Err(err) if err.is::<LengthLimitError>() => Err(ApiError::PayloadTooLarge {
            limit: MAX_ADMIN_BODY_BYTES as u64,
        }),
        Err(_) => Err(ApiError::BodyRead),
    }
}

fn list(app: &App) -> Response<Body> {
    let snapshot = app.snapshot.load();
    let mut schools: Vec<Value> = snapshot
        .tenants()
        .map(|t| {
            let pool = t.pool.state();
            json!({
                "schoolId": t.id,
                "schoolName": t.name,
                "schoolDatabase": &*t.database,
                "slug": &*t.slug,
                "status": t.status.as_str(),
                "databaseVersion": t.db_version,
                "lastError": t.last_error,
                "pool": { "connections": pool.connections, "idle": pool.idle_connections, "waiting": pool.waiting, "requests": pool.requests },
            })
        })
        .collect();
    schools.sort_by_key(|s| s["schoolId"].as_i64());
    reply(
        StatusCode::OK,
        json!({
            "generation": snapshot.generation,
            "snapshotAgeSeconds": snapshot.loaded_at.elapsed().as_secs(),
            "budget": { "inUse": app.budget.in_use(), "limit": app.budget.limit() },
            "schools": schools,
        }),
    )
}

/// Asks the control loop to re-read the catalog now and waits for its report.
async fn refresh(app: &App) -> Result<crate::state::RefreshReport, ApiError> {
    let stopped = || ApiError::RefreshFailed("control loop stopped".into());
    let (tx, rx) = oneshot::channel();
    app.control
        .send(ControlEvent::Refresh(Some(tx)))
        .map_err(|_| stopped())?;
    rx.await
        .map_err(|_| stopped())?
        .map_err(|err| ApiError::RefreshFailed(err.to_string()))
}

async fn catalog(app: &App) -> Result<tokio_postgres::Client, ApiError> {
    let config = app.config.load();
    store::connect_or_create(&config.catalog)
        .await
        .map_err(|err| match err {
            store::CatalogError::Connect(err) => ApiError::CatalogUnreachable(err),
            other => ApiError::Catalog(other),
        })
}

/// The fields of `POST /admin/schools`: the school's name and its database (given, or
/// derived from the name).
fn new_school(app: &App, body: &[u8]) -> Result<(String, String), ApiError> {
    let bad = |message: &str| ApiError::AdminBadRequest(message.to_owned());
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return Err(bad("body must be a JSON object"));
    };
    let Some(name) = fields.get("name").and_then(Value::as_str) else {
        return Err(bad("field name (a string) is required"));
    };
    naming::validate_school_name(name).map_err(ApiError::AdminBadRequest)?;
    let database = match fields.get("database") {
        None | Some(Value::Null) => {
            naming::derive_database_name(name).map_err(ApiError::AdminBadRequest)?
        }
        Some(Value::String(database)) => {
            names::validate_database_name(database)
                .map_err(|err| ApiError::AdminBadRequest(err.to_string()))?;
            database.clone()
        }
        Some(_) => return Err(bad("field database must be a string")),
    };
    if database == app.config.load().catalog.database() {
        return Err(bad("that is the catalog database"));
    }
    Ok((name.trim().to_owned(), database))
}

async fn add(app: &App, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let (name, database) = new_school(app, body)?;
    let client = catalog(app).await?;
    let slug = names::database_to_slug(&database);
    let school = match store::add_school(&client, &name, &database, &slug).await {
        Ok(school) => school,
        Err(store::CatalogError::Duplicate(_)) => return Err(ApiError::SchoolExists(database)),
        Err(err) => return Err(ApiError::Catalog(err)),
    };
    // The control loop provisions it in the background and activates it.
    let _ = refresh(app).await;
    Ok(reply(
        StatusCode::ACCEPTED,
        json!({ "schoolId": school.id, "schoolDatabase": school.database, "slug": school.slug, "status": school.status_text() }),
    ))
}

async fn set_status(
    app: &App,
    database: &str,
    status: SchoolStatus,
) -> Result<Response<Body>, ApiError> {
    let client = catalog(app).await?;
    match store::find_school(&client, database).await {
        Ok(Some(school))
            if status == SchoolStatus::Active
                && school.status == Ok(SchoolStatus::Provisioning) =>
        {
            return Err(ApiError::StillProvisioning(database.to_owned()));
        }
        Ok(Some(_)) => {}
        Ok(None) => return Err(ApiError::UnknownSchool(database.to_owned())),
        Err(err) => return Err(ApiError::Catalog(err)),
    }
    store::set_status(&client, database, status)
        .await
        .map_err(ApiError::Catalog)?;
    let _ = refresh(app).await;
    Ok(reply(
        StatusCode::OK,
        json!({ "schoolDatabase": database, "status": status.as_str() }),
    ))
}

async fn remove(app: &App, database: &str) -> Result<Response<Body>, ApiError> {
    let client = catalog(app).await?;
    match store::remove_school(&client, database).await {
        Ok(true) => {
            let _ = refresh(app).await;
            Ok(reply(
                StatusCode::OK,
                json!({ "schoolDatabase": database, "removed": true, "databaseKept": true }),
            ))
        }
        Ok(false) => Err(ApiError::UnknownSchool(database.to_owned())),
        Err(err) => Err(ApiError::Catalog(err)),
    }
}

/// Drops a school's published-menu cache entries on this replica.
fn drop_cache(app: &App, database: &str) -> Result<Response<Body>, ApiError> {
    if app.snapshot.load().by_database(database).is_none() {
        return Err(ApiError::UnknownSchool(database.to_owned()));
    }
    app.menu_cache.drop_school(database, Origin::Local);
    Ok(reply(
        StatusCode::OK,
        json!({ "schoolDatabase": database, "cacheDropped": true }),
    ))
}

/// The metrics text, with the pool gauges of the current snapshot.
fn render_metrics(app: &App) -> String {
    let snapshot = app.snapshot.load();
    let schools = snapshot
        .tenants()
        .map(|t| {
            let state = t.pool.state();
            (
                &*t.database,
                PoolGauges {
                    connections: u64::from(state.connections),
                    idle: u64::from(state.idle_connections),
                    waiting: state.waiting,
                    requests: u64::from(state.requests),
                },
            )
        })
        .collect();
    let mut text = app.metrics.render(&PoolReport {
        schools,
        budget_in_use: u64::from(app.budget.in_use()),
        budget_limit: u64::from(app.budget.limit()),
    });
    let ready = matches!(app.readiness(), crate::state::Readiness::Ready);
    crate::telemetry::metrics::Metrics::render_readiness(&mut text, ready);
    crate::telemetry::metrics::Metrics::render_menu_cache(&mut text, &app.menu_cache.stats());
    text
}
