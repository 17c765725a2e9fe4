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

/// Every key of every section (raw.rs), so most generated keys are known ones.
const KEYS: &[&str] = &[
    "listen",
    "max_body_bytes",
    "header_read_timeout",
    "keep_alive_timeout",
    "request_timeout",
    "shutdown_grace",
    "drain_delay",
    "static_dir",
    "max_connections",
    "max_in_flight",
    "worker_threads",
    "max_header_bytes",
    "max_headers",
    "cors_origins",
    "url",
    "refresh_interval",
    "notifications",
    "pool_max_size",
    "pool_min_idle",
    "pipeline_depth",
    "acquire_timeout",
    "idle_timeout",
    "connect_timeout",
    "statement_timeout",
    "max_total_connections",
    "auto_provision",
    "provision_concurrency",
    "issuer",
    "audience",
    "algorithms",
    "jwks_url",
    "jwks_file",
    "jwks_refresh_interval",
    "jwks_refetch_cooldown",
    "hs256_secret",
    "tenant_claim",
    "leeway",
    "token_cache_capacity",
    "token",
    "metrics_top_schools",
    "format",
    "level",
];

/// Values of every TOML type, weighted toward the edges of what the keys accept.
fn value() -> impl Strategy<Value = Value> {
    let text = prop_oneof![
        prop::sample::select(vec![
            "",
            "0s",
            "0ms",
            "5s",
            "250ms",
            "10m",
            "1h",
            "5x",
            "s",
            "18446744073709551615ms",
            "99999999999999h",
            "127.0.0.1:0",
            "127.0.0.1:8080",
            "[::1]:0",
            "localhost:80",
            "postgres://postgres@127.0.0.1:5432/catalog",
            "postgres://",
            "https://idp.example/jwks",
            "http://",
            "RS256",
            "HS256",
            "none",
            "json",
            "text",
            "auto",
            "debug",
            "trace,hyper=off",
            "*",
            "https://app.example",
            "https://app.example/",
            "0123456789abcdef0123456789abcdef",
        ])
        .prop_map(str::to_string),
        any::<String>(),
    ];
    let leaf = prop_oneof![
        text.prop_map(Value::String),
        prop::sample::select(vec![
            0i64,
            1,
            -1,
            8191,
            8192,
            1025,
            i64::MAX,
            i64::MIN,
            4_294_967_296
        ])
        .prop_map(Value::Integer),
        any::<i64>().prop_map(Value::Integer),
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
}

fn key(known: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(known).prop_map(str::to_string),
        1 => "[a-z_]{1,10}",
    ]
}

/// A document of sections (mostly known ones) whose keys (mostly known ones) hold values
/// of any type; sometimes a section is itself a plain value.
fn document() -> impl Strategy<Value = Table> {
    let section = prop_oneof![
        6 => prop::collection::vec((key(KEYS), value()), 0..5)
            .prop_map(|pairs| Value::Table(pairs.into_iter().collect())),
        1 => value(),
    ];
    prop::collection::vec((key(SECTIONS), section), 0..6)
        .prop_map(|sections| sections.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_toml_document_is_a_config_or_names_a_key(document in document()) {
        let Ok(text) = toml::to_string(&document) else {
            // A shape TOML cannot write (none expected, but not this test's subject).
            return Ok(());
        };
        if let Err(error) = from_str(&text, Path::new("proxy.toml"), &no_env) {
            let key = error.key.as_deref().unwrap_or_default();
            prop_assert!(!key.is_empty(), "no key in {error} for:\n{text}");
            prop_assert!(error.to_string().starts_with("proxy.toml"), "{error}");
        }
    }

    /// Any text, mostly not TOML: Ok or an error placed by key or line.
    #[test]
    fn any_text_is_a_config_or_a_placed_error(text in "(\\[[a-z]{1,8}\\]\n)?([a-z_]{1,12} ?= ?\\PC{0,16}\n){0,4}|\\PC{0,64}") {
        if let Err(error) = from_str(&text, Path::new("proxy.toml"), &no_env) {
            prop_assert!(error.key.is_some() || error.line.is_some(), "{error} for:\n{text}");
        }
    }
}
