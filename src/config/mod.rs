//! Configuration: `proxy.toml` read into [`raw::RawConfig`], then validated into the
//! [`Config`] the program uses.
//!
//! Every error names the file, the key and the problem (and the line when the parser knows
//! it). Secrets are wrapped in [`Secret`], whose `Debug` never shows them. Nothing here
//! touches the network or a database.

mod duration;
mod raw;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use tokio_postgres::Config as PgConfig;

pub use duration::{format_duration, parse_duration, HumanDuration};
use raw::RawConfig;

use crate::domain::names;
use crate::pg;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from (for messages and SIGHUP re-reads).
    pub source: PathBuf,
    pub server: ServerConfig,
    pub catalog: CatalogConfig,
    pub tenants: TenantsConfig,
    pub auth: AuthConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
    /// Things that are allowed but probably not what the operator meant.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub max_body_bytes: u64,
    pub header_read_timeout: Duration,
    /// How long an HTTP/1 connection may sit idle between requests. Longer than a load
    /// balancer's idle timeout, so that the balancer, not we, closes idle connections:
    /// otherwise it may send a request on a connection we are closing.
    pub keep_alive_timeout: Duration,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
    /// On SIGTERM, how long /readyz answers 503 while the listener still accepts, so a
    /// load balancer's health check notices before connections are refused.
    pub drain_delay: Duration,
    pub static_dir: Option<PathBuf>,
    /// Open client connections beyond this are closed at once.
    pub max_connections: usize,
    /// Requests being handled at once beyond this get a fast 503.
    pub max_in_flight: usize,
    /// Runtime worker threads; 0: one per CPU core.
    pub worker_threads: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    /// `None` means any origin (`*`).
    pub cors_origins: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct CatalogConfig {
    pub target: PgConfig,
    pub refresh_interval: Duration,
    /// LISTEN for the catalog trigger's notifications.
    pub notifications: bool,
}

impl CatalogConfig {
    pub fn database(&self) -> &str {
        self.target.get_dbname().unwrap_or("catalog")
    }
}

#[derive(Debug, Clone)]
pub struct TenantsConfig {
    /// Server and credentials of the school databases; its database name (default
    /// `postgres`) is the maintenance database used for CREATE / DROP DATABASE.
    pub target: PgConfig,
    pub pool_max_size: u32,
    pub pool_min_idle: u32,
    /// Requests one connection carries at once, pipelined (1: a connection per request).
    pub pipeline_depth: u32,
    pub acquire_timeout: Duration,
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
    pub statement_timeout: Duration,
    pub max_total_connections: u32,
    pub auto_provision: bool,
    pub provision_concurrency: usize,
}

impl TenantsConfig {
    pub fn maintenance_database(&self) -> &str {
        self.target.get_dbname().unwrap_or("postgres")
    }
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub issuer: String,
    pub audience: String,
    pub algorithms: Vec<Algorithm>,
    pub jwks_url: Option<String>,
    pub jwks_file: Option<PathBuf>,
    pub jwks_refresh_interval: Duration,
    pub jwks_refetch_cooldown: Duration,
    pub hs256_secret: Option<Secret>,
    pub tenant_claim: String,
    pub leeway: Duration,
    pub token_cache_capacity: usize,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: Option<SocketAddr>,
    pub token: Option<Secret>,
    /// Schools with their own label in per-school metrics; the rest are `other`.
    pub metrics_top_schools: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise.
    Auto,
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

/// A secret string: compared and used, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A configuration problem, naming where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Where the configuration comes from: `--config`, then `TENANT_EDGE_CONFIG`, then
/// `./proxy.toml`. `explicit` is false only for the last.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    pub path: PathBuf,
    pub explicit: bool,
}

