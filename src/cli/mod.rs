//! The command line: parses arguments, loads the configuration and runs one command.
//!
//! `run` returns the process exit code (0 success, 1 runtime failure, 2 bad usage or bad
//! configuration, as OPERATIONS.md promises). Commands print what a person needs and turn
//! errors into one clear line; nothing here is used by the data path.

mod demo;
mod migrate_cmd;
pub use migrate_cmd::open_catalog;
mod serve_cmd;
mod tenants_cmd;
mod token_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Config, ConfigSource};

#[derive(Debug, Parser)]
#[command(
    name = "tenant-edge",
    version,
    about = "Serves the school-lunch API from each school's own PostgreSQL database"
)]
pub struct Cli {
    /// Configuration file [default: ./proxy.toml, or $TENANT_EDGE_CONFIG]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (the default when no command is given)
    Serve {
        /// Ensure two demo schools with a published week, then print a dev token and curl commands
        #[arg(long)]
        demo: bool,
    },
    /// Create and migrate the catalog, then every school's database
    Migrate,
    /// List and manage the schools in the catalog
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// Print a development token (HS256; needs [auth] hs256_secret and "HS256" in [auth] algorithms)
    Token {
        /// The school's database name
        #[arg(long)]
        school: String,
        /// Lifetime, e.g. 30m or 1h
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: std::time::Duration,
    },
    /// Validate the configuration and print it, secrets redacted
    CheckConfig,
}

#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// List every school with its status and database version
    List,
    /// Add a school and provision its database now
    Add {
        /// Display name, e.g. "Pinewood Elementary"
        #[arg(long)]
        name: String,
        /// Database name [default: derived from the name, e.g. pinewood_elementary]
        #[arg(long)]
        database: Option<String>,
    },
    /// Stop serving a school (its data is kept)
    Suspend { database: String },
    /// Serve a suspended school again
    Resume { database: String },
    /// Take a school out of the catalog (its database is kept unless --drop-database)
    Remove {
        database: String,
        /// Also drop the school's database (its data is lost)
        #[arg(long)]
        drop_database: bool,
    },
}

fn parse_ttl(text: &str) -> Result<std::time::Duration, String> {
    config::parse_duration(text)
}

/// A command's failure: the message to print and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn runtime(message: impl Into<String>) -> Self {
        Self {
            code: 1,
            message: message.into(),
        }
    }
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            code: 2,
            message: message.into(),
        }
    }
}

impl From<config::ConfigError> for Failure {
    fn from(err: config::ConfigError) -> Self {
        Self::usage(format!("configuration error: {err}"))
    }
}

/// Entry point of the binary: parse, load the configuration, run, map to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let exit = |failure: Failure| {
        eprintln!("tenant-edge: {}", failure.message);
        ExitCode::from(failure.code)
    };
    let config = match load_config(cli.config) {
        Ok(config) => config,
        Err(failure) => return exit(failure),
    };
    // The control path's runtime (and the commands'). `serve` runs the data path on
    // threads of its own (`[server] worker_threads`, http/workers.rs); what runs here
    // mostly waits on PostgreSQL.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return exit(Failure::runtime(format!("cannot start the runtime: {err}"))),
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => exit(failure),
    }
}

fn process_env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

/// Loads the configuration named by the command line or the environment.
pub fn load_config(flag: Option<PathBuf>) -> Result<Config, Failure> {
    let source = ConfigSource::resolve(flag, &process_env);
    let config = config::load(&source, &process_env)?;
    Ok(config)
}

/// Runs one command with its configuration.
pub async fn run(command: Option<Command>, config: Config) -> Result<(), Failure> {
    match command.unwrap_or(Command::Serve { demo: false }) {
        Command::Serve { demo } => serve_cmd::run(config, demo).await,
        Command::Migrate => migrate_cmd::run(&config).await,
        Command::Tenants(command) => tenants_cmd::run(&config, command).await,
        Command::Token { school, ttl } => token_cmd::run(&config, &school, ttl),
        Command::CheckConfig => {
            for warning in &config.warnings {
                eprintln!("warning: {}: {warning}", config.source.display());
            }
            print!("{}", config.render_effective());
            Ok(())
        }
    }
}
