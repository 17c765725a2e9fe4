//! Tests of the `metrics` module: every render is checked by a small exposition-format
//! parser, so a malformed line fails whichever test produced it.

use std::collections::{BTreeSet, HashMap};

use super::render::{route_label, StatusLabel};
use super::*;
use crate::domain::date::Date;
use crate::domain::names::Slug;
use crate::domain::status::SchoolStatus;
use crate::lunch::router::{Route, RouteName};

#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// Parses the text exposition format strictly enough to catch our mistakes: `# HELP` and
/// `# TYPE` comments, then `name{label="value",...} value` lines whose family was typed.
fn parse(text: &str) -> Vec<Sample> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let context = format!("line {}: {line:?}", number + 1);
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let keyword = parts.next().unwrap();
            let name = parts.next().expect(&context);
            assert!(is_metric_name(name), "{context}");
            let rest = parts.next().expect(&context);
            match keyword {
                "HELP" => assert!(!rest.is_empty(), "{context}"),
                "TYPE" => {
                    assert!(
                        ["counter", "gauge", "histogram"].contains(&rest),
                        "{context}"
                    );
                    assert!(
                        types.insert(name.to_owned(), rest.to_owned()).is_none(),
                        "{context}: typed twice"
                    );
                }
                _ => panic!("{context}: unknown comment"),
            }
            continue;
        }
        let sample = parse_sample(line).unwrap_or_else(|| panic!("{context}: not a sample"));
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                let base = sample.name.strip_suffix(suffix)?;
                (types.get(base).map(String::as_str) == Some("histogram")).then_some(base)
            })
            .unwrap_or(&sample.name);
        assert!(types.contains_key(family), "{context}: no TYPE before it");
        samples.push(sample);
    }
    samples
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find('=')?;
            let label = &rest[..eq];
            if !is_label_name(label) {
                return None;
            }
            rest = rest[eq + 1..].strip_prefix('"')?;
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next()? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next()?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        _ => return None,
                    },
                    (_, '\n') => return None,
                    (_, c) => value.push(c),
                }
            };
            labels.push((label.to_owned(), value));
            rest = &rest[end + 1..];
            if let Some(after) = rest.strip_prefix(',') {
                rest = after;
            } else if !rest.starts_with('}') {
                return None;
            }
        }
    }
    let value = rest.strip_prefix(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// The value of the one sample of `name` with exactly `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<_> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?} appears twice");
    found.first().map(|s| s.value)
}

fn school_labels(samples: &[Sample], name: &str) -> BTreeSet<String> {
    samples
        .iter()
        .filter(|s| s.name == name)
        .flat_map(|s| s.labels.iter().filter(|(k, _)| k == "school"))
        .map(|(_, v)| v.clone())
        .collect()
}

#[test]
fn the_parser_rejects_malformed_lines() {
    let cases = [
        "m 1",
        "m{a=\"b\"} 1",
        "m{a=\"b\",c=\"d\\\"\"} 1.5",
        "m{} 1",
        "m{a=\"b\",} 1",
    ];
    for line in cases {
        assert!(parse_sample(line).is_some(), "{line}");
    }
    let bad = [
        "m",
        "m{a=b} 1",
        "m{a=\"b} 1",
        "m{a=\"b\"}1",
        "m{1a=\"b\"} 1",
        "m x",
        "1m 1",
        "m{a=\"\\x\"} 1",
        "m{a=\"b\"c=\"d\"} 1",
    ];
    for line in bad {
        assert!(parse_sample(line).is_none(), "{line}");
    }
}

#[test]
fn a_fresh_registry_renders_valid_text() {
    let metrics = Metrics::new(20);
    let samples = parse(&metrics.render(&PoolReport::default()));
    assert_eq!(value(&samples, "token_cache_hits_total", &[]), Some(0.0));
    assert_eq!(
        value(&samples, "jwt_rejections_total", &[("reason", "expired")]),
        Some(0.0)
    );
    assert_eq!(
        value(&samples, "schools", &[("status", "active")]),
        Some(0.0)
    );
    assert_eq!(
        value(&samples, "school_requests_total", &[("school", "other")]),
        Some(0.0)
    );
    // No catalog yet: no age, rather than a misleading 0.
    assert_eq!(value(&samples, "catalog_snapshot_age_seconds", &[]), None);
}

