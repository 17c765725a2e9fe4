//! [`RawConfig`] into [`Config`]: every check of a value, one function per section, and
//! the warnings about values that are allowed but probably not what the operator meant.
//!
//! Errors name the file and the key (`server.listen`) and say what is wrong; the TOML
//! parser has already reported what it can place on a line (`super::parse`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::raw::{
    RawAdmin, RawAuth, RawCache, RawCatalog, RawConfig, RawLog, RawServer, RawTenants,
};
use super::{
    is_hmac, AdminConfig, AuthConfig, CacheConfig, CatalogConfig, Config, ConfigError,
    HumanDuration, LogConfig, LogFormat, Secret, ServerConfig, TenantsConfig, KNOWN_ALGORITHMS,
};
use crate::domain::names;
use crate::pg;

/// The least time opening a catalog connection may take, whatever `[tenants]
/// connect_timeout` says: opening the catalog can create its database, and CREATE
/// DATABASE can queue behind a checkpoint, so it gets more than a request's connect.
const CATALOG_CONNECT_FLOOR: Duration = Duration::from_secs(5);

/// Builds the errors of one file: every check names its key through this.
struct Keys<'a> {
    file: &'a Path,
}

impl Keys<'_> {
    fn bad(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            line: None,
            key: Some(key.to_string()),
            message: message.into(),
        }
    }

    fn positive(&self, key: &str, value: u64) -> Result<u64, ConfigError> {
        if value == 0 {
            Err(self.bad(key, "must be greater than 0"))
        } else {
            Ok(value)
        }
    }

    fn positive_u32(&self, key: &str, value: u64) -> Result<u32, ConfigError> {
        let value = self.positive(key, value)?;
        u32::try_from(value).map_err(|_| self.bad(key, format!("{value} is too large")))
    }

    fn nonzero(&self, key: &str, value: HumanDuration) -> Result<Duration, ConfigError> {
        if value.0.is_zero() {
            Err(self.bad(key, "must be longer than 0s"))
        } else {
            Ok(value.0)
        }
    }
}

/// Validates every section in file order; the first problem found is the error.
pub(super) fn validate(
    raw: RawConfig,
    file: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let keys = Keys { file };
    let server = server(raw.server, &keys)?;
    let catalog = catalog(raw.catalog, raw.tenants.connect_timeout.0, &keys, env)?;
    let tenants = tenants(raw.tenants, &keys, env)?;
    let auth = auth(raw.auth, &keys)?;
    let admin = admin(raw.admin, &server, &keys)?;
    let log = log(raw.log, &keys)?;
    let cache = cache(raw.cache, &keys)?;
    let mut config = Config {
        source: file.to_path_buf(),
        server,
        catalog,
        tenants,
        auth,
        admin,
        log,
        cache,
        warnings: Vec::new(),
    };
    config.warnings = config.collect_warnings();
    Ok(config)
}

fn server(s: RawServer, keys: &Keys) -> Result<ServerConfig, ConfigError> {
    let listen = parse_addr(&s.listen).map_err(|m| keys.bad("server.listen", m))?;
    let cors_origins = if s.cors_origins.iter().any(|o| o == "*") {
        None
    } else {
        for origin in &s.cors_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://"))
                || origin.ends_with('/')
            {
                return Err(keys.bad(
                    "server.cors_origins",
                    format!("{origin:?} is not an origin such as \"https://app.example\" (scheme and host, no path)"),
                ));
            }
        }
        Some(s.cors_origins)
    };
    let server = ServerConfig {
        listen,
        max_body_bytes: keys.positive("server.max_body_bytes", s.max_body_bytes)?,
        header_read_timeout: keys.nonzero("server.header_read_timeout", s.header_read_timeout)?,
        keep_alive_timeout: keys.nonzero("server.keep_alive_timeout", s.keep_alive_timeout)?,
        request_timeout: keys.nonzero("server.request_timeout", s.request_timeout)?,
        shutdown_grace: s.shutdown_grace.0,
        drain_delay: s.drain_delay.0,
        static_dir: (!s.static_dir.is_empty()).then(|| PathBuf::from(&s.static_dir)),
        max_connections: keys.positive("server.max_connections", s.max_connections)? as usize,
        max_in_flight: keys.positive("server.max_in_flight", s.max_in_flight)? as usize,
        worker_threads: match s.worker_threads {
            n if n > 1024 => {
                return Err(keys.bad(
                    "server.worker_threads",
                    format!("{n} is too many (at most 1024; 0 means one per core)"),
                ))
            }
            n => n as usize,
        },
        max_header_bytes: keys.positive("server.max_header_bytes", s.max_header_bytes)? as usize,
        max_headers: keys.positive("server.max_headers", s.max_headers)? as usize,
        cors_origins,
    };
    if server.max_header_bytes < 8192 {
        return Err(keys.bad(
            "server.max_header_bytes",
            "must be at least 8192 (an Auth0 token alone can take 2 KiB)",
        ));
    }
    Ok(server)
}

