//! The router: a method and a raw URI path in, a [`Route`] or a [`RouteError`] out.
//!
//! This module owns the path grammar of API.md: which paths exist, which methods each
//! allows (the exact `Allow` header value), and the syntax of path parameters (ids, dates,
//! school slugs), so malformed input never reaches a handler, the catalog or SQL. It must
//! not do I/O, look anything up (a well-formed slug may still be an unknown school), decode
//! percent-escapes, or choose HTTP statuses; the caller maps [`RouteError`] to a response.
//!
//! Checks run in a fixed order: the path's shape (else `NotFound`), then the method (else
//! `MethodNotAllowed`), then the parameters (`BadId`, `BadDate`, `BadSlug`). `OPTIONS` on
//! a known shape is a CORS preflight before the parameters are checked, so a browser sees
//! the real request's 400 rather than a failed preflight.

use crate::domain::names::Slug;

use ::http::Method;

use crate::domain::date::Date;

/// What a request is for. Borrows the slug from the path: routing does not allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// `GET|HEAD /healthz`: the process is alive.
    Healthz,
    /// `GET|HEAD /readyz`: the process can serve.
    Readyz,
    /// `GET|HEAD /api/lunch-week`.
    ListWeeks,
    /// `POST /api/lunch-week`.
    CreateWeek,
    /// `GET|HEAD /api/lunch-week/:lunchWeekId`.
    GetWeek(i32),
    /// `PUT /api/lunch-week/:lunchWeekId`.
    UpdateWeek(i32),
    /// `DELETE /api/lunch-week/:lunchWeekId`.
    DeleteWeek(i32),
    /// `GET|HEAD /api/lunch-week/:lunchWeekId/lunch-day`.
    ListDays(i32),
    /// `POST /api/lunch-week/:lunchWeekId/lunch-day`.
    CreateDay(i32),
    /// `PUT /api/lunch-week/:lunchWeekId/lunch-day/:lunchDayId` (week id, day id).
    UpdateDay(i32, i32),
    /// `DELETE /api/lunch-week/:lunchWeekId/lunch-day/:lunchDayId` (week id, day id).
    DeleteDay(i32, i32),
    /// `GET|HEAD /api/lunch-week-public/:schoolName/:weekOf`.
    PublicWeek { slug: Slug<'a>, week_of: Date },
    /// `OPTIONS` on a known `/api` path: a CORS preflight.
    Preflight,
    /// Not under `/api/` and not a probe: the server may serve the static front end.
    NotApi,
}

impl Route<'_> {
    /// A stable, low-cardinality label for metrics and logs (no ids, no slugs).
    pub fn name(&self) -> &'static str {
        self.label().name()
    }

    /// Which kind of route this is, without its parameters.
    pub fn label(&self) -> RouteName {
        match self {
            Route::Healthz => RouteName::Healthz,
            Route::Readyz => RouteName::Readyz,
            Route::ListWeeks => RouteName::ListWeeks,
            Route::CreateWeek => RouteName::CreateWeek,
            Route::GetWeek(_) => RouteName::GetWeek,
            Route::UpdateWeek(_) => RouteName::UpdateWeek,
            Route::DeleteWeek(_) => RouteName::DeleteWeek,
            Route::ListDays(_) => RouteName::ListDays,
            Route::CreateDay(_) => RouteName::CreateDay,
            Route::UpdateDay(..) => RouteName::UpdateDay,
            Route::DeleteDay(..) => RouteName::DeleteDay,
            Route::PublicWeek { .. } => RouteName::PublicWeek,
            Route::Preflight => RouteName::Preflight,
            Route::NotApi => RouteName::NotApi,
        }
    }
}

/// A [`Route`] without its parameters: the fixed label set metrics count requests by.
/// [`RouteName::ALL`] lists every variant in declaration order, so `name as usize` is its
/// position there (the metrics registry checks that at compile time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteName {
    Healthz,
    Readyz,
    ListWeeks,
    CreateWeek,
    GetWeek,
    UpdateWeek,
    DeleteWeek,
    ListDays,
    CreateDay,
    UpdateDay,
    DeleteDay,
    PublicWeek,
    Preflight,
    NotApi,
}

