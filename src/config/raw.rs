//! The raw shape of `proxy.toml`, exactly as an operator writes it.
//!
//! Every section and key is optional (each has a default) and unknown keys are refused, so a
//! typo such as `listne` is an error rather than a silently ignored setting. Nothing here is
//! validated beyond its TOML type; `super::validate` turns this into [`super::Config`].
//! `check-config` serializes the same shape (render.rs), so what it prints is a file this
//! module reads back.

use serde::{Deserialize, Serialize};

use super::duration::HumanDuration;
use super::size::HumanSize;

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub server: RawServer,
    pub catalog: RawCatalog,
    pub tenants: RawTenants,
    pub auth: RawAuth,
    pub admin: RawAdmin,
    pub log: RawLog,
    pub cache: RawCache,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub listen: String,
    pub max_body_bytes: u64,
    pub header_read_timeout: HumanDuration,
    pub keep_alive_timeout: HumanDuration,
    pub request_timeout: HumanDuration,
    pub shutdown_grace: HumanDuration,
    pub drain_delay: HumanDuration,
    pub static_dir: String,
    pub max_connections: u64,
    pub max_in_flight: u64,
    pub worker_threads: u64,
    pub max_header_bytes: u64,
    pub max_headers: u64,
    pub cors_origins: Vec<String>,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 65_536,
            header_read_timeout: HumanDuration::secs(5),
            keep_alive_timeout: HumanDuration::secs(75),
            request_timeout: HumanDuration::secs(15),
            shutdown_grace: HumanDuration::secs(20),
            drain_delay: HumanDuration::secs(0),
            static_dir: String::new(),
            max_connections: 10_000,
            max_in_flight: 1_024,
            worker_threads: 0,
            max_header_bytes: 16_384,
            max_headers: 64,
            cors_origins: vec!["*".into()],
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCatalog {
    pub url: String,
    pub refresh_interval: HumanDuration,
    pub notifications: bool,
}

impl Default for RawCatalog {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@127.0.0.1:5432/catalog".into(),
            refresh_interval: HumanDuration::secs(30),
            notifications: true,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTenants {
    pub url: String,
    pub pool_max_size: u64,
    pub pool_min_idle: u64,
    pub pipeline_depth: u64,
    pub acquire_timeout: HumanDuration,
    pub idle_timeout: HumanDuration,
    pub connect_timeout: HumanDuration,
    pub statement_timeout: HumanDuration,
    pub max_total_connections: u64,
    pub auto_provision: bool,
    pub provision_concurrency: u64,
}

impl Default for RawTenants {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@127.0.0.1:5432".into(),
            pool_max_size: 8,
            pool_min_idle: 0,
            pipeline_depth: 16,
            acquire_timeout: HumanDuration::secs(2),
            idle_timeout: HumanDuration::secs(300),
            connect_timeout: HumanDuration::secs(2),
            statement_timeout: HumanDuration::secs(5),
            max_total_connections: 80,
            auto_provision: true,
            provision_concurrency: 4,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuth {
    pub issuer: String,
    pub audience: String,
    pub algorithms: Vec<String>,
    pub jwks_url: String,
    pub jwks_file: String,
    pub jwks_ca_file: String,
    pub jwks_refresh_interval: HumanDuration,
    pub jwks_refetch_cooldown: HumanDuration,
    pub hs256_secret: String,
    pub tenant_claim: String,
    pub leeway: HumanDuration,
    pub token_cache_capacity: u64,
}

impl Default for RawAuth {
    fn default() -> Self {
        Self {
            issuer: "https://school-lunch.example/".into(),
            audience: "https://school-lunch/api".into(),
            algorithms: vec!["RS256".into()],
            jwks_url: String::new(),
            jwks_file: String::new(),
            jwks_ca_file: String::new(),
            jwks_refresh_interval: HumanDuration::secs(600),
            jwks_refetch_cooldown: HumanDuration::secs(20),
            hs256_secret: String::new(),
            tenant_claim: "https://school-lunch/school_database".into(),
            leeway: HumanDuration::secs(30),
            token_cache_capacity: 10_000,
        }
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    pub listen: String,
    pub token: String,
    pub metrics_top_schools: Option<u64>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    pub format: String,
    pub level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: "auto".into(),
            level: "info".into(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCache {
    pub enabled: bool,
    pub max_bytes: HumanSize,
    pub max_age: HumanDuration,
}

impl Default for RawCache {
    fn default() -> Self {
        Self {
            enabled: true,
            max_bytes: HumanSize(64 << 20),
            max_age: HumanDuration::secs(300),
        }
    }
}