/// `tenants_connect_timeout` is `[tenants] connect_timeout` as written: the catalog's
/// connect timeout follows it (see [`CATALOG_CONNECT_FLOOR`]).
fn catalog(
    c: RawCatalog,
    tenants_connect_timeout: Duration,
    keys: &Keys,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<CatalogConfig, ConfigError> {
    let mut target = pg::parse_target(&c.url, env).map_err(|m| keys.bad("catalog.url", m))?;
    let database = target.get_dbname().unwrap_or("catalog").to_string();
    names::validate_database_name(&database)
        .map_err(|e| keys.bad("catalog.url", format!("catalog {e}")))?;
    target.dbname(&database);
    Ok(CatalogConfig {
        target,
        connect_timeout: tenants_connect_timeout.max(CATALOG_CONNECT_FLOOR),
        refresh_interval: keys.nonzero("catalog.refresh_interval", c.refresh_interval)?,
        notifications: c.notifications,
    })
}

fn tenants(
    t: RawTenants,
    keys: &Keys,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<TenantsConfig, ConfigError> {
    let target = pg::parse_target(&t.url, env).map_err(|m| keys.bad("tenants.url", m))?;
    let pool_max_size = keys.positive_u32("tenants.pool_max_size", t.pool_max_size)?;
    let max_total_connections =
        keys.positive_u32("tenants.max_total_connections", t.max_total_connections)?;
    let pool_min_idle = u32::try_from(t.pool_min_idle)
        .ok()
        .filter(|n| *n <= pool_max_size)
        .ok_or_else(|| {
            keys.bad(
                "tenants.pool_min_idle",
                format!(
                    "{} is more than tenants.pool_max_size ({pool_max_size})",
                    t.pool_min_idle
                ),
            )
        })?;
    let pipeline_depth = keys.positive_u32("tenants.pipeline_depth", t.pipeline_depth)?;
    if pipeline_depth > 1024 {
        return Err(keys.bad(
            "tenants.pipeline_depth",
            format!("{pipeline_depth} is more than 1024"),
        ));
    }
    Ok(TenantsConfig {
        target,
        pool_max_size,
        pool_min_idle,
        pipeline_depth,
        acquire_timeout: keys.nonzero("tenants.acquire_timeout", t.acquire_timeout)?,
        idle_timeout: keys.nonzero("tenants.idle_timeout", t.idle_timeout)?,
        connect_timeout: keys.nonzero("tenants.connect_timeout", t.connect_timeout)?,
        statement_timeout: keys.nonzero("tenants.statement_timeout", t.statement_timeout)?,
        max_total_connections,
        auto_provision: t.auto_provision,
        provision_concurrency: keys
            .positive("tenants.provision_concurrency", t.provision_concurrency)?
            as usize,
    })
}

fn auth(a: RawAuth, keys: &Keys) -> Result<AuthConfig, ConfigError> {
    for (key, value) in [
        ("auth.issuer", &a.issuer),
        ("auth.audience", &a.audience),
        ("auth.tenant_claim", &a.tenant_claim),
    ] {
        if value.trim().is_empty() {
            return Err(keys.bad(key, "must not be empty"));
        }
    }
    let algorithms = algorithms(&a.algorithms, keys)?;
    let jwks_url = (!a.jwks_url.is_empty()).then(|| a.jwks_url.clone());
    if let Some(url) = &jwks_url {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(keys.bad(
                "auth.jwks_url",
                format!("{url:?} must start with https:// or http://"),
            ));
        }
        if url.parse::<http::Uri>().is_err() {
            return Err(keys.bad("auth.jwks_url", format!("{url:?} is not a valid URL")));
        }
    }
    let jwks_file = (!a.jwks_file.is_empty()).then(|| PathBuf::from(&a.jwks_file));
    if jwks_url.is_some() && jwks_file.is_some() {
        return Err(keys.bad(
            "auth.jwks_file",
            "set either auth.jwks_url or auth.jwks_file, not both",
        ));
    }
    let jwks_ca_file = (!a.jwks_ca_file.is_empty()).then(|| PathBuf::from(&a.jwks_ca_file));
    let jwks_ca_certs = match &jwks_ca_file {
        Some(path) => ca_certificates(path).map_err(|m| keys.bad("auth.jwks_ca_file", m))?,
        None => Vec::new(),
    };
    let hs256_secret = (!a.hs256_secret.is_empty()).then(|| Secret::new(&a.hs256_secret));
    if algorithms.iter().any(|alg| is_hmac(*alg)) && hs256_secret.is_none() {
        return Err(keys.bad(
            "auth.hs256_secret",
            "required when auth.algorithms lists an HS algorithm",
        ));
    }
    if hs256_secret.as_ref().is_some_and(|s| s.expose().len() < 32) {
        return Err(keys.bad("auth.hs256_secret", "must be at least 32 bytes long"));
    }
    Ok(AuthConfig {
        issuer: a.issuer,
        audience: a.audience,
        algorithms,
        jwks_url,
        jwks_file,
        jwks_ca_file,
        jwks_ca_certs,
        jwks_refresh_interval: keys
            .nonzero("auth.jwks_refresh_interval", a.jwks_refresh_interval)?,
        jwks_refetch_cooldown: a.jwks_refetch_cooldown.0,
        hs256_secret,
        tenant_claim: a.tenant_claim,
        leeway: a.leeway.0,
        token_cache_capacity: a.token_cache_capacity as usize,
    })
}

/// The certificates of a PEM bundle, each a usable trust anchor; at least one.
fn ca_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|err| format!("cannot read {shown}: {err}"))?;
    let mut certificates = Vec::new();
    for (position, item) in CertificateDer::pem_slice_iter(&bytes).enumerate() {
        let certificate =
            item.map_err(|err| format!("{shown}: certificate {}: {err}", position + 1))?;
        let mut check = rustls::RootCertStore::empty();
        check.add(certificate.clone()).map_err(|err| {
            format!(
                "{shown}: certificate {} is not a usable CA certificate: {err}",
                position + 1
            )
        })?;
        certificates.push(certificate);
    }
    if certificates.is_empty() {
        return Err(format!(
            "{shown} holds no PEM certificate (BEGIN CERTIFICATE)"
        ));
    }
    Ok(certificates)
}

