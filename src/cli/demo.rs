//! `tenant-edge serve --demo`: a first run with nothing but PostgreSQL. Ensures two demo
//! schools with a published week exist, enables development tokens for this run, and
//! prints a token with curl commands that work as printed.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::Algorithm;
use rand::distr::{Alphanumeric, SampleString};

use super::{open_catalog, Failure};
use crate::auth;
use crate::config::{is_hmac, Config, Secret};
use crate::domain::date::Date;
use crate::domain::names;
use crate::pg;
use crate::tenancy::provision::Provisioner;
use crate::tenancy::store;

/// The demo schools: (display name, database name for the default catalog).
pub const DEMO_SCHOOLS: [(&str, &str); 2] = [
    ("Pinewood Elementary (demo)", "demo_pinewood"),
    ("Oak Ridge Middle (demo)", "demo_oak_ridge"),
];

/// The database of a demo school for a catalog database: `demo_pinewood` beside the
/// default `catalog`, and `<catalog>_demo_pinewood` beside any other. So two demo setups
/// on one PostgreSQL server (a second checkout, parallel tests with their own catalogs)
/// never share or drop each other's demo schools, and whoever removes a catalog named
/// `x` finds its demo databases under the prefix `x_`.
pub fn demo_database(catalog: &str, school: &str) -> Result<String, Failure> {
    let name = if catalog == "catalog" {
        school.to_string()
    } else {
        format!("{catalog}_{school}")
    };
    names::validate_database_name(&name).map_err(|err| {
        Failure::usage(format!(
            "demo database name for catalog {catalog:?}: {err} (use a shorter catalog database name)"
        ))
    })?;
    Ok(name)
}

/// What `print_instructions` needs.
pub struct DemoToken {
    pub token: String,
    pub school: String,
    pub week_of: Date,
}

/// Monday of the current week (UTC).
fn this_monday() -> Date {
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0) as i64;
    // 1970-01-01 was a Thursday: (days + 3) % 7 is the number of days since Monday.
    Date::from_unix_days(days - (days + 3) % 7)
        .unwrap_or_else(|| Date::parse("2020-01-06").expect("valid date"))
}

/// Development tokens for this run: HS256, with `[auth] hs256_secret` or a secret made up
/// now. Without a key source (`auth.jwks_url` or `auth.jwks_file`) the public-key
/// algorithms are left out of this run, because they could verify no token; the warning
/// about that misconfiguration concerns the file, so `serve` and `check-config` without
/// `--demo` still print it. The warnings are computed again for what this run uses.
pub fn enable_dev_tokens(config: &mut Config) {
    let auth = &mut config.auth;
    if auth.hs256_secret.is_none() {
        // A secret for this run only: tokens printed now stop working at the next start.
        auth.hs256_secret = Some(Secret::new(
            Alphanumeric.sample_string(&mut rand::rng(), 48),
        ));
    }
    if auth.jwks_url.is_none() && auth.jwks_file.is_none() {
        auth.algorithms.retain(|algorithm| is_hmac(*algorithm));
    }
    if !auth.algorithms.contains(&Algorithm::HS256) {
        auth.algorithms.push(Algorithm::HS256);
    }
    config.warnings = config.collect_warnings();
}

/// Ensures the demo schools and signs a token for the first. `config` must have passed
/// through [`enable_dev_tokens`].
pub async fn prepare(config: &Config) -> Result<DemoToken, Failure> {
    let secret =
        config.auth.hs256_secret.as_ref().ok_or_else(|| {
            Failure::runtime("the demo needs development tokens (enable_dev_tokens)")
        })?;
    let catalog = open_catalog(config).await?;
    let provisioner = Provisioner::from_config(config);
    let week_of = this_monday();
    let catalog_database = config.catalog.database().to_string();
    let mut schools = Vec::with_capacity(DEMO_SCHOOLS.len());
    for (name, school) in DEMO_SCHOOLS {
        schools.push((name, demo_database(&catalog_database, school)?));
    }
    for (name, database) in &schools {
        let (name, database) = (*name, database.as_str());
        let runtime = |e: store::CatalogError| Failure::runtime(e.to_string());
        if store::find_school(&catalog, database)
            .await
            .map_err(runtime)?
            .is_none()
        {
            let slug = crate::domain::names::database_to_slug(database);
            store::add_school(&catalog, name, database, &slug)
                .await
                .map_err(runtime)?;
        }
        let applied = provisioner
            .provision(database)
            .await
            .map_err(|e| Failure::runtime(format!("provisioning demo school {database}: {e}")))?;
        store::record_provisioned(&catalog, database, applied.version)
            .await
            .map_err(runtime)?;
        seed(config, database, name, week_of).await?;
    }
    let token = auth::sign_dev_token(
        secret,
        &config.auth.issuer,
        &config.auth.audience,
        &config.auth.tenant_claim,
        &schools[0].1,
        Duration::from_secs(24 * 3600),
    )
    .map_err(|e| Failure::runtime(format!("signing the demo token: {e}")))?;
    Ok(DemoToken {
        token,
        school: schools[0].1.clone(),
        week_of,
    })
}

