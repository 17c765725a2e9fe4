//! `tenant-edge migrate`: the catalog first, then every school's database.
//!
//! Prints one line per school (applied N, up to date, or failed: why) and fails with exit
//! code 1 when any school failed; one school's failure never stops the others.

use std::io::{IsTerminal, Write};

use tokio_postgres::Client;

use super::Failure;
use crate::config::Config;
use crate::domain::names;
use crate::tenancy::migrate::Applied;
use crate::tenancy::provision::Provisioner;
use crate::tenancy::store;

/// Connects to the catalog (creating and migrating it) or explains why it cannot.
pub async fn open_catalog(config: &Config) -> Result<Client, Failure> {
    let catalog = &config.catalog;
    let mut client = store::connect_or_create(catalog).await.map_err(|err| {
        Failure::runtime(format!(
            "cannot reach the catalog: {err}\n  is PostgreSQL running? check [catalog] url in {} and PGHOST/PGPORT/PGUSER/PGPASSWORD",
            config.source.display()
        ))
    })?;
    store::migrate_catalog(&mut client, &catalog.target, catalog.connect_timeout)
        .await
        .map_err(|err| Failure::runtime(err.to_string()))?;
    Ok(client)
}

pub async fn run(config: &Config) -> Result<(), Failure> {
    let catalog = open_catalog(config).await?;
    let schools = store::list_schools(&catalog)
        .await
        .map_err(|err| Failure::runtime(err.to_string()))?;

    let mut lines: Vec<(String, Result<Applied, String>)> = Vec::new();
    let mut valid = Vec::new();
    for school in &schools {
        match names::validate_database_name(&school.database) {
            Ok(()) => valid.push(school.database.clone()),
            // Reported and skipped, never truncated or guessed.
            Err(err) => lines.push((school.database.clone(), Err(format!("skipped: {err}")))),
        }
    }

    let provisioner = Provisioner::from_config(config);
    let total = valid.len();
    let progress = std::io::stderr().is_terminal();
    let mut done = 0usize;
    let mut failed = 0usize;
    let results = provisioner
        .provision_all(valid, |_, result| {
            done += 1;
            failed += usize::from(result.is_err());
            if progress {
                eprint!("\rmigrating schools: {done}/{total} done, {failed} failed ");
                let _ = std::io::stderr().flush();
            }
        })
        .await;
    if progress && total > 0 {
        eprintln!();
    }
    lines.extend(
        results
            .into_iter()
            .map(|(db, r)| (db, r.map_err(|e| e.to_string()))),
    );

    // Record what each database is at, so `tenants list` and every replica see it.
    for (database, result) in &lines {
        let recorded = match result {
            Ok(applied) => store::record_provisioned(&catalog, database, applied.version).await,
            Err(reason) => store::record_failure(&catalog, database, reason).await,
        };
        if let Err(err) = recorded {
            eprintln!("warning: recording the result for {database} in the catalog failed: {err}");
        }
    }

    let width = lines.iter().map(|(d, _)| d.len()).max().unwrap_or(0);
    let mut any_failed = false;
    for (database, result) in &lines {
        let outcome = match result {
            Ok(Applied { count: 0, version }) => format!("up to date (version {version})"),
            Ok(Applied { count, version }) => format!("applied {count} (now at version {version})"),
            Err(reason) => {
                any_failed = true;
                format!("failed: {reason}")
            }
        };
        println!("{database:<width$}  {outcome}");
    }
    println!(
        "catalog {}: {} schools, {} failed",
        config.catalog.database(),
        lines.len(),
        lines.iter().filter(|(_, r)| r.is_err()).count()
    );
    if any_failed {
        return Err(Failure::runtime(
            "some schools failed to migrate (see above)",
        ));
    }
    Ok(())
}