/// The named algorithms, each once, in the order written.
fn algorithms(names: &[String], keys: &Keys) -> Result<Vec<Algorithm>, ConfigError> {
    if names.is_empty() {
        return Err(keys.bad("auth.algorithms", "must list at least one algorithm"));
    }
    let mut algorithms = Vec::new();
    for name in names {
        let Some((_, algorithm)) = KNOWN_ALGORITHMS.iter().find(|(n, _)| n == name) else {
            let known: Vec<&str> = KNOWN_ALGORITHMS.iter().map(|(n, _)| *n).collect();
            return Err(keys.bad(
                "auth.algorithms",
                format!("unknown algorithm {name:?} (known: {})", known.join(", ")),
            ));
        };
        if !algorithms.contains(algorithm) {
            algorithms.push(*algorithm);
        }
    }
    Ok(algorithms)
}

fn admin(ad: RawAdmin, server: &ServerConfig, keys: &Keys) -> Result<AdminConfig, ConfigError> {
    let admin = AdminConfig {
        listen: if ad.listen.is_empty() {
            None
        } else {
            Some(parse_addr(&ad.listen).map_err(|m| keys.bad("admin.listen", m))?)
        },
        token: (!ad.token.is_empty()).then(|| Secret::new(ad.token)),
        metrics_top_schools: ad.metrics_top_schools.unwrap_or(20) as usize,
    };
    if admin.listen == Some(server.listen) && server.listen.port() != 0 {
        return Err(keys.bad("admin.listen", "must differ from server.listen"));
    }
    Ok(admin)
}