impl ConfigSource {
    pub fn resolve(flag: Option<PathBuf>, env: &dyn Fn(&str) -> Option<String>) -> Self {
        match flag.or_else(|| {
            env("TENANT_EDGE_CONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        }) {
            Some(path) => Self {
                path,
                explicit: true,
            },
            None => Self {
                path: PathBuf::from("proxy.toml"),
                explicit: false,
            },
        }
    }
}

/// Reads and validates the configuration. A missing `./proxy.toml` that nobody named means
/// "all defaults"; a named file that is missing is an error.
pub fn load(
    source: &ConfigSource,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let text = match std::fs::read_to_string(&source.path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && !source.explicit => String::new(),
        Err(err) => {
            return Err(ConfigError {
                file: source.path.clone(),
                line: None,
                key: None,
                message: format!("cannot read the configuration file: {err}"),
            })
        }
    };
    from_str(&text, &source.path, env)
}

/// Parses and validates configuration text; `file` is only used in messages.
pub fn from_str(
    text: &str,
    file: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let raw = parse(text, file)?;
    validate(raw, file, env)
}

fn parse(text: &str, file: &Path) -> Result<RawConfig, ConfigError> {
    let error = |line, key, message| ConfigError {
        file: file.to_path_buf(),
        line,
        key,
        message,
    };
    let deserializer = toml::Deserializer::parse(text)
        .map_err(|err| error(line_of(text, err.span()), None, err.message().to_string()))?;
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let key = (path != ".").then_some(path);
        error(
            line_of(text, inner.span()),
            key,
            inner.message().to_string(),
        )
    })
}

fn line_of(text: &str, span: Option<std::ops::Range<usize>>) -> Option<usize> {
    let start = span?.start.min(text.len());
    Some(text[..start].bytes().filter(|b| *b == b'\n').count() + 1)
}

const KNOWN_ALGORITHMS: &[(&str, Algorithm)] = &[
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("EdDSA", Algorithm::EdDSA),
    ("HS256", Algorithm::HS256),
    ("HS384", Algorithm::HS384),
    ("HS512", Algorithm::HS512),
];

pub fn is_hmac(algorithm: Algorithm) -> bool {
    matches!(
        algorithm,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    )
}

