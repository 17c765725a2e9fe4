//! PostgreSQL plumbing shared by both paths: connection targets, database-name rules,
//! identifier quoting and a connect that cannot hang.
//!
//! This module owns the only place where a database name from the catalog is turned into
//! SQL text ([`quote_ident`]) and the rule for which names are acceptable at all
//! ([`validate_database_name`]). It knows nothing about schools or HTTP.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::config::Host;
use tokio_postgres::{AsyncMessage, Client, Config as PgConfig, NoTls};

/// Builds a connection target from a URL or a libpq key=value string, filling what it
/// leaves out from the standard `PG*` variables (looked up through `env`).
pub fn parse_target(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<PgConfig, String> {
    let mut config: PgConfig = text
        .parse()
        .map_err(|err| format!("not a PostgreSQL connection URL or key=value string ({err})"))?;
    if config.get_hosts().is_empty() {
        let host = env("PGHOST").unwrap_or_else(|| "localhost".into());
        for part in host.split(',') {
            config.host(part);
        }
    }
    if config.get_ports().is_empty() {
        if let Some(port) = env("PGPORT") {
            let port: u16 = port
                .parse()
                .map_err(|_| format!("PGPORT {port:?} is not a port number"))?;
            config.port(port);
        }
    }
    if config.get_user().is_none() {
        config.user(env("PGUSER").as_deref().unwrap_or("postgres"));
    }
    if config.get_password().is_none() {
        if let Some(password) = env("PGPASSWORD") {
            config.password(password);
        }
    }
    if config.get_application_name().is_none() {
        config.application_name("tenant-edge");
    }
    Ok(config)
}

/// The same server and credentials, another database.
pub fn with_database(base: &PgConfig, database: &str) -> PgConfig {
    let mut config = base.clone();
    config.dbname(database);
    config
}

/// `postgres://user@host:port/db` for messages and `check-config`: never the password.
pub fn describe(config: &PgConfig) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    let password = if config.get_password().is_some() {
        ":<redacted>"
    } else {
        ""
    };
    let db = config.get_dbname().unwrap_or("");
    format!("postgres://{user}{password}@{host}:{port}/{db}")
}

/// Connects with a hard deadline and drives the connection on its own task.
///
/// tokio-postgres has no connect timeout of its own unless one is configured, and a
/// black-holed server would otherwise hang the caller for minutes.
pub async fn connect(config: &PgConfig, timeout: Duration) -> Result<Client, ConnectError> {
    let mut config = config.clone();
    config.connect_timeout(timeout);
    let target = describe(&config);
    let attempt = tokio::time::timeout(timeout + Duration::from_millis(250), config.connect(NoTls));
    match attempt.await {
        Err(_) => Err(ConnectError {
            target,
            source: None,
        }),
        Ok(Err(err)) => Err(ConnectError {
            target,
            source: Some(err),
        }),
        Ok(Ok((client, connection))) => {
            tokio::spawn(drive(connection));
            Ok(client)
        }
    }
}

/// Runs a connection until it closes, logging the server's notices at debug.
///
/// Awaiting the connection itself would log each notice at info, and the migrations'
/// `create ... if not exists` send one per existing object ("relation ... already exists,
/// skipping") on every start: routine, so debug. A connection error surfaces on the
/// client's next call; nothing to do with it here.
async fn drive<S, T>(mut connection: tokio_postgres::Connection<S, T>)
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
        if let AsyncMessage::Notice(notice) = message {
            tracing::debug!(severity = notice.severity(), "{}", notice.message());
        }
    }
}

/// A connection that could not be made, with where it was going.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to {target}: {}", reason(.source))]
pub struct ConnectError {
    pub target: String,
    #[source]
    pub source: Option<tokio_postgres::Error>,
}

impl ConnectError {
    /// True when the target database itself does not exist (SQLSTATE 3D000).
    pub fn is_missing_database(&self) -> bool {
        self.source
            .as_ref()
            .and_then(|err| err.code())
            .is_some_and(|code| *code == tokio_postgres::error::SqlState::INVALID_CATALOG_NAME)
    }
}

fn reason(source: &Option<tokio_postgres::Error>) -> String {
    match source {
        None => "timed out".into(),
        Some(err) => error_text(err),
    }
}

/// The most useful one-line text of a driver error: the server's message when there is
/// one, otherwise the I/O cause.
pub fn error_text(err: &tokio_postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        return db.message().to_string();
    }
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

/// Quotes an identifier for SQL text, doubling embedded quotes. Used even for validated
/// names, so that safety never depends on validation alone.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a"), "\"a\"");
        assert_eq!(quote_ident("x\"; drop"), "\"x\"\"; drop\"");
    }

    #[test]
    fn targets_take_env_for_what_is_missing() {
        let env = |key: &str| match key {
            "PGHOST" => Some("db.internal".to_string()),
            "PGPORT" => Some("6543".to_string()),
            "PGUSER" => Some("app".to_string()),
            "PGPASSWORD" => Some("s3cret".to_string()),
            _ => None,
        };
        let config = parse_target("postgres:///catalog", &env).unwrap();
        assert_eq!(
            describe(&config),
            "postgres://app:<redacted>@db.internal:6543/catalog"
        );
        let config = parse_target("postgres://u@h:1/c", &env).unwrap();
        assert_eq!(describe(&config), "postgres://u:<redacted>@h:1/c");
        let config = parse_target("host=h port=2 user=x dbname=d", &|_| None).unwrap();
        assert_eq!(describe(&config), "postgres://x@h:2/d");
        assert!(parse_target("mysql://x", &|_| None).is_err());
        assert!(parse_target("postgres:///c", &|k| (k == "PGPORT").then(|| "x".into())).is_err());
    }
}