#[test]
fn counters_move() {
    let metrics = Metrics::new(20);
    let ms = Duration::from_millis;
    // (route, status, elapsed)
    let requests = [
        (Some(RouteName::GetWeek), 200, ms(3)),
        (Some(RouteName::GetWeek), 200, ms(30)),
        (Some(RouteName::GetWeek), 404, ms(1)),
        (Some(RouteName::PublicWeek), 207, ms(0)),
        (None, 503, ms(20_000)),
        (Some(RouteName::Healthz), 999, Duration::MAX),
    ];
    for (route, status, elapsed) in requests {
        let status = StatusCode::from_u16(status).unwrap();
        metrics.record_request(route, status, elapsed);
    }
    for error in [AuthError::Expired, AuthError::Expired, AuthError::Missing] {
        metrics.jwt_rejected(error);
    }
    metrics.token_cache_hit();
    metrics.token_cache_hit();
    metrics.token_cache_miss();
    metrics.catalog_refresh(true);
    metrics.catalog_refresh(false);
    metrics.catalog_refresh(true);
    metrics.provision(false);
    metrics.set_schools(SchoolStatus::Active, 7);
    metrics.set_schools(SchoolStatus::Suspended, 1);
    metrics.catalog_snapshot(4, Instant::now());

    let pools = PoolReport {
        schools: vec![],
        budget_in_use: 12,
        budget_limit: 80,
    };
    let samples = parse(&metrics.render(&pools));
    // (name, labels, value)
    type Expected<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);
    let expected: &[Expected] = &[
        (
            "http_requests_total",
            &[("route", "get_week"), ("status", "200")],
            2.0,
        ),
        (
            "http_requests_total",
            &[("route", "get_week"), ("status", "404")],
            1.0,
        ),
        (
            "http_requests_total",
            &[("route", "public_week"), ("status", "2xx")],
            1.0,
        ),
        (
            "http_requests_total",
            &[("route", "other"), ("status", "503")],
            1.0,
        ),
        (
            "http_requests_total",
            &[("route", "healthz"), ("status", "other")],
            1.0,
        ),
        (
            "http_request_duration_seconds_count",
            &[("route", "get_week")],
            3.0,
        ),
        (
            "http_request_duration_seconds_bucket",
            &[("route", "get_week"), ("le", "0.001")],
            1.0,
        ),
        (
            "http_request_duration_seconds_bucket",
            &[("route", "get_week"), ("le", "0.005")],
            2.0,
        ),
        (
            "http_request_duration_seconds_bucket",
            &[("route", "get_week"), ("le", "0.025")],
            2.0,
        ),
        (
            "http_request_duration_seconds_bucket",
            &[("route", "get_week"), ("le", "0.05")],
            3.0,
        ),
        (
            "http_request_duration_seconds_bucket",
            &[("route", "get_week"), ("le", "+Inf")],
            3.0,
        ),
        (
            "http_request_duration_seconds_bucket",
            &[("route", "other"), ("le", "10")],
            0.0,
        ),
        (
            "http_request_duration_seconds_bucket",
            &[("route", "other"), ("le", "+Inf")],
            1.0,
        ),
        (
            "http_request_duration_seconds_sum",
            &[("route", "get_week")],
            0.034,
        ),
        ("jwt_rejections_total", &[("reason", "expired")], 2.0),
        ("jwt_rejections_total", &[("reason", "missing")], 1.0),
        (
            "jwt_rejections_total",
            &[("reason", "keys_unavailable")],
            0.0,
        ),
        ("token_cache_hits_total", &[], 2.0),
        ("token_cache_misses_total", &[], 1.0),
        ("catalog_snapshot_generation", &[], 4.0),
        ("catalog_refresh_total", &[("result", "ok")], 2.0),
        ("catalog_refresh_total", &[("result", "error")], 1.0),
        ("provision_total", &[("result", "ok")], 0.0),
        ("provision_total", &[("result", "error")], 1.0),
        ("schools", &[("status", "active")], 7.0),
        ("schools", &[("status", "suspended")], 1.0),
        ("schools", &[("status", "provisioning")], 0.0),
        ("connection_budget_in_use", &[], 12.0),
        ("connection_budget_limit", &[], 80.0),
    ];
    for (name, labels, expected) in expected {
        let got = value(&samples, name, labels);
        assert!(
            got.is_some_and(|got| (got - expected).abs() < 1e-9),
            "{name} {labels:?}: {got:?}, expected {expected}"
        );
    }
    // Buckets are cumulative for every route.
    for route in ["get_week", "public_week", "other", "healthz"] {
        let buckets: Vec<f64> = samples
            .iter()
            .filter(|s| s.name == "http_request_duration_seconds_bucket")
            .filter(|s| s.labels.iter().any(|(k, v)| k == "route" && v == route))
            .map(|s| s.value)
            .collect();
        assert_eq!(buckets.len(), BUCKETS.len() + 1, "{route}");
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{route}");
    }
    let age = value(&samples, "catalog_snapshot_age_seconds", &[]).unwrap();
    assert!((0.0..60.0).contains(&age), "{age}");
}