impl RouteName {
    pub const ALL: [RouteName; 14] = [
        RouteName::Healthz,
        RouteName::Readyz,
        RouteName::ListWeeks,
        RouteName::CreateWeek,
        RouteName::GetWeek,
        RouteName::UpdateWeek,
        RouteName::DeleteWeek,
        RouteName::ListDays,
        RouteName::CreateDay,
        RouteName::UpdateDay,
        RouteName::DeleteDay,
        RouteName::PublicWeek,
        RouteName::Preflight,
        RouteName::NotApi,
    ];

    /// The label text, e.g. `get_week`.
    pub const fn name(self) -> &'static str {
        match self {
            RouteName::Healthz => "healthz",
            RouteName::Readyz => "readyz",
            RouteName::ListWeeks => "list_weeks",
            RouteName::CreateWeek => "create_week",
            RouteName::GetWeek => "get_week",
            RouteName::UpdateWeek => "update_week",
            RouteName::DeleteWeek => "delete_week",
            RouteName::ListDays => "list_days",
            RouteName::CreateDay => "create_day",
            RouteName::UpdateDay => "update_day",
            RouteName::DeleteDay => "delete_day",
            RouteName::PublicWeek => "public_week",
            RouteName::Preflight => "preflight",
            RouteName::NotApi => "not_api",
        }
    }
}

/// Why a request has no route. Carries what the caller needs for the response; the
/// caller alone picks the status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// No such path under `/api` (a 404).
    #[error("no such api path")]
    NotFound,
    /// A known path, another method (a 405 with this `Allow` value).
    #[error("method not allowed (allowed: {allow})")]
    MethodNotAllowed { allow: &'static str },
    /// An id segment that is not a positive i32 (a 400). `name` is the parameter as API.md
    /// spells it; `raw` is the client's text, for logs only (never echo it unescaped).
    #[error("invalid {name} in path")]
    BadId { name: &'static str, raw: String },
    /// A `:weekOf` that is not a strict `YYYY-MM-DD` calendar date (a 400).
    #[error("invalid weekOf in path, expected YYYY-MM-DD")]
    BadDate,
    /// A `:schoolName` that cannot be any school's slug. The caller must answer exactly as
    /// for an unknown school (404 "School not found"), so the two cannot be told apart.
    #[error("school slug is not well formed")]
    BadSlug,
}

const ALLOW_GET: &str = "GET, HEAD";
const ALLOW_COLLECTION: &str = "GET, HEAD, POST";
const ALLOW_ITEM: &str = "GET, HEAD, PUT, DELETE";
const ALLOW_DAY: &str = "PUT, DELETE";

/// Routes a request. `path` is the raw URI path (no query), percent-escapes undecoded.
pub fn route<'a>(method: &Method, path: &'a str) -> Result<Route<'a>, RouteError> {
    // One trailing slash is the same path without it; "/" itself stays "/".
    let path = match path.strip_suffix('/') {
        Some(stripped) if !stripped.is_empty() => stripped,
        _ => path,
    };
    let is_get = *method == Method::GET || *method == Method::HEAD;
    let rest = match path.strip_prefix("/api") {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
        _ => return outside_api(path, is_get),
    };
    let shape = Shape::of(rest)?;
    // An empty parameter ("/api/lunch-week//lunch-day") is an empty segment: no such path.
    if shape.has_empty_parameter() {
        return Err(RouteError::NotFound);
    }
    if *method == Method::OPTIONS {
        return Ok(Route::Preflight);
    }
    shape.route(method, is_get)
}

/// A path not under `/api`: a probe, or the static front end's.
fn outside_api(path: &str, is_get: bool) -> Result<Route<'_>, RouteError> {
    match path {
        "/healthz" | "/readyz" if !is_get => not_allowed(ALLOW_GET),
        "/healthz" => Ok(Route::Healthz),
        "/readyz" => Ok(Route::Readyz),
        _ => Ok(Route::NotApi),
    }
}

