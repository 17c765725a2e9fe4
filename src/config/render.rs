//! The validated [`Config`] written back as `proxy.toml` text, for `check-config`.
//!
//! The text is the serialization of [`RawConfig`], the very shape the loader reads, so it
//! is always a valid configuration file. Secrets show as `<redacted>` (a password inside a
//! URL too), never their value.

use std::path::Path;

use jsonwebtoken::Algorithm;

use super::raw::{
    RawAdmin, RawAuth, RawCache, RawCatalog, RawConfig, RawLog, RawServer, RawTenants,
};
use super::{Config, HumanDuration, HumanSize, LogFormat, Secret, KNOWN_ALGORITHMS};
use crate::pg;

const REDACTED: &str = "<redacted>";

impl Config {
    /// The effective configuration as TOML, secrets redacted (for `check-config`).
    pub fn render_effective(&self) -> String {
        let body = toml::to_string(&self.as_raw())
            // Only types TOML cannot express fail to serialize, and RawConfig has none.
            .unwrap_or_else(|err| format!("# cannot be rendered: {err}\n"));
        format!(
            "# effective configuration from {}\n{body}",
            self.source.display()
        )
    }

    /// This configuration as the file that would produce it, secrets redacted.
    fn as_raw(&self) -> RawConfig {
        let s = &self.server;
        let t = &self.tenants;
        let a = &self.auth;
        RawConfig {
            server: RawServer {
                listen: s.listen.to_string(),
                max_body_bytes: s.max_body_bytes,
                header_read_timeout: HumanDuration(s.header_read_timeout),
                keep_alive_timeout: HumanDuration(s.keep_alive_timeout),
                request_timeout: HumanDuration(s.request_timeout),
                shutdown_grace: HumanDuration(s.shutdown_grace),
                drain_delay: HumanDuration(s.drain_delay),
                static_dir: path(s.static_dir.as_deref()),
                max_connections: s.max_connections as u64,
                max_in_flight: s.max_in_flight as u64,
                worker_threads: s.worker_threads as u64,
                max_header_bytes: s.max_header_bytes as u64,
                max_headers: s.max_headers as u64,
                cors_origins: s.cors_origins.clone().unwrap_or_else(|| vec!["*".into()]),
            },
            catalog: RawCatalog {
                url: pg::describe(&self.catalog.target),
                refresh_interval: HumanDuration(self.catalog.refresh_interval),
                notifications: self.catalog.notifications,
            },
            tenants: RawTenants {
                url: pg::describe(&t.target),
                pool_max_size: u64::from(t.pool_max_size),
                pool_min_idle: u64::from(t.pool_min_idle),
                pipeline_depth: u64::from(t.pipeline_depth),
                acquire_timeout: HumanDuration(t.acquire_timeout),
                idle_timeout: HumanDuration(t.idle_timeout),
                connect_timeout: HumanDuration(t.connect_timeout),
                statement_timeout: HumanDuration(t.statement_timeout),
                max_total_connections: u64::from(t.max_total_connections),
                auto_provision: t.auto_provision,
                provision_concurrency: t.provision_concurrency as u64,
            },
            auth: RawAuth {
                issuer: a.issuer.clone(),
                audience: a.audience.clone(),
                algorithms: a.algorithms.iter().map(|x| algorithm_name(*x)).collect(),
                jwks_url: a.jwks_url.clone().unwrap_or_default(),
                jwks_file: path(a.jwks_file.as_deref()),
                jwks_ca_file: path(a.jwks_ca_file.as_deref()),
                jwks_refresh_interval: HumanDuration(a.jwks_refresh_interval),
                jwks_refetch_cooldown: HumanDuration(a.jwks_refetch_cooldown),
                hs256_secret: redacted(&a.hs256_secret),
                tenant_claim: a.tenant_claim.clone(),
                leeway: HumanDuration(a.leeway),
                token_cache_capacity: a.token_cache_capacity as u64,
            },
            admin: RawAdmin {
                listen: self.admin.listen.map(|x| x.to_string()).unwrap_or_default(),
                token: redacted(&self.admin.token),
                metrics_top_schools: Some(self.admin.metrics_top_schools as u64),
            },
            log: RawLog {
                format: match self.log.format {
                    LogFormat::Auto => "auto",
                    LogFormat::Text => "text",
                    LogFormat::Json => "json",
                }
                .into(),
                level: self.log.level.clone(),
            },
            cache: RawCache {
                enabled: self.cache.enabled,
                max_bytes: HumanSize(self.cache.max_bytes),
                max_age: HumanDuration(self.cache.max_age),
            },
        }
    }
}

fn path(path: Option<&Path>) -> String {
    path.map(|p| p.display().to_string()).unwrap_or_default()
}

fn redacted(secret: &Option<Secret>) -> String {
    match secret {
        Some(_) => REDACTED.into(),
        None => String::new(),
    }
}

fn algorithm_name(algorithm: Algorithm) -> String {
    KNOWN_ALGORITHMS
        .iter()
        .find(|(_, a)| *a == algorithm)
        .map_or("?", |(n, _)| *n)
        .into()
}
