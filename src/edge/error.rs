//! Every way a request can fail, and the one place that turns a failure into a response.
//!
//! Every listener answers its failures here: the school-lunch API, the static front end
//! ([`StaticError`]) and the admin API (the `Admin*` and catalog variants). Each error
//! answers three questions separately: its status, a stable `code`, and the message that
//! is safe to show a client. The body is always flat JSON, `{"message", "code",
//! "requestId"}`. No text from PostgreSQL, the JWT library or the operating system ever
//! reaches a client; 5xx errors keep their source for the log. Nothing else in the crate
//! chooses an error status or writes an error body.

use std::fmt::Write as _;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::auth::AuthError;
use crate::domain::date::Date;
use crate::edge::static_files::{self, StaticError};
use crate::lunch::handlers::LunchError;
use crate::lunch::model::BodyError;
use crate::lunch::router::RouteError;
use crate::pg::ConnectError;
use crate::pool::PoolError;
use crate::tenancy::store::CatalogError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("route: {0}")]
    Route(#[from] RouteError),
    #[error("authentication: {0}")]
    Auth(#[from] AuthError),
    /// More than one `Authorization` field: which caller is meant is ambiguous, and an
    /// intermediary may read another one than we would (RFC 9110 5.3: the field is not a
    /// list, so the request is malformed).
    #[error("more than one authorization header")]
    SeveralAuthorizations,
    #[error("body: {0:?}")]
    Body(#[from] BodyError),
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    #[error("reading the request body failed")]
    BodyRead,
    /// The client stopped sending its body before request_timeout: its fault, not the
    /// database's (a 504 would say the server was slow).
    #[error("the request body did not arrive within request_timeout")]
    BodyTimeout,
    /// The first catalog snapshot is not loaded yet (a replica that just started).
    #[error("the catalog is not loaded yet")]
    CatalogLoading,
    #[error("school not found")]
    SchoolNotFound,
    #[error("school {0} is not in the catalog")]
    SchoolNotInCatalog(String),
    #[error("school {0} is suspended")]
    SchoolSuspended(String),
    #[error("school {0} is being provisioned")]
    SchoolProvisioning(String),
    #[error("lunch week {0} not found")]
    WeekNotFound(i32),
    #[error("no published week for {0}")]
    NoPublishedWeek(Date),
    #[error("school database unavailable")]
    Unavailable(#[source] PoolError),
    #[error("school database query failed")]
    Database(#[source] tokio_postgres::Error),
    #[error("encoding the response body failed")]
    Encode(#[source] serde_json::Error),
    #[error("request timed out")]
    Timeout,
    #[error("server is at its in-flight request limit")]
    Overloaded,
    #[error("static file: {0}")]
    Static(#[from] StaticError),
    #[error("the admin API is disabled (no [admin] token)")]
    AdminDisabled,
    #[error("missing or wrong admin token")]
    AdminUnauthorized,
    /// A malformed admin request; the text says what to fix and is shown to the operator.
    #[error("bad admin request: {0}")]
    AdminBadRequest(String),
    #[error("no school with database {0}")]
    UnknownSchool(String),
    #[error("a school with database {0} already exists")]
    SchoolExists(String),
    #[error("school {0} is still provisioning")]
    StillProvisioning(String),
    #[error("the catalog is unreachable")]
    CatalogUnreachable(#[source] ConnectError),
    #[error("the catalog is unavailable")]
    Catalog(#[source] CatalogError),
    /// The control loop's refresh failed or the loop has stopped; the text is for the log.
    #[error("catalog refresh failed: {0}")]
    RefreshFailed(String),
}

impl From<LunchError> for ApiError {
    fn from(err: LunchError) -> ApiError {
        match err {
            LunchError::WeekNotFound(id) => ApiError::WeekNotFound(id),
            LunchError::NoPublishedWeek(date) => ApiError::NoPublishedWeek(date),
            LunchError::Database(err) => ApiError::Database(err),
            LunchError::Encode(err) => ApiError::Encode(err),
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            Route(RouteError::NotFound | RouteError::BadSlug) => StatusCode::NOT_FOUND,
            Route(RouteError::MethodNotAllowed { .. }) => StatusCode::METHOD_NOT_ALLOWED,
            Route(RouteError::BadId { .. } | RouteError::BadDate) => StatusCode::BAD_REQUEST,
            Auth(err) if err.is_forbidden() => StatusCode::FORBIDDEN,
            Auth(_) => StatusCode::UNAUTHORIZED,
            SeveralAuthorizations => StatusCode::BAD_REQUEST,
            Body(_) => StatusCode::BAD_REQUEST,
            PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyRead => StatusCode::BAD_REQUEST,
            BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            SchoolNotFound | WeekNotFound(_) | NoPublishedWeek(_) => StatusCode::NOT_FOUND,
            SchoolNotInCatalog(_) | SchoolSuspended(_) => StatusCode::FORBIDDEN,
            SchoolProvisioning(_) | Unavailable(_) | Overloaded | CatalogLoading => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Database(err) if is_unavailable(err) => StatusCode::SERVICE_UNAVAILABLE,
            Database(_) | Encode(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Timeout => StatusCode::GATEWAY_TIMEOUT,
            Static(StaticError::BadRequest) => StatusCode::BAD_REQUEST,
            Static(StaticError::NotFound) => StatusCode::NOT_FOUND,
            Static(StaticError::MethodNotAllowed) => StatusCode::METHOD_NOT_ALLOWED,
            Static(StaticError::Io(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            AdminDisabled => StatusCode::FORBIDDEN,
            AdminUnauthorized => StatusCode::UNAUTHORIZED,
            AdminBadRequest(_) => StatusCode::BAD_REQUEST,
            UnknownSchool(_) => StatusCode::NOT_FOUND,
            SchoolExists(_) | StillProvisioning(_) => StatusCode::CONFLICT,
            CatalogUnreachable(_) | Catalog(_) | RefreshFailed(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// A stable, machine-readable name of the failure.
    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            Route(RouteError::NotFound) => "not_found",
            Route(RouteError::BadSlug) | SchoolNotFound => "school_not_found",
            Route(RouteError::MethodNotAllowed { .. }) => "method_not_allowed",
            Route(RouteError::BadId { .. }) => "invalid_id",
            Route(RouteError::BadDate) => "invalid_date",
            Auth(err) if err.is_forbidden() => "forbidden",
            Auth(_) => "unauthorized",
            SeveralAuthorizations => "several_authorization_headers",
            Body(err) => err.code(),
            PayloadTooLarge { .. } => "payload_too_large",
            BodyRead => "bad_body",
            BodyTimeout => "body_timeout",
            CatalogLoading => "catalog_loading",
            SchoolNotInCatalog(_) => "school_not_in_catalog",
            SchoolSuspended(_) => "school_suspended",
            SchoolProvisioning(_) => "school_provisioning",
            WeekNotFound(_) => "not_found",
            NoPublishedWeek(_) => "not_published",
            Unavailable(_) => "database_unavailable",
            Database(err) if is_unavailable(err) => "database_unavailable",
            Database(_) | Encode(_) => "internal_error",
            Timeout => "timeout",
            Overloaded => "overloaded",
            Static(StaticError::BadRequest) => "invalid_path",
            Static(StaticError::NotFound) => "not_found",
            Static(StaticError::MethodNotAllowed) => "method_not_allowed",
            Static(StaticError::Io(_)) => "internal_error",
            AdminDisabled => "admin_disabled",
            AdminUnauthorized => "unauthorized",
            AdminBadRequest(_) => "bad_request",
            UnknownSchool(_) => "school_not_found",
            SchoolExists(_) => "school_exists",
            StillProvisioning(_) => "still_provisioning",
            CatalogUnreachable(_) | Catalog(_) => "catalog_unavailable",
            RefreshFailed(_) => "refresh_failed",
        }
    }

    /// The text shown to the client (API.md's messages where it names them).
    pub fn client_message(&self) -> String {
        use ApiError::*;
        match self {
            Route(RouteError::NotFound) => "Not found".into(),
            Route(RouteError::BadSlug) | SchoolNotFound => "School not found".into(),
            Route(RouteError::MethodNotAllowed { .. }) => "Method not allowed".into(),
            Route(RouteError::BadId { name, .. }) => {
                format!("Bad request, {name} must be a positive integer")
            }
            Route(RouteError::BadDate) => "Bad request, dates must be YYYY-MM-DD".into(),
            Auth(err) if err.is_forbidden() => "Forbidden: the token names no school".into(),
            Auth(_) => "Unauthorized".into(),
            SeveralAuthorizations => "Bad request, send exactly one Authorization header".into(),
            Body(err) => err.client_message(),
            PayloadTooLarge { limit } => format!("Request body is larger than {limit} bytes"),
            BodyRead => "Bad request, the body could not be read".into(),
            BodyTimeout => "The request body did not arrive in time".into(),
            CatalogLoading => "The server is starting; try again shortly".into(),
            SchoolNotInCatalog(_) => "Forbidden: your school is not served here".into(),
            SchoolSuspended(_) => "Forbidden: your school is suspended".into(),
            SchoolProvisioning(_) => {
                "Your school is being provisioned; try again in a few seconds".into()
            }
            WeekNotFound(id) => format!("Lunch Week Id {id} not found"),
            NoPublishedWeek(date) => format!("No menu has been published for the week of {date}"),
            Unavailable(_) => "The school's database is unavailable; try again shortly".into(),
            Database(err) if is_unavailable(err) => {
                "The school's database is unavailable; try again shortly".into()
            }
            Database(_) | Encode(_) => "Internal server error".into(),
            Timeout => "The request took too long".into(),
            Overloaded => "The server is busy; try again shortly".into(),
            Static(StaticError::BadRequest) => "Bad request".into(),
            Static(StaticError::NotFound) => "Not found".into(),
            Static(StaticError::MethodNotAllowed) => "Method not allowed".into(),
            Static(StaticError::Io(_)) => "Internal server error".into(),
            AdminDisabled => "the admin API is disabled: set [admin] token".into(),
            AdminUnauthorized => "Unauthorized".into(),
            AdminBadRequest(message) => message.clone(),
            UnknownSchool(database) => format!("no school with database {database}"),
            SchoolExists(database) => format!("a school with database {database} already exists"),
            StillProvisioning(_) => "the school is still provisioning".into(),
            CatalogUnreachable(_) => "the catalog is unreachable".into(),
            Catalog(_) => "the catalog is unavailable".into(),
            // The control loop's text may carry PostgreSQL's; it goes to the log only.
            RefreshFailed(_) => "refresh failed; see the log".into(),
        }
    }

    /// The `Allow` header of a 405.
    fn allow(&self) -> Option<&'static str> {
        match self {
            ApiError::Route(RouteError::MethodNotAllowed { allow }) => Some(allow),
            ApiError::Static(StaticError::MethodNotAllowed) => Some(static_files::ALLOW),
            _ => None,
        }
    }

    /// Seconds a client should wait before retrying, for 503s.
    fn retry_after(&self) -> Option<&'static str> {
        match self.status() {
            StatusCode::SERVICE_UNAVAILABLE => Some(match self {
                ApiError::SchoolProvisioning(_) => "5",
                _ => "1",
            }),
            _ => None,
        }
    }

    /// The full cause chain, for the log line of a 5xx.
    pub fn cause_chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            let _ = write!(text, ": {cause}");
            source = cause.source();
        }
        text
    }

    /// The response, with `{"message", "code", "requestId"}` as the body, `message` first
    /// (the Svelte client reads it).
    pub fn to_response(&self, request_id: &str) -> Response<Full<Bytes>> {
        let status = self.status();
        let body = ErrorBody {
            message: &self.client_message(),
            code: self.code(),
            request_id,
        };
        // Serializing three strings cannot fail; the fallback is still a valid body.
        let body = serde_json::to_vec(&body)
            .unwrap_or_else(|_| br#"{"message":"Internal server error"}"#.to_vec());
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(allow) = self.allow() {
            headers.insert(http::header::ALLOW, HeaderValue::from_static(allow));
        }
        if let Some(seconds) = self.retry_after() {
            headers.insert(RETRY_AFTER, HeaderValue::from_static(seconds));
        }
        response
    }
}

/// The error body, its keys in this order.
#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    message: &'a str,
    code: &'static str,
    #[serde(rename = "requestId")]
    request_id: &'a str,
}

/// Failures of the database rather than of the query: the connection is gone (closed, or
/// its socket failed), the server is shutting down or refuses connections, or the
/// statement timed out. A row the handler cannot decode (a column of another type, say)
/// is none of these: it is the program's error, a 500.
fn is_unavailable(err: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    if err.is_closed() {
        return true;
    }
    match err.code() {
        None => std::error::Error::source(err).is_some_and(|source| source.is::<std::io::Error>()),
        Some(code) => {
            code == &SqlState::QUERY_CANCELED
                || code == &SqlState::ADMIN_SHUTDOWN
                || code == &SqlState::CRASH_SHUTDOWN
                || code == &SqlState::CANNOT_CONNECT_NOW
                || code == &SqlState::TOO_MANY_CONNECTIONS
                || code == &SqlState::UNDEFINED_TABLE
                || code.code().starts_with("08")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_codes_and_messages() {
        let cases: Vec<(ApiError, u16, &str, &str)> = vec![
            (
                ApiError::BodyTimeout,
                408,
                "body_timeout",
                "The request body did not arrive in time",
            ),
            (
                ApiError::Route(RouteError::NotFound),
                404,
                "not_found",
                "Not found",
            ),
            (
                ApiError::Route(RouteError::BadSlug),
                404,
                "school_not_found",
                "School not found",
            ),
            (
                ApiError::SchoolNotFound,
                404,
                "school_not_found",
                "School not found",
            ),
            (
                ApiError::WeekNotFound(7),
                404,
                "not_found",
                "Lunch Week Id 7 not found",
            ),
            (
                ApiError::NoPublishedWeek(Date::parse("2020-11-16").unwrap()),
                404,
                "not_published",
                "No menu has been published for the week of 2020-11-16",
            ),
            (
                ApiError::Body(BodyError::IdsDoNotMatch),
                400,
                "ids_do_not_match",
                "Bad request, IDs do not match",
            ),
            (
                ApiError::SeveralAuthorizations,
                400,
                "several_authorization_headers",
                "Bad request, send exactly one Authorization header",
            ),
            (
                ApiError::PayloadTooLarge { limit: 10 },
                413,
                "payload_too_large",
                "Request body is larger than 10 bytes",
            ),
            (
                ApiError::SchoolSuspended("a".into()),
                403,
                "school_suspended",
                "Forbidden: your school is suspended",
            ),
            (
                ApiError::CatalogLoading,
                503,
                "catalog_loading",
                "The server is starting; try again shortly",
            ),
            (
                ApiError::Timeout,
                504,
                "timeout",
                "The request took too long",
            ),
            (
                ApiError::Overloaded,
                503,
                "overloaded",
                "The server is busy; try again shortly",
            ),
        ];
        for (err, status, code, message) in cases {
            assert_eq!(err.status().as_u16(), status, "{err:?}");
            assert_eq!(err.code(), code, "{err:?}");
            assert_eq!(err.client_message(), message, "{err:?}");
            let response = err.to_response("rid");
            assert_eq!(response.status().as_u16(), status);
            assert_eq!(
                response.headers().contains_key(RETRY_AFTER),
                status == 503,
                "{err:?}"
            );
        }
        let allow =
            ApiError::Route(RouteError::MethodNotAllowed { allow: "GET, HEAD" }).to_response("r");
        assert_eq!(allow.headers()[http::header::ALLOW], "GET, HEAD");
    }

    fn connect_error() -> ConnectError {
        ConnectError {
            target: "postgres://catalog-host:5432/catalog".into(),
            source: None,
        }
    }

    /// The static front end's and the admin API's failures: (error, status, code, message).
    fn static_and_admin_cases() -> Vec<(ApiError, u16, &'static str, &'static str)> {
        let io = std::io::Error::other("/srv/site/secret: permission denied");
        vec![
            (
                StaticError::BadRequest.into(),
                400,
                "invalid_path",
                "Bad request",
            ),
            (StaticError::NotFound.into(), 404, "not_found", "Not found"),
            (
                StaticError::MethodNotAllowed.into(),
                405,
                "method_not_allowed",
                "Method not allowed",
            ),
            (
                StaticError::Io(io).into(),
                500,
                "internal_error",
                "Internal server error",
            ),
            (
                ApiError::AdminDisabled,
                403,
                "admin_disabled",
                "the admin API is disabled: set [admin] token",
            ),
            (
                ApiError::AdminUnauthorized,
                401,
                "unauthorized",
                "Unauthorized",
            ),
            (
                ApiError::AdminBadRequest("body must be a JSON object".into()),
                400,
                "bad_request",
                "body must be a JSON object",
            ),
            (
                ApiError::UnknownSchool("lunch_a".into()),
                404,
                "school_not_found",
                "no school with database lunch_a",
            ),
            (
                ApiError::SchoolExists("lunch_a".into()),
                409,
                "school_exists",
                "a school with database lunch_a already exists",
            ),
            (
                ApiError::StillProvisioning("lunch_a".into()),
                409,
                "still_provisioning",
                "the school is still provisioning",
            ),
            (
                ApiError::CatalogUnreachable(connect_error()),
                503,
                "catalog_unavailable",
                "the catalog is unreachable",
            ),
            (
                ApiError::Catalog(CatalogError::Connect(connect_error())),
                503,
                "catalog_unavailable",
                "the catalog is unavailable",
            ),
            (
                ApiError::RefreshFailed("catalog query failed: relation missing".into()),
                503,
                "refresh_failed",
                "refresh failed; see the log",
            ),
        ]
    }

    #[tokio::test]
    async fn static_and_admin_failures_have_one_status_code_and_flat_body() {
        use http_body_util::BodyExt;
        for (err, status, code, message) in static_and_admin_cases() {
            let chain = err.cause_chain();
            let response = err.to_response("rid-1");
            let (parts, body) = response.into_parts();
            assert_eq!(parts.status.as_u16(), status, "{chain}");
            assert_eq!(
                parts.headers[CONTENT_TYPE], "application/json; charset=utf-8",
                "{chain}"
            );
            assert_eq!(
                parts.headers.contains_key(RETRY_AFTER),
                status == 503,
                "{chain}"
            );
            assert_eq!(
                parts.headers.get(WWW_AUTHENTICATE).is_some(),
                status == 401,
                "{chain}"
            );
            let allow = parts.headers.get(http::header::ALLOW);
            assert_eq!(allow.is_some(), status == 405, "{chain}");
            if let Some(allow) = allow {
                assert_eq!(allow, static_files::ALLOW);
            }
            let bytes = body.collect().await.unwrap().to_bytes();
            // `message` first: the Svelte client reads it, and a reader of a raw body too.
            assert!(bytes.starts_with(br#"{"message":"#), "{chain}");
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            let expected = serde_json::json!({
                "message": message,
                "code": code,
                "requestId": "rid-1",
            });
            assert_eq!(body, expected, "{chain}");
            // Paths, IO and PostgreSQL texts stay in the log.
            for secret in ["/srv/site", "catalog-host", "disk full", "relation missing"] {
                assert!(!body.to_string().contains(secret), "{chain}: {body}");
            }
        }
    }

    #[test]
    fn five_hundreds_keep_their_source_for_the_log() {
        let err = ApiError::CatalogUnreachable(connect_error());
        assert!(
            err.cause_chain().contains("catalog-host"),
            "{}",
            err.cause_chain()
        );
        let err = ApiError::from(StaticError::Io(std::io::Error::other("permission denied")));
        assert!(
            err.cause_chain().contains("permission denied"),
            "{}",
            err.cause_chain()
        );
    }
}
