//! The admin listener (`[admin] listen`): `/metrics` for Prometheus, and the tenant admin
//! API guarded by `[admin] token`.
//!
//! Control path: these handlers may query the catalog and wait for a refresh; they never
//! share a listener, a connection limit or a pool with the school-lunch API. Signing up a
//! school (the original's unauthenticated `POST /api/users`) is `POST /admin/schools`.
//!
//! ```text
//! GET    /metrics                          Prometheus text (no token)
//! GET    /admin/schools                    schools with status, version, pool stats
//! POST   /admin/schools                    {"name": "...", "database": "..."?}
//! POST   /admin/schools/{database}/suspend
//! POST   /admin/schools/{database}/resume
//! DELETE /admin/schools/{database}
//! POST   /admin/refresh                    re-read the catalog now
//! ```

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::domain::names;
use crate::domain::status::SchoolStatus;
use crate::edge::server::{self, Handler};
use crate::state::App;
use crate::state::ControlEvent;
use crate::telemetry::metrics::{PoolGauges, PoolReport};
use crate::tenancy::naming;
use crate::tenancy::store;

type Body = Full<Bytes>;

/// Open connections the admin listener holds at most. Its own cap, not the main
/// listener's: a flood of API clients must not lock the operator out of /metrics.
const MAX_ADMIN_CONNECTIONS: usize = 64;

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

fn reply(status: StatusCode, body: Value) -> Response<Body> {
    let mut response = Response::new(Body::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    reply(status, json!({ "message": message.into() }))
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(app: &App, request: &Request<Incoming>) -> Result<(), Box<Response<Body>>> {
    let config = app.config.load();
    let Some(token) = &config.admin.token else {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "the admin API is disabled: set [admin] token",
        )));
    };
    let presented = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match presented {
        Some(presented) if same(presented.as_bytes(), token.expose().as_bytes()) => Ok(()),
        _ => {
            let mut response = error(StatusCode::UNAUTHORIZED, "Unauthorized");
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer"),
            );
            Err(Box::new(response))
        }
    }
}

async fn handle(app: &Arc<App>, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().trim_end_matches('/').to_string();
    if path == "/metrics" {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed");
        }
        let mut response = Response::new(Body::new(Bytes::from(render_metrics(app))));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        return response;
    }
    if let Err(response) = authorized(app, &request) {
        return *response;
    }
    let method = request.method().clone();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    match (method, segments.as_slice()) {
        (Method::GET, ["admin", "schools"]) => list(app),
        (Method::POST, ["admin", "schools"]) => {
            let body = match Limited::new(request.into_body(), 16 * 1024).collect().await {
                Ok(body) => body.to_bytes(),
                Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
            };
            add(app, &body).await
        }
        (Method::POST, ["admin", "schools", database, "suspend"]) => {
            set_status(app, database, SchoolStatus::Suspended).await
        }
        (Method::POST, ["admin", "schools", database, "resume"]) => {
            set_status(app, database, SchoolStatus::Active).await
        }
        (Method::DELETE, ["admin", "schools", database]) => remove(app, database).await,
        (Method::POST, ["admin", "refresh"]) => match refresh(app).await {
            Ok(report) => reply(
                StatusCode::OK,
                json!({ "generation": report.generation, "schools": report.schools, "rejected": report.rejected }),
            ),
            Err(err) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("refresh failed: {err}"),
            ),
        },
        _ => error(StatusCode::NOT_FOUND, "Not found"),
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

async fn refresh(app: &App) -> Result<crate::state::RefreshReport, String> {
    let (tx, rx) = oneshot::channel();
    app.control
        .send(ControlEvent::Refresh(Some(tx)))
        .map_err(|_| "control loop stopped".to_string())?;
    rx.await.map_err(|_| "control loop stopped".to_string())?
}

async fn catalog(app: &App) -> Result<tokio_postgres::Client, Response<Body>> {
    let config = app.config.load();
    store::connect_or_create(&config.catalog)
        .await
        .map_err(|_| {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the catalog is unreachable",
            )
        })
}

async fn add(app: &App, body: &[u8]) -> Response<Body> {
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return error(StatusCode::BAD_REQUEST, "body must be a JSON object");
    };
    let Some(name) = fields.get("name").and_then(Value::as_str) else {
        return error(StatusCode::BAD_REQUEST, "field name (a string) is required");
    };
    if let Err(err) = naming::validate_school_name(name) {
        return error(StatusCode::BAD_REQUEST, err);
    }
    let database = match fields.get("database") {
        None | Some(Value::Null) => match naming::derive_database_name(name) {
            Ok(database) => database,
            Err(err) => return error(StatusCode::BAD_REQUEST, err),
        },
        Some(Value::String(database)) => {
            if let Err(err) = names::validate_database_name(database) {
                return error(StatusCode::BAD_REQUEST, err.to_string());
            }
            database.clone()
        }
        Some(_) => return error(StatusCode::BAD_REQUEST, "field database must be a string"),
    };
    if database == app.config.load().catalog.database() {
        return error(StatusCode::BAD_REQUEST, "that is the catalog database");
    }
    let client = match catalog(app).await {
        Ok(client) => client,
        Err(response) => return response,
    };
    let slug = names::database_to_slug(&database);
    match store::add_school(&client, name.trim(), &database, &slug).await {
        Ok(school) => {
            // The control loop provisions it in the background and activates it.
            let _ = refresh(app).await;
            reply(
                StatusCode::ACCEPTED,
                json!({ "schoolId": school.id, "schoolDatabase": school.database, "slug": school.slug, "status": school.status }),
            )
        }
        Err(store::CatalogError::Duplicate(_)) => error(
            StatusCode::CONFLICT,
            format!("a school with database {database} already exists"),
        ),
        Err(err) => {
            tracing::error!(error = %err, "admin add school failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the catalog is unavailable",
            )
        }
    }
}

async fn set_status(app: &App, database: &str, status: SchoolStatus) -> Response<Body> {
    let client = match catalog(app).await {
        Ok(client) => client,
        Err(response) => return response,
    };
    match store::find_school(&client, database).await {
        Ok(Some(school)) if status == SchoolStatus::Active && school.status == "provisioning" => {
            return error(StatusCode::CONFLICT, "the school is still provisioning");
        }
        Ok(Some(_)) => {}
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no school with database {database}"),
            )
        }
        Err(_) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the catalog is unavailable",
            )
        }
    }
    match store::set_status(&client, database, status).await {
        Ok(_) => {
            let _ = refresh(app).await;
            reply(
                StatusCode::OK,
                json!({ "schoolDatabase": database, "status": status.as_str() }),
            )
        }
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the catalog is unavailable",
        ),
    }
}

async fn remove(app: &App, database: &str) -> Response<Body> {
    let client = match catalog(app).await {
        Ok(client) => client,
        Err(response) => return response,
    };
    match store::remove_school(&client, database).await {
        Ok(true) => {
            let _ = refresh(app).await;
            reply(
                StatusCode::OK,
                json!({ "schoolDatabase": database, "removed": true, "databaseKept": true }),
            )
        }
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            format!("no school with database {database}"),
        ),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the catalog is unavailable",
        ),
    }
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
    text
}