#[test]
fn schools_beyond_top_n_are_summed_as_other() {
    const TOP: usize = 3;
    let metrics = Metrics::new(TOP);
    // school-0 gets 1 request, school-9 gets 10.
    let counters: Vec<_> = (0..10)
        .map(|i| metrics.school_counter(&format!("school-{i}")))
        .collect();
    for (i, counter) in counters.iter().enumerate() {
        for _ in 0..=i {
            counter.increment();
        }
    }
    // The same school gets the same counter.
    metrics.school_counter("school-9").increment();

    let pool = |connections| PoolGauges {
        connections,
        idle: 1,
        waiting: 0,
        requests: connections * 2,
    };
    let pools = PoolReport {
        schools: vec![
            ("school-9", pool(4)),
            ("school-1", pool(2)),
            ("school-0", pool(3)),
        ],
        budget_in_use: 9,
        budget_limit: 80,
    };
    let samples = parse(&metrics.render(&pools));
    let labels = school_labels(&samples, "school_requests_total");
    assert_eq!(labels.len(), TOP + 1, "{labels:?}");
    let expected: BTreeSet<String> = ["school-9", "school-8", "school-7", "other"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(labels, expected);
    let requests = |school| value(&samples, "school_requests_total", &[("school", school)]);
    assert_eq!(requests("school-9"), Some(11.0));
    assert_eq!(requests("school-7"), Some(8.0));
    assert_eq!(requests("other"), Some((1..=7).sum::<u64>() as f64));

    // Pools: school-9 is in the label set; school-1 and school-0 are summed.
    let connections = |school| value(&samples, "pool_connections", &[("school", school)]);
    assert_eq!(connections("school-9"), Some(4.0));
    assert_eq!(connections("other"), Some(5.0));
    assert_eq!(connections("school-8"), None);
    assert_eq!(
        value(&samples, "pool_idle_connections", &[("school", "other")]),
        Some(2.0)
    );
    assert!(school_labels(&samples, "pool_waiting").len() <= TOP + 1);
    assert_eq!(
        value(&samples, "pool_requests", &[("school", "school-9")]),
        Some(8.0)
    );
    assert_eq!(
        value(&samples, "pool_requests", &[("school", "other")]),
        Some(10.0)
    );
}

#[test]
fn forgotten_schools_stay_in_other() {
    let metrics = Metrics::new(1);
    let kept = metrics.school_counter("kept");
    let gone = metrics.school_counter("gone");
    for _ in 0..5 {
        kept.increment();
    }
    gone.increment();
    gone.increment();
    metrics.retain_schools(|name| name != "gone");
    let samples = parse(&metrics.render(&PoolReport::default()));
    let requests = |school| value(&samples, "school_requests_total", &[("school", school)]);
    assert_eq!(requests("kept"), Some(5.0));
    assert_eq!(requests("gone"), None);
    assert_eq!(requests("other"), Some(2.0));
}

#[test]
fn top_zero_puts_every_school_in_other() {
    let metrics = Metrics::new(0);
    metrics.school_counter("a").increment();
    metrics.school_counter("b").increment();
    let samples = parse(&metrics.render(&PoolReport::default()));
    let labels = school_labels(&samples, "school_requests_total");
    assert_eq!(labels, BTreeSet::from(["other".to_owned()]));
    assert_eq!(
        value(&samples, "school_requests_total", &[("school", "other")]),
        Some(2.0)
    );
}

#[test]
fn label_values_are_escaped() {
    let metrics = Metrics::new(5);
    let names = ["quote\"d", "back\\slash", "new\nline", "plain"];
    for name in names {
        metrics.school_counter(name).increment();
    }
    let samples = parse(&metrics.render(&PoolReport::default()));
    for name in names {
        assert_eq!(
            value(&samples, "school_requests_total", &[("school", name)]),
            Some(1.0),
            "{name:?}"
        );
    }
}

#[test]
fn every_route_has_its_own_label() {
    let week_of = Date::parse("2024-09-02").unwrap();
    let slug = Slug::parse("pinewood").unwrap();
    let routes = [
        Route::Healthz,
        Route::Readyz,
        Route::ListWeeks,
        Route::CreateWeek,
        Route::GetWeek(1),
        Route::UpdateWeek(1),
        Route::DeleteWeek(1),
        Route::ListDays(1),
        Route::CreateDay(1),
        Route::UpdateDay(1, 2),
        Route::DeleteDay(1, 2),
        Route::PublicWeek { slug, week_of },
        Route::Preflight,
        Route::NotApi,
    ];
    // The exported label values, in slot order.
    let labels = [
        "healthz",
        "readyz",
        "list_weeks",
        "create_week",
        "get_week",
        "update_week",
        "delete_week",
        "list_days",
        "create_day",
        "update_day",
        "delete_day",
        "public_week",
        "preflight",
        "not_api",
    ];
    assert_eq!(RouteName::ALL.map(RouteName::name), labels);
    for (route, label) in routes.iter().zip(labels) {
        assert_eq!(route.name(), label);
        assert_eq!(route_label(route.label() as usize), label);
    }
    assert_eq!(route_label(UNMATCHED_ROUTE_SLOT), "other");
}

#[test]
fn every_jwt_rejection_reason_has_its_own_label() {
    let metrics = Metrics::new(1);
    for error in AuthError::ALL {
        metrics.jwt_rejected(error);
    }
    let samples = parse(&metrics.render(&PoolReport::default()));
    let reasons = [
        "missing",
        "bad_scheme",
        "too_large",
        "malformed",
        "bad_signature",
        "unknown_key",
        "expired",
        "not_yet_valid",
        "wrong_issuer",
        "wrong_audience",
        "algorithm_not_allowed",
        "no_school_claim",
        "keys_unavailable",
    ];
    assert_eq!(AuthError::ALL.map(|e| e.reason()), reasons);
    for reason in reasons {
        assert_eq!(
            value(&samples, "jwt_rejections_total", &[("reason", reason)]),
            Some(1.0),
            "{reason}"
        );
    }
    let series = samples
        .iter()
        .filter(|s| s.name == "jwt_rejections_total")
        .count();
    assert_eq!(series, reasons.len());
}

#[test]
fn statuses_map_to_bounded_labels() {
    // (status, label)
    let cases = [
        (200, "200"),
        (304, "304"),
        (401, "401"),
        (503, "503"),
        (101, "1xx"),
        (207, "2xx"),
        (308, "3xx"),
        (418, "4xx"),
        (599, "5xx"),
        (600, "other"),
        (999, "other"),
    ];
    for (code, label) in cases {
        let slot = status_slot(StatusCode::from_u16(code).unwrap());
        assert!(slot < STATUS_SLOTS, "{code}");
        assert_eq!(StatusLabel(slot).to_string(), label, "{code}");
    }
}