fn validate(
    raw: RawConfig,
    file: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let bad = |key: &str, message: String| ConfigError {
        file: file.to_path_buf(),
        line: None,
        key: Some(key.to_string()),
        message,
    };
    let mut warnings = Vec::new();

    let s = raw.server;
    let listen = parse_addr(&s.listen).map_err(|m| bad("server.listen", m))?;
    let positive = |key: &str, value: u64| -> Result<u64, ConfigError> {
        if value == 0 {
            Err(bad(key, "must be greater than 0".into()))
        } else {
            Ok(value)
        }
    };
    let nonzero = |key: &str, value: HumanDuration| -> Result<Duration, ConfigError> {
        if value.0.is_zero() {
            Err(bad(key, "must be longer than 0s".into()))
        } else {
            Ok(value.0)
        }
    };
    let cors_origins = if s.cors_origins.iter().any(|o| o == "*") {
        None
    } else {
        for origin in &s.cors_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://"))
                || origin.ends_with('/')
            {
                return Err(bad(
                    "server.cors_origins",
                    format!("{origin:?} is not an origin such as \"https://app.example\" (scheme and host, no path)"),
                ));
            }
        }
        Some(s.cors_origins)
    };
    let server = ServerConfig {
        listen,
        max_body_bytes: positive("server.max_body_bytes", s.max_body_bytes)?,
        header_read_timeout: nonzero("server.header_read_timeout", s.header_read_timeout)?,
        keep_alive_timeout: nonzero("server.keep_alive_timeout", s.keep_alive_timeout)?,
        request_timeout: nonzero("server.request_timeout", s.request_timeout)?,
        shutdown_grace: s.shutdown_grace.0,
        drain_delay: s.drain_delay.0,
        static_dir: (!s.static_dir.is_empty()).then(|| PathBuf::from(&s.static_dir)),
        max_connections: positive("server.max_connections", s.max_connections)? as usize,
        max_in_flight: positive("server.max_in_flight", s.max_in_flight)? as usize,
        worker_threads: match s.worker_threads {
            n if n > 1024 => {
                return Err(bad(
                    "server.worker_threads",
                    format!("{n} is too many (at most 1024; 0 means one per core)"),
                ))
            }
            n => n as usize,
        },
        max_header_bytes: positive("server.max_header_bytes", s.max_header_bytes)? as usize,
        max_headers: positive("server.max_headers", s.max_headers)? as usize,
        cors_origins,
    };
    if server.max_header_bytes < 8192 {
        return Err(bad(
            "server.max_header_bytes",
            "must be at least 8192 (an Auth0 token alone can take 2 KiB)".into(),
        ));
    }

    let c = raw.catalog;
    let catalog_target = pg::parse_target(&c.url, env).map_err(|m| bad("catalog.url", m))?;
    let catalog_db = catalog_target.get_dbname().unwrap_or("catalog").to_string();
    names::validate_database_name(&catalog_db)
        .map_err(|e| bad("catalog.url", format!("catalog {e}")))?;
    let mut catalog_target = catalog_target;
    catalog_target.dbname(&catalog_db);
    let catalog = CatalogConfig {
        target: catalog_target,
        refresh_interval: nonzero("catalog.refresh_interval", c.refresh_interval)?,
        notifications: c.notifications,
    };

    let t = raw.tenants;
    let tenants_target = pg::parse_target(&t.url, env).map_err(|m| bad("tenants.url", m))?;
    let u32_key = |key: &str, value: u64| -> Result<u32, ConfigError> {
        let value = positive(key, value)?;
        u32::try_from(value).map_err(|_| bad(key, format!("{value} is too large")))
    };
    let pool_max_size = u32_key("tenants.pool_max_size", t.pool_max_size)?;
    let max_total_connections = u32_key("tenants.max_total_connections", t.max_total_connections)?;
    let pool_min_idle = u32::try_from(t.pool_min_idle)
        .ok()
        .filter(|n| *n <= pool_max_size)
        .ok_or_else(|| {
            bad(
                "tenants.pool_min_idle",
                format!(
                    "{} is more than tenants.pool_max_size ({pool_max_size})",
                    t.pool_min_idle
                ),
            )
        })?;
    let pipeline_depth = u32_key("tenants.pipeline_depth", t.pipeline_depth)?;
    if pipeline_depth > 1024 {
        return Err(bad(
            "tenants.pipeline_depth",
            format!("{pipeline_depth} is more than 1024"),
        ));
    }
    if pool_max_size > max_total_connections {
        warnings.push(format!(
            "tenants.pool_max_size ({pool_max_size}) is above tenants.max_total_connections ({max_total_connections}): one school can never use more than the budget"
        ));
    }
    let tenants = TenantsConfig {
        target: tenants_target,
        pool_max_size,
        pool_min_idle,
        pipeline_depth,
        acquire_timeout: nonzero("tenants.acquire_timeout", t.acquire_timeout)?,
        idle_timeout: nonzero("tenants.idle_timeout", t.idle_timeout)?,
        connect_timeout: nonzero("tenants.connect_timeout", t.connect_timeout)?,
        statement_timeout: nonzero("tenants.statement_timeout", t.statement_timeout)?,
        max_total_connections,
        auto_provision: t.auto_provision,
        provision_concurrency: positive("tenants.provision_concurrency", t.provision_concurrency)?
            as usize,
    };

    let a = raw.auth;
    if a.issuer.trim().is_empty() {
        return Err(bad("auth.issuer", "must not be empty".into()));
    }
    if a.audience.trim().is_empty() {
        return Err(bad("auth.audience", "must not be empty".into()));
    }
    if a.tenant_claim.trim().is_empty() {
        return Err(bad("auth.tenant_claim", "must not be empty".into()));
    }
    if a.algorithms.is_empty() {
        return Err(bad(
            "auth.algorithms",
            "must list at least one algorithm".into(),
        ));
    }
    let mut algorithms = Vec::new();
    for name in &a.algorithms {
        let Some((_, algorithm)) = KNOWN_ALGORITHMS.iter().find(|(n, _)| n == name) else {
            let known: Vec<&str> = KNOWN_ALGORITHMS.iter().map(|(n, _)| *n).collect();
            return Err(bad(
                "auth.algorithms",
                format!("unknown algorithm {name:?} (known: {})", known.join(", ")),
            ));
        };
        if !algorithms.contains(algorithm) {
            algorithms.push(*algorithm);
        }
    }
    let jwks_url = (!a.jwks_url.is_empty()).then(|| a.jwks_url.clone());
    if let Some(url) = &jwks_url {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(bad(
                "auth.jwks_url",
                format!("{url:?} must start with https:// or http://"),
            ));
        }
        if url.parse::<http::Uri>().is_err() {
            return Err(bad("auth.jwks_url", format!("{url:?} is not a valid URL")));
        }
    }
    let jwks_file = (!a.jwks_file.is_empty()).then(|| PathBuf::from(&a.jwks_file));
    if jwks_url.is_some() && jwks_file.is_some() {
        return Err(bad(
            "auth.jwks_file",
            "set either auth.jwks_url or auth.jwks_file, not both".into(),
        ));
    }
    let hs256_secret = (!a.hs256_secret.is_empty()).then(|| Secret::new(&a.hs256_secret));
    let wants_hmac = algorithms.iter().any(|alg| is_hmac(*alg));
    let wants_keys = algorithms.iter().any(|alg| !is_hmac(*alg));
    if wants_hmac && hs256_secret.is_none() {
        return Err(bad(
            "auth.hs256_secret",
            "required when auth.algorithms lists an HS algorithm".into(),
        ));
    }
    if let Some(secret) = &hs256_secret {
        if secret.expose().len() < 32 {
            return Err(bad(
                "auth.hs256_secret",
                "must be at least 32 bytes long".into(),
            ));
        }
        if !wants_hmac {
            warnings.push(
                "auth.hs256_secret is set but auth.algorithms lists no HS algorithm: tokens signed with it are rejected (add \"HS256\" to use it)".into(),
            );
        }
    }
    if wants_keys && jwks_url.is_none() && jwks_file.is_none() {
        warnings.push(
            "auth.algorithms lists public-key algorithms but neither auth.jwks_url nor auth.jwks_file is set: every such token will be rejected".into(),
        );
    }
    let auth = AuthConfig {
        issuer: a.issuer,
        audience: a.audience,
        algorithms,
        jwks_url,
        jwks_file,
        jwks_refresh_interval: nonzero("auth.jwks_refresh_interval", a.jwks_refresh_interval)?,
        jwks_refetch_cooldown: a.jwks_refetch_cooldown.0,
        hs256_secret,
        tenant_claim: a.tenant_claim,
        leeway: a.leeway.0,
        token_cache_capacity: a.token_cache_capacity as usize,
    };

    let ad = raw.admin;
    let admin = AdminConfig {
        listen: if ad.listen.is_empty() {
            None
        } else {
            Some(parse_addr(&ad.listen).map_err(|m| bad("admin.listen", m))?)
        },
        token: (!ad.token.is_empty()).then(|| Secret::new(ad.token)),
        metrics_top_schools: ad.metrics_top_schools.unwrap_or(20) as usize,
    };
    if admin.listen.is_some() && admin.token.is_none() {
        warnings.push(
            "admin.listen is set without admin.token: /metrics is served, the tenant admin API refuses every call".into(),
        );
    }
    if admin.listen == Some(server.listen) && server.listen.port() != 0 {
        return Err(bad("admin.listen", "must differ from server.listen".into()));
    }

    let format = match raw.log.format.as_str() {
        "auto" => LogFormat::Auto,
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            return Err(bad(
                "log.format",
                format!("{other:?} is not one of \"auto\", \"text\", \"json\""),
            ))
        }
    };
    if raw
        .log
        .level
        .parse::<tracing_subscriber::EnvFilter>()
        .is_err()
    {
        return Err(bad(
            "log.level",
            format!(
                "{:?} is not a log filter such as \"info\" or \"tenant_edge=debug\"",
                raw.log.level
            ),
        ));
    }

    Ok(Config {
        source: file.to_path_buf(),
        server,
        catalog,
        tenants,
        auth,
        admin,
        log: LogConfig {
            format,
            level: raw.log.level,
        },
        warnings,
    })
}

fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        format!("{text:?} is not an address such as \"127.0.0.1:8080\" or \"[::]:8080\"")
    })
}

fn algorithm_name(algorithm: Algorithm) -> &'static str {
    KNOWN_ALGORITHMS
        .iter()
        .find(|(_, a)| *a == algorithm)
        .map(|(n, _)| *n)
        .unwrap_or("?")
}

impl Config {
    /// The effective configuration as TOML, secrets redacted (for `check-config`).
    pub fn render_effective(&self) -> String {
        let d = format_duration;
        let redacted = |s: &Option<Secret>| if s.is_some() { "<redacted>" } else { "" };
        let opt = |s: &Option<String>| s.clone().unwrap_or_default();
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        let s = &self.server;
        let t = &self.tenants;
        let a = &self.auth;
        let origins = match &s.cors_origins {
            None => vec!["*".to_string()],
            Some(list) => list.clone(),
        };
        let algorithms: Vec<&str> = a.algorithms.iter().map(|x| algorithm_name(*x)).collect();
        format!(
            "# effective configuration from {source}\n\
             [server]\nlisten = {listen:?}\nmax_body_bytes = {body}\nheader_read_timeout = {hrt:?}\nkeep_alive_timeout = {kat:?}\nrequest_timeout = {rt:?}\nshutdown_grace = {sg:?}\ndrain_delay = {dd:?}\nstatic_dir = {sd:?}\nmax_connections = {mc}\nmax_in_flight = {mif}\nworker_threads = {wt}\nmax_header_bytes = {mhb}\nmax_headers = {mh}\ncors_origins = {origins:?}\n\n\
             [catalog]\nurl = {curl:?}\nrefresh_interval = {ri:?}\nnotifications = {notif}\n\n\
             [tenants]\nurl = {turl:?}\npool_max_size = {pms}\npool_min_idle = {pmi}\npipeline_depth = {pd}\nacquire_timeout = {at:?}\nidle_timeout = {it:?}\nconnect_timeout = {ct:?}\nstatement_timeout = {st:?}\nmax_total_connections = {mtc}\nauto_provision = {ap}\nprovision_concurrency = {pc}\n\n\
             [auth]\nissuer = {iss:?}\naudience = {aud:?}\nalgorithms = {algorithms:?}\njwks_url = {ju:?}\njwks_file = {jf:?}\njwks_refresh_interval = {jri:?}\njwks_refetch_cooldown = {jrc:?}\nhs256_secret = {hs:?}\ntenant_claim = {tc:?}\nleeway = {lw:?}\ntoken_cache_capacity = {tcc}\n\n\
             [admin]\nlisten = {al:?}\ntoken = {atok:?}\nmetrics_top_schools = {mts}\n\n\
             [log]\nformat = {lf:?}\nlevel = {ll:?}\n",
            source = self.source.display(),
            listen = s.listen.to_string(),
            body = s.max_body_bytes,
            hrt = d(s.header_read_timeout),
            kat = d(s.keep_alive_timeout),
            rt = d(s.request_timeout),
            sg = d(s.shutdown_grace),
            dd = d(s.drain_delay),
            sd = path(&s.static_dir),
            mc = s.max_connections,
            mif = s.max_in_flight,
            wt = s.worker_threads,
            mhb = s.max_header_bytes,
            mh = s.max_headers,
            curl = pg::describe(&self.catalog.target),
            ri = d(self.catalog.refresh_interval),
            notif = self.catalog.notifications,
            turl = pg::describe(&t.target),
            pms = t.pool_max_size,
            pmi = t.pool_min_idle,
            pd = t.pipeline_depth,
            at = d(t.acquire_timeout),
            it = d(t.idle_timeout),
            ct = d(t.connect_timeout),
            st = d(t.statement_timeout),
            mtc = t.max_total_connections,
            ap = t.auto_provision,
            pc = t.provision_concurrency,
            iss = a.issuer,
            aud = a.audience,
            ju = opt(&a.jwks_url),
            jf = path(&a.jwks_file),
            jri = d(a.jwks_refresh_interval),
            jrc = d(a.jwks_refetch_cooldown),
            hs = redacted(&a.hs256_secret),
            tc = a.tenant_claim,
            lw = d(a.leeway),
            tcc = a.token_cache_capacity,
            al = self.admin.listen.map(|x| x.to_string()).unwrap_or_default(),
            atok = redacted(&self.admin.token),
            mts = self.admin.metrics_top_schools,
            lf = match self.log.format {
                LogFormat::Auto => "auto",
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            },
            ll = self.log.level,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse_err(text: &str) -> ConfigError {
        from_str(text, Path::new("proxy.toml"), &no_env).expect_err(text)
    }

    #[test]
    fn empty_file_is_all_defaults() {
        let config = from_str("", Path::new("p.toml"), &no_env).unwrap();
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.catalog.database(), "catalog");
        assert_eq!(config.tenants.maintenance_database(), "postgres");
        assert_eq!(config.tenants.pool_max_size, 8);
        assert_eq!(config.auth.algorithms, vec![Algorithm::RS256]);
        assert!(config.server.cors_origins.is_none());
    }

    #[test]
    fn the_committed_proxy_toml_is_valid() {
        let text = include_str!("../../proxy.toml");
        from_str(text, Path::new("proxy.toml"), &no_env).unwrap();
    }

    #[test]
    fn errors_name_file_line_key_and_problem() {
        let cases: &[(&str, Option<usize>, Option<&str>, &str)] = &[
            (
                "[server]\nlistne = \"x\"\n",
                Some(2),
                Some("server.listne"),
                "unknown field `listne`",
            ),
            ("[nope]\n", Some(1), Some("nope"), "unknown field `nope`"),
            (
                "[server]\nheader_read_timeout = \"5x\"\n",
                Some(2),
                Some("server.header_read_timeout"),
                "unknown unit",
            ),
            (
                "[server]\nheader_read_timeout = 5\n",
                Some(2),
                Some("server.header_read_timeout"),
                "duration string",
            ),
            (
                "[server]\nkeep_alive_timeout = \"0s\"\n",
                None,
                Some("server.keep_alive_timeout"),
                "longer than 0s",
            ),
            (
                "[server]\nlisten = \"nowhere\"\n",
                None,
                Some("server.listen"),
                "not an address",
            ),
            (
                "[server]\nmax_body_bytes = 0\n",
                None,
                Some("server.max_body_bytes"),
                "greater than 0",
            ),
            (
                "[server]\nmax_body_bytes = -1\n",
                Some(2),
                Some("server.max_body_bytes"),
                "invalid value",
            ),
            (
                "[catalog]\nurl = \"postgres://h/Bad-Name\"\n",
                None,
                Some("catalog.url"),
                "lowercase",
            ),
            (
                "[tenants]\npool_min_idle = 9\n",
                None,
                Some("tenants.pool_min_idle"),
                "more than",
            ),
            (
                "[tenants]\npipeline_depth = 0\n",
                None,
                Some("tenants.pipeline_depth"),
                "must be",
            ),
            (
                "[tenants]\npipeline_depth = 5000\n",
                None,
                Some("tenants.pipeline_depth"),
                "more than 1024",
            ),
            (
                "[auth]\nalgorithms = [\"none\"]\n",
                None,
                Some("auth.algorithms"),
                "unknown algorithm",
            ),
            (
                "[auth]\nalgorithms = []\n",
                None,
                Some("auth.algorithms"),
                "at least one",
            ),
            (
                "[auth]\nalgorithms = [\"HS256\"]\n",
                None,
                Some("auth.hs256_secret"),
                "required",
            ),
            (
                "[auth]\nhs256_secret = \"short\"\n",
                None,
                Some("auth.hs256_secret"),
                "32 bytes",
            ),
            (
                "[auth]\njwks_url = \"ftp://x\"\n",
                None,
                Some("auth.jwks_url"),
                "https://",
            ),
            (
                "[auth]\njwks_url = \"https://a/j\"\njwks_file = \"j.json\"\n",
                None,
                Some("auth.jwks_file"),
                "not both",
            ),
            (
                "[log]\nformat = \"xml\"\n",
                None,
                Some("log.format"),
                "not one of",
            ),
            ("[server\n", Some(1), None, "unclosed table"),
        ];
        for (text, line, key, fragment) in cases {
            let err = parse_err(text);
            assert_eq!(err.line, *line, "{text}: {err}");
            assert_eq!(err.key.as_deref(), *key, "{text}: {err}");
            assert!(err.message.contains(fragment), "{text}: {err}");
            assert!(err.to_string().starts_with("proxy.toml"), "{err}");
        }
    }

    #[test]
    fn secrets_never_show() {
        let text = "[auth]\nalgorithms = [\"HS256\"]\nhs256_secret = \"0123456789abcdef0123456789abcdef\"\n[admin]\nlisten = \"127.0.0.1:9090\"\ntoken = \"admintoken\"\n[tenants]\nurl = \"postgres://u:pw@h/postgres\"\n";
        let config = from_str(text, Path::new("p.toml"), &no_env).unwrap();
        let shown = format!("{}{:?}", config.render_effective(), config);
        for secret in ["0123456789abcdef", "admintoken", ":pw@"] {
            assert!(!shown.contains(secret), "{secret} leaked");
        }
        assert!(shown.contains("<redacted>"));
        // The rendered configuration is itself a valid configuration.
        let rendered = config.render_effective();
        let reparsed = parse(&rendered, Path::new("r.toml"));
        assert!(reparsed.is_ok(), "{reparsed:?}");
    }

    #[test]
    fn source_resolution() {
        let env = |k: &str| (k == "TENANT_EDGE_CONFIG").then(|| "/etc/te.toml".to_string());
        let flag = ConfigSource::resolve(Some("a.toml".into()), &env);
        assert_eq!(
            (flag.path.to_str().unwrap(), flag.explicit),
            ("a.toml", true)
        );
        let from_env = ConfigSource::resolve(None, &env);
        assert_eq!(
            (from_env.path.to_str().unwrap(), from_env.explicit),
            ("/etc/te.toml", true)
        );
        let default = ConfigSource::resolve(None, &no_env);
        assert_eq!(
            (default.path.to_str().unwrap(), default.explicit),
            ("proxy.toml", false)
        );
        let missing = load(
            &ConfigSource {
                path: "/nonexistent/x.toml".into(),
                explicit: true,
            },
            &no_env,
        );
        assert!(missing.unwrap_err().message.contains("cannot read"));
    }
}
