//! Property tests of configuration parsing: any TOML document (known and unknown
//! sections and keys, values of every type) gives a configuration or an error that names
//! its key, and any text at all gives one or an error that names a key or a line. Never
//! a panic.

use std::path::Path;

use proptest::prelude::*;
use toml::{Table, Value};

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

const SECTIONS: &[&str] = &["server", "catalog", "tenants", "auth", "admin", "log"];

/// The value type each known key takes (raw.rs).
#[derive(Clone, Copy, Debug)]
enum Kind {
    Text,
    Duration,
    Count,
    Flag,
    List,
}

/// Every key of every section (raw.rs) with its type, so most generated keys are known
/// ones in their own section and most of their values have the right type: the checks of
/// validate.rs run, not only the parser's.
const KEYS: &[(&str, &str, Kind)] = &[
    ("server", "listen", Kind::Text),
    ("server", "max_body_bytes", Kind::Count),
    ("server", "header_read_timeout", Kind::Duration),
    ("server", "keep_alive_timeout", Kind::Duration),
    ("server", "request_timeout", Kind::Duration),
    ("server", "shutdown_grace", Kind::Duration),
    ("server", "drain_delay", Kind::Duration),
    ("server", "static_dir", Kind::Text),
    ("server", "max_connections", Kind::Count),
    ("server", "max_in_flight", Kind::Count),
    ("server", "worker_threads", Kind::Count),
    ("server", "max_header_bytes", Kind::Count),
    ("server", "max_headers", Kind::Count),
    ("server", "cors_origins", Kind::List),
    ("catalog", "url", Kind::Text),
    ("catalog", "refresh_interval", Kind::Duration),
    ("catalog", "notifications", Kind::Flag),
    ("tenants", "url", Kind::Text),
    ("tenants", "pool_max_size", Kind::Count),
    ("tenants", "pool_min_idle", Kind::Count),
    ("tenants", "pipeline_depth", Kind::Count),
    ("tenants", "acquire_timeout", Kind::Duration),
    ("tenants", "idle_timeout", Kind::Duration),
    ("tenants", "connect_timeout", Kind::Duration),
    ("tenants", "statement_timeout", Kind::Duration),
    ("tenants", "max_total_connections", Kind::Count),
    ("tenants", "auto_provision", Kind::Flag),
    ("tenants", "provision_concurrency", Kind::Count),
    ("auth", "issuer", Kind::Text),
    ("auth", "audience", Kind::Text),
    ("auth", "algorithms", Kind::List),
    ("auth", "jwks_url", Kind::Text),
    ("auth", "jwks_file", Kind::Text),
    ("auth", "jwks_refresh_interval", Kind::Duration),
    ("auth", "jwks_refetch_cooldown", Kind::Duration),
    ("auth", "hs256_secret", Kind::Text),
    ("auth", "tenant_claim", Kind::Text),
    ("auth", "leeway", Kind::Duration),
    ("auth", "token_cache_capacity", Kind::Count),
    ("admin", "listen", Kind::Text),
    ("admin", "token", Kind::Text),
    ("admin", "metrics_top_schools", Kind::Count),
    ("log", "format", Kind::Text),
    ("log", "level", Kind::Text),
];

fn text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "", " ", "127.0.0.1:0", "127.0.0.1:8080", "[::1]:0", "localhost:80", "0.0.0.0:65536",
            "postgres://postgres@127.0.0.1:5432/catalog", "postgres://", "postgres://h/Bad-Name",
            "https://idp.example/jwks", "http://", "http://[::1", "RS256", "HS256", "none", "json",
            "text", "auto", "debug", "trace,hyper=off", "[", "*", "https://app.example",
            "https://app.example/", "0123456789abcdef0123456789abcdef", "jwks.json",
        ])
        .prop_map(str::to_string),
        1 => any::<String>(),
    ]
    .boxed()
}

fn duration() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "0s", "0ms", "1ms", "5s", "250ms", "10m", "1h", " 5s ", "5x", "s", "5", "-5s", "1.5s",
            "18446744073709551615ms", "18446744073709551616ms", "99999999999999h",
            "5124095576030431h",
        ])
        .prop_map(str::to_string),
        1 => "[0-9]{1,20}(ms|s|m|h|d|)",
    ]
    .boxed()
}

fn count() -> BoxedStrategy<i64> {
    prop_oneof![
        3 => prop::sample::select(vec![
            0i64, 1, -1, 2, 8191, 8192, 1024, 1025, 65_536, 4_294_967_295, 4_294_967_296,
            i64::MAX, i64::MIN,
        ]),
        1 => any::<i64>(),
    ]
    .boxed()
}