fn log(l: RawLog, keys: &Keys) -> Result<LogConfig, ConfigError> {
    let format = match l.format.as_str() {
        "auto" => LogFormat::Auto,
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            return Err(keys.bad(
                "log.format",
                format!("{other:?} is not one of \"auto\", \"text\", \"json\""),
            ))
        }
    };
    // Directives are ASCII (targets are Rust paths); tracing-subscriber's parser panics
    // on some non-ASCII text (a byte index inside a character), so it never sees any.
    if !l.level.is_ascii() || l.level.parse::<tracing_subscriber::EnvFilter>().is_err() {
        return Err(keys.bad(
            "log.level",
            format!(
                "{:?} is not a log filter such as \"info\" or \"tenant_edge=debug\"",
                l.level
            ),
        ));
    }
    Ok(LogConfig {
        format,
        level: l.level,
    })
}

fn cache(c: RawCache, keys: &Keys) -> Result<CacheConfig, ConfigError> {
    Ok(CacheConfig {
        enabled: c.enabled,
        max_bytes: keys.positive("cache.max_bytes", c.max_bytes.0)?,
        max_age: keys.nonzero("cache.max_age", c.max_age)?,
    })
}

fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        format!("{text:?} is not an address such as \"127.0.0.1:8080\" or \"[::]:8080\"")
    })
}

impl Config {
    /// What is allowed but probably not what the operator meant, computed from the values
    /// alone: a command that changes the configuration after loading it (`serve --demo`)
    /// asks again.
    pub fn collect_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let t = &self.tenants;
        if t.pool_max_size > t.max_total_connections {
            warnings.push(format!(
                "tenants.pool_max_size ({}) is above tenants.max_total_connections ({}): one school can never use more than the budget",
                t.pool_max_size, t.max_total_connections
            ));
        }
        let a = &self.auth;
        let wants_hmac = a.algorithms.iter().any(|alg| is_hmac(*alg));
        let wants_keys = a.algorithms.iter().any(|alg| !is_hmac(*alg));
        if a.hs256_secret.is_some() && !wants_hmac {
            warnings.push(
                "auth.hs256_secret is set but auth.algorithms lists no HS algorithm: tokens signed with it are rejected (add \"HS256\" to use it)".into(),
            );
        }
        if wants_keys && a.jwks_url.is_none() && a.jwks_file.is_none() {
            warnings.push(
                "auth.algorithms lists public-key algorithms but neither auth.jwks_url nor auth.jwks_file is set: every such token will be rejected".into(),
            );
        }
        if a.jwks_ca_file.is_some()
            && !a
                .jwks_url
                .as_ref()
                .is_some_and(|u| u.starts_with("https://"))
        {
            warnings.push(
                "auth.jwks_ca_file is set but auth.jwks_url is not an https:// URL: the file is not used".into(),
            );
        }
        if self.admin.listen.is_some() && self.admin.token.is_none() {
            warnings.push(
                "admin.listen is set without admin.token: /metrics is served, the tenant admin API refuses every call".into(),
            );
        }
        warnings
    }
}
