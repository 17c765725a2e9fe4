//! Table-driven tests of the `router` module: they own its contract's examples and must not
//! do I/O or depend on anything outside the module and its pure dependencies.

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