/// A published week (this Monday, five days) in a demo school that has no weeks yet.
async fn seed(config: &Config, database: &str, name: &str, week_of: Date) -> Result<(), Failure> {
    let target = pg::with_database(&config.tenants.target, database);
    let fail = |e: tokio_postgres::Error| {
        Failure::runtime(format!("seeding {database}: {}", pg::error_text(&e)))
    };
    let client = pg::connect(&target, Duration::from_secs(5))
        .await
        .map_err(|e| Failure::runtime(e.to_string()))?;
    let weeks: i64 = client
        .query_one("select count(*) from lunch_week", &[])
        .await
        .map_err(fail)?
        .get(0);
    if weeks > 0 {
        return Ok(());
    }
    let week_id: i32 = client
        .query_one(
            "insert into lunch_week (week_of, is_published) values ($1, true) returning lunch_week_id",
            &[&week_of],
        )
        .await
        .map_err(fail)?
        .get(0);
    let menus = [
        "Pizza and salad",
        "Tacos",
        "Chicken noodle soup",
        "Pasta with tomato sauce",
        "Fish sticks",
    ];
    let monday = week_of.to_unix_days();
    for (offset, menu) in menus.iter().enumerate() {
        let day = Date::from_unix_days(monday + offset as i64).expect("a weekday of a valid week");
        let details = format!("{menu} at {name}");
        client
            .execute(
                "insert into lunch_day (lunch_week_id, day, menu_details) values ($1, $2, $3)",
                &[&week_id, &day, &details],
            )
            .await
            .map_err(fail)?;
    }
    Ok(())
}

pub fn print_instructions(demo: &DemoToken, address: SocketAddr) {
    let base = format!("http://{address}");
    let slug = crate::domain::names::database_to_slug(&demo.school);
    println!(
        "\ntenant-edge demo is up. A development token for {school} (valid 24 h):\n\n\
         export TOKEN='{token}'\n\n\
         curl -s {base}/api/lunch-week -H \"Authorization: Bearer $TOKEN\"\n\
         curl -s -X POST {base}/api/lunch-week -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' -d '{{\"weekOf\":\"2030-01-07\",\"isPublished\":false}}'\n\
         curl -s {base}/api/lunch-week-public/{slug}/{week}\n\n\
         Stop with Ctrl-C.\n",
        school = demo.school,
        token = demo.token,
        week = demo.week_of,
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config;

    fn load(text: &str) -> Config {
        config::from_str(text, Path::new("proxy.toml"), &|_| None).unwrap()
    }

    #[test]
    fn dev_tokens_without_a_key_source_leave_nothing_to_warn_about() {
        let mut defaults = load("");
        // Outside the demo, RS256 without a key set is worth a warning...
        assert_eq!(defaults.warnings.len(), 1, "{:?}", defaults.warnings);
        enable_dev_tokens(&mut defaults);
        // ...in the demo only HS256 is used, and nothing is worth one.
        assert_eq!(defaults.auth.algorithms, vec![Algorithm::HS256]);
        assert!(defaults.auth.hs256_secret.is_some());
        assert!(defaults.warnings.is_empty(), "{:?}", defaults.warnings);

        let mut with_keys = load("[auth]\njwks_file = \"jwks.json\"\n");
        enable_dev_tokens(&mut with_keys);
        assert_eq!(
            with_keys.auth.algorithms,
            vec![Algorithm::RS256, Algorithm::HS256]
        );
        assert!(with_keys.warnings.is_empty(), "{:?}", with_keys.warnings);
    }
}
