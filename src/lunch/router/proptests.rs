//! Property tests of the `router` module: any method and path routes or is refused
//! without a panic, and a route's own path routes back to it.

use proptest::prelude::*;

use super::*;

/// Methods the router knows, and extension methods it must refuse like any other.
fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::GET),
        Just(Method::HEAD),
        Just(Method::POST),
        Just(Method::PUT),
        Just(Method::DELETE),
        Just(Method::OPTIONS),
        Just(Method::PATCH),
        Just(Method::TRACE),
        Just(Method::CONNECT),
        "[A-Z]{1,12}".prop_map(|name| Method::from_bytes(name.as_bytes()).unwrap()),
    ]
}

/// Segments near the grammar's: its literals, ids at and past the i32 edges, signs,
/// dates good and bad, slugs good and bad, escapes, and arbitrary text.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("api".to_string()),
        Just("lunch-week".to_string()),
        Just("lunch-day".to_string()),
        Just("lunch-week-public".to_string()),
        Just("healthz".to_string()),
        Just(String::new()),
        Just("2147483647".to_string()),
        Just("2147483648".to_string()),
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("+1".to_string()),
        Just("%2e%2e".to_string()),
        Just("..".to_string()),
        "[0-9]{1,12}",
        "[0-9]{4}-[0-9]{2}-[0-9]{2}",
        "[a-z][a-z0-9-]{0,70}",
        any::<String>(),
    ]
}

fn structured_path() -> impl Strategy<Value = String> {
    (prop::collection::vec(segment(), 0..7), any::<bool>()).prop_map(|(segments, slash)| {
        let mut path = format!("/{}", segments.join("/"));
        if slash {
            path.push('/');
        }
        path
    })
}

fn valid_date() -> impl Strategy<Value = Date> {
    (1u16..=9999, 1u8..=12, 1u8..=31)
        .prop_filter_map("not a calendar date", |(y, m, d)| Date::from_ymd(y, m, d))
}

fn slug() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,62}"
}

/// A route with parameters, its method and the path that names it.
fn routed() -> impl Strategy<Value = (Method, String, String, Route<'static>)> {
    // The slug is carried as text (a Route borrows it); `check` builds the route from it.
    let id = 1..=i32::MAX;
    prop_oneof![
        id.clone().prop_map(|w| (
            Method::GET,
            format!("/api/lunch-week/{w}"),
            String::new(),
            Route::GetWeek(w)
        )),
        id.clone().prop_map(|w| (
            Method::PUT,
            format!("/api/lunch-week/{w}"),
            String::new(),
            Route::UpdateWeek(w)
        )),
        id.clone().prop_map(|w| (
            Method::DELETE,
            format!("/api/lunch-week/{w}"),
            String::new(),
            Route::DeleteWeek(w)
        )),
        id.clone().prop_map(|w| (
            Method::HEAD,
            format!("/api/lunch-week/{w}/lunch-day"),
            String::new(),
            Route::ListDays(w)
        )),
        id.clone().prop_map(|w| (
            Method::POST,
            format!("/api/lunch-week/{w}/lunch-day"),
            String::new(),
            Route::CreateDay(w)
        )),
        (id.clone(), id.clone()).prop_map(|(w, d)| (
            Method::PUT,
            format!("/api/lunch-week/{w}/lunch-day/{d}"),
            String::new(),
            Route::UpdateDay(w, d)
        )),
        (id.clone(), id).prop_map(|(w, d)| (
            Method::DELETE,
            format!("/api/lunch-week/{w}/lunch-day/{d}"),
            String::new(),
            Route::DeleteDay(w, d)
        )),
        (slug(), valid_date()).prop_map(|(slug, week_of)| (
            Method::GET,
            format!("/api/lunch-week-public/{slug}/{week_of}"),
            slug,
            // Placeholder slug, replaced by the borrowed one in the test.
            Route::PublicWeek {
                slug: Slug::parse("x").unwrap(),
                week_of
            }
        )),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any method with any text as the path: a route or a refusal, never a panic.
    #[test]
    fn any_text_routes_or_is_refused(method in method(), path in any::<String>()) {
        let _ = route(&method, &path);
    }

    /// Paths made of the grammar's own pieces reach every branch: still no panic, and an
    /// id the router accepts is positive and written in the path.
    #[test]
    fn near_miss_paths_route_or_are_refused(method in method(), path in structured_path()) {
        match route(&method, &path) {
            Ok(Route::GetWeek(id) | Route::UpdateWeek(id) | Route::DeleteWeek(id)
                | Route::ListDays(id) | Route::CreateDay(id)) => {
                prop_assert!(id > 0);
                prop_assert!(path.contains(&id.to_string()), "{path}");
            }
            Ok(Route::UpdateDay(week, day) | Route::DeleteDay(week, day)) => {
                prop_assert!(week > 0 && day > 0);
            }
            Ok(Route::PublicWeek { slug, week_of }) => {
                prop_assert!(path.contains(slug.as_str()));
                prop_assert!(path.contains(&week_of.to_string()));
            }
            Ok(_) | Err(_) => {}
        }
    }

    /// Formatting a route's path and routing it gives the same route, with or without a
    /// trailing slash and with leading zeros on the ids.
    #[test]
    fn a_routes_path_routes_back_to_it(
        (method, path, slug, expected) in routed(),
        slash in any::<bool>(),
        zeros in 0usize..3,
    ) {
        let expected = match expected {
            Route::PublicWeek { week_of, .. } => Route::PublicWeek {
                slug: Slug::parse(&slug).unwrap(),
                week_of,
            },
            other => other,
        };
        let padded = path
            .replace("/lunch-week/", &format!("/lunch-week/{}", "0".repeat(zeros)))
            .replace("/lunch-day/", &format!("/lunch-day/{}", "0".repeat(zeros)));
        for path in [path.clone(), padded] {
            let path = if slash { format!("{path}/") } else { path };
            prop_assert_eq!(route(&method, &path), Ok(expected));
            // A preflight on the same path is always answered.
            prop_assert_eq!(route(&Method::OPTIONS, &path), Ok(Route::Preflight));
        }
    }
}