/// A value of `kind`.
fn typed(kind: Kind) -> BoxedStrategy<Value> {
    match kind {
        Kind::Text => text().prop_map(Value::String).boxed(),
        Kind::Duration => duration().prop_map(Value::String).boxed(),
        Kind::Count => count().prop_map(Value::Integer).boxed(),
        Kind::Flag => any::<bool>().prop_map(Value::Boolean).boxed(),
        Kind::List => prop::collection::vec(text().prop_map(Value::String), 0..4)
            .prop_map(Value::Array)
            .boxed(),
    }
}

/// Values of every TOML type.
fn value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        text().prop_map(Value::String),
        duration().prop_map(Value::String),
        count().prop_map(Value::Integer),
        any::<f64>().prop_map(Value::Float),
        any::<bool>().prop_map(Value::Boolean),
    ];
    leaf.prop_recursive(2, 6, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..3)
                .prop_map(|m| Value::Table(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// A key of `section` with a value of its type; when `wild`, sometimes a value of any
/// type, another section's key or an unknown key.
fn entry(section: String, wild: bool) -> BoxedStrategy<(String, Value)> {
    let own: Vec<_> = KEYS
        .iter()
        .filter(|(s, _, _)| *s == section)
        .copied()
        .collect();
    let known = if own.is_empty() { KEYS.to_vec() } else { own };
    let typed_entry = prop::sample::select(known)
        .prop_flat_map(|(_, key, kind)| (Just(key.to_string()), typed(kind)));
    if !wild {
        return typed_entry.boxed();
    }
    prop_oneof![
        12 => typed_entry,
        1 => prop::sample::select(known_keys()).prop_flat_map(|key| (Just(key), value())),
        1 => prop::sample::select(KEYS)
            .prop_flat_map(|(_, key, kind)| (Just(key.to_string()), typed(kind))),
        1 => ("[a-z_]{1,10}", value()),
    ]
    .boxed()
}

fn known_keys() -> Vec<String> {
    KEYS.iter().map(|(_, key, _)| key.to_string()).collect()
}

/// A document of known sections of entries; when `wild`, also unknown sections and
/// sections that are plain values.
fn document(wild: bool) -> impl Strategy<Value = Table> {
    let name = if wild {
        prop_oneof![
            8 => prop::sample::select(SECTIONS).prop_map(str::to_string),
            1 => "[a-z_]{1,10}",
        ]
        .boxed()
    } else {
        prop::sample::select(SECTIONS)
            .prop_map(str::to_string)
            .boxed()
    };
    let section = name.prop_flat_map(move |name| {
        let entries = prop::collection::vec(entry(name.clone(), wild), 0..6)
            .prop_map(|pairs| Value::Table(pairs.into_iter().collect()));
        let body = if wild {
            prop_oneof![12 => entries, 1 => value()].boxed()
        } else {
            entries.boxed()
        };
        (Just(name), body)
    });
    prop::collection::vec(section, 0..6).prop_map(|sections| sections.into_iter().collect())
}

/// Parses `document`: Ok, or an error that names a key.
fn check(document: &Table) -> Result<(), TestCaseError> {
    let Ok(text) = toml::to_string(document) else {
        // A shape TOML cannot write (none expected, but not this test's subject).
        return Ok(());
    };
    if let Err(error) = from_str(&text, Path::new("proxy.toml"), &no_env) {
        let key = error.key.as_deref().unwrap_or_default();
        prop_assert!(!key.is_empty(), "no key in {error} for:\n{text}");
        prop_assert!(error.to_string().starts_with("proxy.toml"), "{error}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Known sections and keys with values of their types: the checks of validate.rs.
    #[test]
    fn any_well_typed_document_is_a_config_or_names_a_key(document in document(false)) {
        check(&document)?;
    }

    /// Unknown sections and keys, values of any type: the parser's checks too.
    #[test]
    fn any_toml_document_is_a_config_or_names_a_key(document in document(true)) {
        check(&document)?;
    }

    /// Any text, mostly not TOML: Ok or an error placed by key or line.
    #[test]
    fn any_text_is_a_config_or_a_placed_error(text in "(\\[[a-z]{1,8}\\]\n)?([a-z_]{1,12} ?= ?\\PC{0,16}\n){0,4}|\\PC{0,64}") {
        if let Err(error) = from_str(&text, Path::new("proxy.toml"), &no_env) {
            prop_assert!(error.key.is_some() || error.line.is_some(), "{error} for:\n{text}");
        }
    }
}
