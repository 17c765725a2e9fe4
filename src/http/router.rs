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

use std::fmt;

use ::http::Method;

use crate::api::date::Date;

/// The longest slug: PostgreSQL's identifier limit, since a slug maps onto a database name.
pub const MAX_SLUG_BYTES: usize = 63;

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
        match self {
            Route::Healthz => "healthz",
            Route::Readyz => "readyz",
            Route::ListWeeks => "list_weeks",
            Route::CreateWeek => "create_week",
            Route::GetWeek(_) => "get_week",
            Route::UpdateWeek(_) => "update_week",
            Route::DeleteWeek(_) => "delete_week",
            Route::ListDays(_) => "list_days",
            Route::CreateDay(_) => "create_day",
            Route::UpdateDay(..) => "update_day",
            Route::DeleteDay(..) => "delete_day",
            Route::PublicWeek { .. } => "public_week",
            Route::Preflight => "preflight",
            Route::NotApi => "not_api",
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

/// A well-formed school slug: `[a-z0-9-]`, 1..=63 bytes, starting with a letter.
/// Well formed is not known: only the catalog says whether the school exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slug<'a>(&'a str);

impl<'a> Slug<'a> {
    /// The slug if `text` is well formed.
    pub fn parse(text: &'a str) -> Option<Slug<'a>> {
        let bytes = text.as_bytes();
        let well_formed = (1..=MAX_SLUG_BYTES).contains(&bytes.len())
            && bytes[0].is_ascii_lowercase()
            && bytes
                .iter()
                .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        well_formed.then_some(Slug(text))
    }

    pub fn as_str(&self) -> &'a str {
        self.0
    }

    /// The database name this slug stands for (`pinewood-elementary` ->
    /// `pinewood_elementary`). A naming convention only: resolve through the catalog.
    pub fn to_database(&self) -> String {
        slug_to_database(self.0)
    }
}

impl fmt::Display for Slug<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// `pinewood-elementary` -> `pinewood_elementary`.
pub fn slug_to_database(slug: &str) -> String {
    slug.replace('-', "_")
}

/// `pinewood_elementary` -> `pinewood-elementary`.
pub fn database_to_slug(database: &str) -> String {
    database.replace('_', "-")
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
    let is_options = *method == Method::OPTIONS;

    let rest = match path.strip_prefix("/api") {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
        _ => {
            return match path {
                "/healthz" | "/readyz" if !is_get => {
                    Err(RouteError::MethodNotAllowed { allow: ALLOW_GET })
                }
                "/healthz" => Ok(Route::Healthz),
                "/readyz" => Ok(Route::Readyz),
                _ => Ok(Route::NotApi),
            }
        }
    };

    // `rest` is "" or starts with '/'; splitting the remainder keeps empty segments, so
    // "/api//lunch-week" has an empty one and matches nothing.
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
    // An empty parameter ("/api/lunch-week//lunch-day") is an empty segment: no such path.
    if shape.has_empty_parameter() {
        return Err(RouteError::NotFound);
    }
    if is_options {
        return Ok(Route::Preflight);
    }

    match shape {
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

/// A known path with its parameter segments, before the method and parameters are checked.
enum Shape<'a> {
    Weeks,
    Week(&'a str),
    Days(&'a str),
    Day(&'a str, &'a str),
    Public(&'a str, &'a str),
}

impl Shape<'_> {
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
mod tests {
    use super::*;

    fn date(text: &str) -> Date {
        Date::parse(text).unwrap()
    }

    fn public<'a>(slug: &'a str, week_of: &str) -> Route<'a> {
        Route::PublicWeek {
            slug: Slug::parse(slug).unwrap(),
            week_of: date(week_of),
        }
    }

    fn bad_id(name: &'static str, raw: &str) -> RouteError {
        RouteError::BadId {
            name,
            raw: raw.to_owned(),
        }
    }

    fn not_allowed_error(allow: &'static str) -> RouteError {
        RouteError::MethodNotAllowed { allow }
    }

    fn check(cases: &[(Method, &str, Result<Route<'_>, RouteError>)]) {
        for (method, path, expected) in cases {
            assert_eq!(&route(method, path), expected, "{method} {path}");
        }
    }

    #[test]
    fn routes_every_api_path() {
        use Method as M;
        check(&[
            (M::GET, "/healthz", Ok(Route::Healthz)),
            (M::HEAD, "/healthz", Ok(Route::Healthz)),
            (M::GET, "/readyz", Ok(Route::Readyz)),
            (M::HEAD, "/readyz", Ok(Route::Readyz)),
            (M::GET, "/api/lunch-week", Ok(Route::ListWeeks)),
            (M::HEAD, "/api/lunch-week", Ok(Route::ListWeeks)),
            (M::POST, "/api/lunch-week", Ok(Route::CreateWeek)),
            (M::GET, "/api/lunch-week/7", Ok(Route::GetWeek(7))),
            (M::HEAD, "/api/lunch-week/7", Ok(Route::GetWeek(7))),
            (M::PUT, "/api/lunch-week/7", Ok(Route::UpdateWeek(7))),
            (M::DELETE, "/api/lunch-week/7", Ok(Route::DeleteWeek(7))),
            (
                M::GET,
                "/api/lunch-week/7/lunch-day",
                Ok(Route::ListDays(7)),
            ),
            (
                M::HEAD,
                "/api/lunch-week/7/lunch-day",
                Ok(Route::ListDays(7)),
            ),
            (
                M::POST,
                "/api/lunch-week/7/lunch-day",
                Ok(Route::CreateDay(7)),
            ),
            (
                M::PUT,
                "/api/lunch-week/7/lunch-day/31",
                Ok(Route::UpdateDay(7, 31)),
            ),
            (
                M::DELETE,
                "/api/lunch-week/7/lunch-day/31",
                Ok(Route::DeleteDay(7, 31)),
            ),
            (
                M::GET,
                "/api/lunch-week-public/pinewood-elementary/2020-11-16",
                Ok(public("pinewood-elementary", "2020-11-16")),
            ),
            (
                M::HEAD,
                "/api/lunch-week-public/pinewood-elementary/2020-11-16",
                Ok(public("pinewood-elementary", "2020-11-16")),
            ),
            (
                M::GET,
                "/api/lunch-week/2147483647",
                Ok(Route::GetWeek(i32::MAX)),
            ),
            (M::GET, "/api/lunch-week/007", Ok(Route::GetWeek(7))),
        ]);
    }

    #[test]
    fn wrong_methods_get_the_exact_allow_value() {
        use Method as M;
        let get = not_allowed_error("GET, HEAD");
        let collection = not_allowed_error("GET, HEAD, POST");
        let item = not_allowed_error("GET, HEAD, PUT, DELETE");
        let day = not_allowed_error("PUT, DELETE");
        check(&[
            (M::POST, "/healthz", Err(get.clone())),
            (M::OPTIONS, "/readyz", Err(get.clone())),
            (M::PUT, "/api/lunch-week", Err(collection.clone())),
            (M::DELETE, "/api/lunch-week", Err(collection.clone())),
            (M::PATCH, "/api/lunch-week", Err(collection.clone())),
            (M::POST, "/api/lunch-week/7", Err(item.clone())),
            (M::PATCH, "/api/lunch-week/7", Err(item.clone())),
            (
                M::PUT,
                "/api/lunch-week/7/lunch-day",
                Err(collection.clone()),
            ),
            (
                M::DELETE,
                "/api/lunch-week/7/lunch-day",
                Err(collection.clone()),
            ),
            (M::GET, "/api/lunch-week/7/lunch-day/31", Err(day.clone())),
            (M::HEAD, "/api/lunch-week/7/lunch-day/31", Err(day.clone())),
            (M::POST, "/api/lunch-week/7/lunch-day/31", Err(day.clone())),
            (
                M::POST,
                "/api/lunch-week-public/pinewood/2020-11-16",
                Err(get.clone()),
            ),
            (
                M::DELETE,
                "/api/lunch-week-public/pinewood/2020-11-16",
                Err(get.clone()),
            ),
            // The method is checked before the parameters.
            (M::PATCH, "/api/lunch-week/abc", Err(item.clone())),
            (M::GET, "/api/lunch-week/abc/lunch-day/x", Err(day.clone())),
            (
                M::POST,
                "/api/lunch-week-public/UPPER/not-a-date",
                Err(get.clone()),
            ),
            (
                Method::from_bytes(b"BREW").unwrap(),
                "/api/lunch-week",
                Err(collection.clone()),
            ),
        ]);
    }

    #[test]
    fn ids_must_be_positive_i32_digits() {
        let bad = [
            "0",
            "00",
            "-1",
            "1.5",
            "abc",
            "99999999999",
            "2147483648",
            "+1",
            " 1",
            "1 ",
            "%31",
            "1e3",
            "0x10",
            "７",
            "NaN",
        ];
        for raw in bad {
            for (method, path, name) in [
                (Method::GET, format!("/api/lunch-week/{raw}"), "lunchWeekId"),
                (Method::PUT, format!("/api/lunch-week/{raw}"), "lunchWeekId"),
                (
                    Method::POST,
                    format!("/api/lunch-week/{raw}/lunch-day"),
                    "lunchWeekId",
                ),
                (
                    Method::PUT,
                    format!("/api/lunch-week/{raw}/lunch-day/31"),
                    "lunchWeekId",
                ),
                (
                    Method::DELETE,
                    format!("/api/lunch-week/7/lunch-day/{raw}"),
                    "lunchDayId",
                ),
            ] {
                assert_eq!(
                    route(&method, &path),
                    Err(bad_id(name, raw)),
                    "{method} {path}"
                );
            }
        }
        // Both bad: the week id is reported.
        assert_eq!(
            route(&Method::PUT, "/api/lunch-week/x/lunch-day/y"),
            Err(bad_id("lunchWeekId", "x"))
        );
    }

    #[test]
    fn public_dates_are_strict() {
        for raw in [
            "2020-02-30",
            "2020-1-6",
            "20200106",
            "2020-01-06T00:00:00Z",
            "2020%2D01%2D06",
            "1900-02-29",
            "0000-01-01",
        ] {
            let path = format!("/api/lunch-week-public/pinewood/{raw}");
            assert_eq!(
                route(&Method::GET, &path),
                Err(RouteError::BadDate),
                "{path}"
            );
        }
        check(&[
            (
                Method::GET,
                "/api/lunch-week-public/pinewood/2000-02-29",
                Ok(public("pinewood", "2000-02-29")),
            ),
            // A bad date wins over a bad slug, as it would over an unknown school.
            (
                Method::GET,
                "/api/lunch-week-public/Pinewood/2020-13-01",
                Err(RouteError::BadDate),
            ),
        ]);
    }

    #[test]
    fn public_slugs_are_checked_before_any_lookup() {
        let max = format!("a{}", "b".repeat(62));
        let over = format!("a{}", "b".repeat(63));
        let good = [
            "pinewood",
            "pinewood-elementary",
            "a",
            "a1-2",
            "ps-118",
            max.as_str(),
        ];
        for slug in good {
            let path = format!("/api/lunch-week-public/{slug}/2020-11-16");
            assert_eq!(
                route(&Method::GET, &path),
                Ok(public(slug, "2020-11-16")),
                "{path}"
            );
        }
        let bad = [
            "Pinewood",
            "PINEWOOD",
            "pinewood_elementary",
            "1school",
            "-school",
            "..",
            ".",
            "%2F",
            "a%2Fb",
            "pine%2Dwood",
            "pine.wood",
            "pine wood",
            "pinewöod",
            over.as_str(),
        ];
        for slug in bad {
            let path = format!("/api/lunch-week-public/{slug}/2020-11-16");
            assert_eq!(
                route(&Method::GET, &path),
                Err(RouteError::BadSlug),
                "{path}"
            );
        }
    }

    #[test]
    fn slug_and_database_names_convert() {
        let cases = [
            ("pinewood-elementary", "pinewood_elementary"),
            ("pinewood", "pinewood"),
            ("ps-118-north", "ps_118_north"),
        ];
        for (slug, database) in cases {
            assert_eq!(slug_to_database(slug), database);
            assert_eq!(database_to_slug(database), slug);
            assert_eq!(Slug::parse(slug).unwrap().to_database(), database);
        }
        let slug = Slug::parse("pinewood-elementary").unwrap();
        assert_eq!(slug.as_str(), "pinewood-elementary");
        assert_eq!(slug.to_string(), "pinewood-elementary");
    }

    #[test]
    fn trailing_slashes_and_empty_segments() {
        use Method as M;
        check(&[
            (M::GET, "/api/lunch-week/", Ok(Route::ListWeeks)),
            (M::GET, "/api/lunch-week/7/", Ok(Route::GetWeek(7))),
            (
                M::POST,
                "/api/lunch-week/7/lunch-day/",
                Ok(Route::CreateDay(7)),
            ),
            (
                M::PUT,
                "/api/lunch-week/7/lunch-day/31/",
                Ok(Route::UpdateDay(7, 31)),
            ),
            (
                M::GET,
                "/api/lunch-week-public/pinewood/2020-11-16/",
                Ok(public("pinewood", "2020-11-16")),
            ),
            (M::GET, "/healthz/", Ok(Route::Healthz)),
            (M::GET, "/api//lunch-week", Err(RouteError::NotFound)),
            (M::GET, "/api/lunch-week//", Err(RouteError::NotFound)),
            (
                M::GET,
                "/api/lunch-week//lunch-day",
                Err(RouteError::NotFound),
            ),
            (M::PUT, "/api/lunch-week/7//31", Err(RouteError::NotFound)),
            (
                M::PUT,
                "/api/lunch-week/7/lunch-day//",
                Err(RouteError::NotFound),
            ),
            (
                M::GET,
                "/api/lunch-week-public//2020-11-16",
                Err(RouteError::NotFound),
            ),
            (
                M::GET,
                "/api/lunch-week-public/pinewood/",
                Err(RouteError::NotFound),
            ),
            (M::GET, "//api/lunch-week", Ok(Route::NotApi)),
        ]);
    }

    #[test]
    fn unknown_paths() {
        use Method as M;
        check(&[
            (M::GET, "/api", Err(RouteError::NotFound)),
            (M::GET, "/api/", Err(RouteError::NotFound)),
            (M::GET, "/api/users", Err(RouteError::NotFound)),
            (M::POST, "/api/users", Err(RouteError::NotFound)),
            (M::GET, "/api/healthz", Err(RouteError::NotFound)),
            (M::GET, "/api/lunch-weeks", Err(RouteError::NotFound)),
            (M::GET, "/api/Lunch-Week", Err(RouteError::NotFound)),
            (
                M::GET,
                "/api/lunch-week/7/lunch-days",
                Err(RouteError::NotFound),
            ),
            (
                M::GET,
                "/api/lunch-week/7/lunch-day/31/extra",
                Err(RouteError::NotFound),
            ),
            (M::GET, "/api/lunch-week-public", Err(RouteError::NotFound)),
            (
                M::GET,
                "/api/lunch-week-public/pinewood",
                Err(RouteError::NotFound),
            ),
            (
                M::GET,
                "/api/lunch-week-public/pinewood/2020-11-16/x",
                Err(RouteError::NotFound),
            ),
            (M::GET, "/api/lunch%2Dweek", Err(RouteError::NotFound)),
            (M::OPTIONS, "/api/users", Err(RouteError::NotFound)),
            (M::GET, "/", Ok(Route::NotApi)),
            (M::GET, "/index.html", Ok(Route::NotApi)),
            (M::GET, "/apix", Ok(Route::NotApi)),
            (M::GET, "/apilunch-week", Ok(Route::NotApi)),
            (M::POST, "/week/7", Ok(Route::NotApi)),
            (M::GET, "/healthzz", Ok(Route::NotApi)),
            (M::GET, "", Ok(Route::NotApi)),
        ]);
    }

    #[test]
    fn options_on_known_api_paths_is_a_preflight() {
        for path in [
            "/api/lunch-week",
            "/api/lunch-week/",
            "/api/lunch-week/7",
            "/api/lunch-week/7/lunch-day",
            "/api/lunch-week/7/lunch-day/31",
            "/api/lunch-week-public/pinewood/2020-11-16",
            // Parameters are not checked for a preflight; the real request gets the 400.
            "/api/lunch-week/abc",
            "/api/lunch-week-public/Bad/nope",
        ] {
            assert_eq!(
                route(&Method::OPTIONS, path),
                Ok(Route::Preflight),
                "{path}"
            );
        }
    }

    #[test]
    fn names_are_stable_labels() {
        let slug = Slug::parse("pinewood").unwrap();
        let week_of = date("2020-11-16");
        let cases = [
            (Route::Healthz, "healthz"),
            (Route::Readyz, "readyz"),
            (Route::ListWeeks, "list_weeks"),
            (Route::CreateWeek, "create_week"),
            (Route::GetWeek(1), "get_week"),
            (Route::UpdateWeek(1), "update_week"),
            (Route::DeleteWeek(1), "delete_week"),
            (Route::ListDays(1), "list_days"),
            (Route::CreateDay(1), "create_day"),
            (Route::UpdateDay(1, 2), "update_day"),
            (Route::DeleteDay(1, 2), "delete_day"),
            (Route::PublicWeek { slug, week_of }, "public_week"),
            (Route::Preflight, "preflight"),
            (Route::NotApi, "not_api"),
        ];
        for (route, name) in cases {
            assert_eq!(route.name(), name);
        }
    }

    #[test]
    fn the_route_borrows_the_slug_from_the_path() {
        let path = String::from("/api/lunch-week-public/pinewood/2020-11-16");
        let Ok(Route::PublicWeek { slug, .. }) = route(&Method::GET, &path) else {
            panic!("expected a public week");
        };
        assert!(std::ptr::eq(slug.as_str().as_ptr(), path[23..].as_ptr()));
    }
}