/// A known path with its parameter segments, before the method and parameters are checked.
enum Shape<'a> {
    Weeks,
    Week(&'a str),
    Days(&'a str),
    Day(&'a str, &'a str),
    Public(&'a str, &'a str),
}

impl<'a> Shape<'a> {
    /// The shape of `rest`, the part of the path after `/api` ("" or starting with '/').
    fn of(rest: &'a str) -> Result<Shape<'a>, RouteError> {
        // Splitting keeps empty segments, so "/api//lunch-week" has an empty one and
        // matches nothing.
        let mut segments = rest.strip_prefix('/').unwrap_or("").split('/');
        let shape = match (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) {
            (Some("lunch-week"), None, ..) => Shape::Weeks,
            (Some("lunch-week"), Some(week), None, ..) => Shape::Week(week),
            (Some("lunch-week"), Some(week), Some("lunch-day"), None, _) => Shape::Days(week),
            (Some("lunch-week"), Some(week), Some("lunch-day"), Some(day), None) => {
                Shape::Day(week, day)
            }
            (Some("lunch-week-public"), Some(slug), Some(week_of), None, _) => {
                Shape::Public(slug, week_of)
            }
            _ => return Err(RouteError::NotFound),
        };
        Ok(shape)
    }

    /// The route of this shape for `method` (not `OPTIONS`), its parameters checked.
    fn route(self, method: &Method, is_get: bool) -> Result<Route<'a>, RouteError> {
        match self {
            Shape::Weeks if is_get => Ok(Route::ListWeeks),
            Shape::Weeks if *method == Method::POST => Ok(Route::CreateWeek),
            Shape::Weeks => not_allowed(ALLOW_COLLECTION),
            Shape::Week(week) => {
                let build = if is_get {
                    Route::GetWeek
                } else if *method == Method::PUT {
                    Route::UpdateWeek
                } else if *method == Method::DELETE {
                    Route::DeleteWeek
                } else {
                    return not_allowed(ALLOW_ITEM);
                };
                Ok(build(week_id(week)?))
            }
            Shape::Days(week) => {
                let build = if is_get {
                    Route::ListDays
                } else if *method == Method::POST {
                    Route::CreateDay
                } else {
                    return not_allowed(ALLOW_COLLECTION);
                };
                Ok(build(week_id(week)?))
            }
            Shape::Day(week, day) => {
                // A single day cannot be read: API.md has no GET for it.
                let build = if *method == Method::PUT {
                    Route::UpdateDay
                } else if *method == Method::DELETE {
                    Route::DeleteDay
                } else {
                    return not_allowed(ALLOW_DAY);
                };
                Ok(build(week_id(week)?, id(day, "lunchDayId")?))
            }
            Shape::Public(slug, week_of) => {
                if !is_get {
                    return not_allowed(ALLOW_GET);
                }
                // The date first: a malformed slug must behave exactly like a well-formed
                // unknown one, which the router cannot tell from a known one.
                let week_of = Date::parse(week_of).ok_or(RouteError::BadDate)?;
                let slug = Slug::parse(slug).ok_or(RouteError::BadSlug)?;
                Ok(Route::PublicWeek { slug, week_of })
            }
        }
    }

    fn has_empty_parameter(&self) -> bool {
        match *self {
            Shape::Weeks => false,
            Shape::Week(a) | Shape::Days(a) => a.is_empty(),
            Shape::Day(a, b) | Shape::Public(a, b) => a.is_empty() || b.is_empty(),
        }
    }
}

fn not_allowed<T>(allow: &'static str) -> Result<T, RouteError> {
    Err(RouteError::MethodNotAllowed { allow })
}

fn week_id(raw: &str) -> Result<i32, RouteError> {
    id(raw, "lunchWeekId")
}

/// A positive i32 written as plain ASCII digits: no sign, space, fraction or escape.
/// Leading zeros are accepted (`007` is 7), as the original's `Number()` did.
fn id(raw: &str, name: &'static str) -> Result<i32, RouteError> {
    let parsed = if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        raw.parse::<i32>().ok().filter(|&id| id > 0)
    } else {
        None
    };
    parsed.ok_or_else(|| RouteError::BadId {
        name,
        raw: raw.to_owned(),
    })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
