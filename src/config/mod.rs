//! Configuration: `proxy.toml` read into [`raw::RawConfig`], then validated into the
//! [`Config`] the program uses (validate.rs), and written back for `check-config`
//! (render.rs).
//!
//! Every error names the file, the key and the problem (and the line when the parser knows
//! it). Secrets are wrapped in [`Secret`], whose `Debug` never shows them. Nothing here
//! touches the network or a database; the one file it reads besides proxy.toml is
//! `[auth] jwks_ca_file`, so that a bad one is an error naming its key.

mod duration;
mod raw;
mod render;
mod size;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use rustls::pki_types::CertificateDer;
use tokio_postgres::Config as PgConfig;

pub use duration::{format_duration, parse_duration, HumanDuration};
use raw::RawConfig;
pub use size::{format_size, parse_size, HumanSize};
use validate::validate;

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
    pub cache: CacheConfig,
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
    /// How long opening a catalog connection may take: `[tenants] connect_timeout`, but
    /// at least 5 s (validate.rs says why). Every catalog connection uses it.
    pub connect_timeout: Duration,
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
    /// Extra roots trusted for an `https://` jwks_url, read from this PEM file.
    pub jwks_ca_file: Option<PathBuf>,
    /// The certificates of `jwks_ca_file`, each checked to be a usable trust anchor.
    pub jwks_ca_certs: Vec<CertificateDer<'static>>,
    pub jwks_refresh_interval: Duration,
    /// Unknown kids may cause a few key set fetches at once (`auth::refetch_budget`);
    /// one more is allowed per this period. Zero: no limit.
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

/// `[cache]`: the published-menu cache (see `lunch::menu_cache`).
#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub enabled: bool,
    /// Bound on the bytes held (bodies, tags and keys), across all worker threads.
    pub max_bytes: u64,
    /// The longest an entry lives when no invalidation reaches it (writes made outside
    /// tenant-edge are seen after this).
    pub max_age: Duration,
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

#[cfg(test)]
mod proptests;

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
        assert!(config.cache.enabled);
        assert_eq!(config.cache.max_bytes, 64 << 20);
        assert_eq!(config.cache.max_age, Duration::from_secs(300));
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
                "[cache]\nenabled = true\nmax_bytes = \"64MB\"\n",
                Some(3),
                Some("cache.max_bytes"),
                "unknown unit",
            ),
            (
                "[cache]\nmax_bytes = -5\n",
                Some(2),
                Some("cache.max_bytes"),
                "must not be negative",
            ),
            (
                "[cache]\nmax_bytes = 0\n",
                None,
                Some("cache.max_bytes"),
                "must be greater than 0",
            ),
            (
                "[cache]\nmax_age = \"0s\"\n",
                None,
                Some("cache.max_age"),
                "must be longer than 0s",
            ),
            (
                "[cache]\nmax_entries = 5\n",
                Some(2),
                Some("cache.max_entries"),
                "unknown field `max_entries`",
            ),
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
    fn jwks_ca_file_is_read_checked_and_shown() {
        let dir = std::env::temp_dir().join(format!("tenant-edge-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = rcgen::CertificateParams::new(Vec::new())
            .unwrap()
            .self_signed(&rcgen::KeyPair::generate().unwrap())
            .unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        let good = write("ca.pem", &ca.pem());
        let not_pem = write("not.pem", "hello\n");
        let not_base64 = write(
            "bad64.pem",
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        );
        let not_a_certificate = write(
            "junk.pem",
            "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
        );
        let missing = dir.join("missing.pem").display().to_string();
        let with_ca = |path: &str| {
            format!("[auth]\njwks_url = \"https://idp.example/jwks\"\njwks_ca_file = \"{path}\"\n")
        };
        for (path, fragment) in [
            (&missing, "cannot read"),
            (&not_pem, "holds no PEM certificate"),
            (&not_base64, "certificate 1"),
            (&not_a_certificate, "not a usable CA certificate"),
        ] {
            let err = parse_err(&with_ca(path));
            assert_eq!(err.key.as_deref(), Some("auth.jwks_ca_file"), "{err}");
            assert!(err.message.contains(fragment), "{err}");
            assert!(err.message.contains(path.as_str()), "{err}");
            assert!(err.to_string().starts_with("proxy.toml"), "{err}");
        }
        let config = from_str(&with_ca(&good), Path::new("p.toml"), &no_env).unwrap();
        assert_eq!(config.auth.jwks_ca_certs.len(), 1);
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        let rendered = config.render_effective();
        assert!(
            rendered.contains(&format!("\njwks_ca_file = \"{good}\"\n")),
            "{rendered}"
        );
        // Without an https:// jwks_url the file cannot be used: a warning says so.
        let unused = format!("[auth]\njwks_ca_file = \"{good}\"\n");
        let config = from_str(&unused, Path::new("p.toml"), &no_env).unwrap();
        assert!(
            config
                .warnings
                .iter()
                .any(|w| w.contains("auth.jwks_ca_file")),
            "{:?}",
            config.warnings
        );
        std::fs::remove_dir_all(&dir).unwrap();
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
    fn the_rendered_configuration_loads_back_to_the_same_values() {
        let configs = [
            "",
            "[server]\nlisten = \"0.0.0.0:9000\"\nrequest_timeout = \"250ms\"\ncors_origins = [\"https://a.example\"]\nstatic_dir = \"web/dist\"\n\
             [catalog]\nurl = \"postgres://u@db:6432/cat\"\nrefresh_interval = \"10m\"\n\
             [tenants]\npool_max_size = 3\npool_min_idle = 1\n\
             [auth]\nalgorithms = [\"ES256\", \"RS256\"]\njwks_url = \"https://idp.example/jwks\"\n\
             [admin]\nlisten = \"127.0.0.1:9090\"\nmetrics_top_schools = 5\n\
             [log]\nformat = \"json\"\nlevel = \"tenant_edge=debug\"\n",
        ];
        for text in configs {
            let config = from_str(text, Path::new("p.toml"), &no_env).unwrap();
            let rendered = config.render_effective();
            let again = from_str(&rendered, Path::new("p.toml"), &no_env)
                .unwrap_or_else(|err| panic!("{err}\n{rendered}"));
            // Debug shows every value (secrets redacted; these configurations have none).
            assert_eq!(format!("{again:?}"), format!("{config:?}"), "{rendered}");
            assert_eq!(again.render_effective(), rendered);
        }
        let rendered = from_str("", Path::new("p.toml"), &no_env)
            .unwrap()
            .render_effective();
        for line in [
            "# effective configuration from p.toml\n[server]\n",
            "\nheader_read_timeout = \"5s\"\n",
            "\nidle_timeout = \"5m\"\n",
            "\nurl = \"postgres://postgres@127.0.0.1:5432/catalog\"\n",
            "\nalgorithms = [\"RS256\"]\n",
            "\nhs256_secret = \"\"\n",
        ] {
            assert!(rendered.contains(line), "{line:?} in\n{rendered}");
        }
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

    #[test]
    fn a_non_ascii_log_level_is_an_error_not_a_panic() {
        for level in ["\u{202f}\u{aa40}=", "tenant_edge=déboguer", "info,ä"] {
            let error = parse_err(&format!("[log]\nlevel = \"{level}\"\n"));
            assert_eq!(error.key.as_deref(), Some("log.level"), "{level}");
        }
    }
}
