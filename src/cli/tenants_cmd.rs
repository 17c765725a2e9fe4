//! `tenant-edge tenants list|add|suspend|resume|remove`: the operator's view of the catalog.

use tokio_postgres::Client;

use super::migrate_cmd::open_catalog;
use super::{Failure, TenantsCommand};
use crate::config::Config;
use crate::domain::names;
use crate::domain::status::SchoolStatus;
use crate::pg;
use crate::tenancy::naming;
use crate::tenancy::provision::Provisioner;
use crate::tenancy::store;

pub async fn run(config: &Config, command: TenantsCommand) -> Result<(), Failure> {
    let catalog = open_catalog(config).await?;
    match command {
        TenantsCommand::List => list(&catalog).await,
        TenantsCommand::Add { name, database } => add(config, &catalog, &name, database).await,
        TenantsCommand::Suspend { database } => {
            change_status(&catalog, &database, SchoolStatus::Suspended).await
        }
        TenantsCommand::Resume { database } => {
            change_status(&catalog, &database, SchoolStatus::Active).await
        }
        TenantsCommand::Remove {
            database,
            drop_database,
        } => remove(config, &catalog, &database, drop_database).await,
    }
}

fn runtime(err: store::CatalogError) -> Failure {
    Failure::runtime(err.to_string())
}

/// `tenants list`: one line per school.
async fn list(catalog: &Client) -> Result<(), Failure> {
    let schools = store::list_schools(catalog).await.map_err(runtime)?;
    println!(
        "{:<6} {:<32} {:<32} {:<12} {:>7} {:>8}  NAME / LAST ERROR",
        "ID", "DATABASE", "SLUG", "STATUS", "VERSION", "ATTEMPTS"
    );
    for s in schools {
        println!(
            "{:<6} {:<32} {:<32} {:<12} {:>7} {:>8}  {}{}",
            s.id,
            s.database,
            s.slug,
            s.status_text(),
            s.db_version,
            s.provision_attempts,
            s.name,
            s.last_error
                .as_ref()
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// `tenants add`: the school in the catalog, then its database provisioned now.
async fn add(
    config: &Config,
    catalog: &Client,
    name: &str,
    database: Option<String>,
) -> Result<(), Failure> {
    naming::validate_school_name(name).map_err(Failure::usage)?;
    let database = match database {
        Some(database) => {
            names::validate_database_name(&database)
                .map_err(|err| Failure::usage(format!("--database: {err}")))?;
            database
        }
        None => naming::derive_database_name(name).map_err(Failure::usage)?,
    };
    if database == config.catalog.database() {
        return Err(Failure::usage(format!(
            "--database: {database} is the catalog database"
        )));
    }
    let slug = names::database_to_slug(&database);
    store::add_school(catalog, name.trim(), &database, &slug)
        .await
        .map_err(runtime)?;
    println!("added {database} (slug {slug}); provisioning its database...");
    match Provisioner::from_config(config).provision(&database).await {
        Ok(applied) => {
            store::record_provisioned(catalog, &database, applied.version)
                .await
                .map_err(runtime)?;
            println!("{database}: active (version {})", applied.version);
            Ok(())
        }
        Err(reason) => {
            let _ = store::record_failure(catalog, &database, &reason.to_string()).await;
            Err(Failure::runtime(format!(
                "{database}: provisioning failed: {reason} (the school stays in status provisioning; `tenant-edge migrate` retries)"
            )))
        }
    }
}

/// `tenants remove [--drop-database]`: out of the catalog, and its database dropped only
/// when asked.
async fn remove(
    config: &Config,
    catalog: &Client,
    database: &str,
    drop_database: bool,
) -> Result<(), Failure> {
    if !store::remove_school(catalog, database)
        .await
        .map_err(runtime)?
    {
        return Err(Failure::runtime(format!(
            "no school with database {database}"
        )));
    }
    println!("removed {database} from the catalog");
    if !drop_database {
        println!("its database {database} is kept (use --drop-database to drop it)");
        return Ok(());
    }
    // Only a name that passes validation is ever dropped.
    names::validate_database_name(database)
        .map_err(|err| Failure::runtime(format!("not dropping: {err}")))?;
    let provisioner = Provisioner::from_config(config);
    let admin = pg::connect(&provisioner.tenants, provisioner.connect_timeout)
        .await
        .map_err(|err| Failure::runtime(err.to_string()))?;
    // FORCE: servers still holding idle connections to it must not block the drop.
    admin
        .batch_execute(&format!(
            "drop database if exists {} with (force)",
            pg::quote_ident(database)
        ))
        .await
        .map_err(|err| {
            Failure::runtime(format!("dropping {database}: {}", pg::error_text(&err)))
        })?;
    println!("dropped database {database}");
    Ok(())
}

/// `tenants suspend` and `tenants resume`.
async fn change_status(
    catalog: &Client,
    database: &str,
    status: SchoolStatus,
) -> Result<(), Failure> {
    let school = store::find_school(catalog, database)
        .await
        .map_err(runtime)?
        .ok_or_else(|| Failure::runtime(format!("no school with database {database}")))?;
    if status == SchoolStatus::Active && school.status == Ok(SchoolStatus::Provisioning) {
        return Err(Failure::runtime(format!(
            "{database} is still provisioning; it becomes active once its database is migrated"
        )));
    }
    store::set_status(catalog, database, status)
        .await
        .map_err(runtime)?;
    println!("{database}: {}", status.as_str());
    Ok(())
}
