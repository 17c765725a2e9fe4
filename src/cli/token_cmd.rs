//! `tenant-edge token --school <database>`: a development token signed with
//! `[auth] hs256_secret`, so a first run needs no identity provider.

use std::time::Duration;

use jsonwebtoken::Algorithm;

use super::Failure;
use crate::auth;
use crate::config::Config;
use crate::domain::names;

pub fn run(config: &Config, school: &str, ttl: Duration) -> Result<(), Failure> {
    let secret = config.auth.hs256_secret.as_ref().ok_or_else(|| {
        Failure::usage(format!(
            "{}: key `auth.hs256_secret`: required by `tenant-edge token` (development tokens are HS256)",
            config.source.display()
        ))
    })?;
    // A token the configured server would reject is worse than none: it sends the
    // operator looking for a fault in the token rather than in the configuration.
    if !config.auth.algorithms.contains(&Algorithm::HS256) {
        return Err(Failure::usage(format!(
            "{}: key `auth.algorithms`: does not list \"HS256\", so the server rejects every development token (add \"HS256\" to use them)",
            config.source.display()
        )));
    }
    names::validate_database_name(school)
        .map_err(|err| Failure::usage(format!("--school: {err}")))?;
    if ttl.is_zero() {
        return Err(Failure::usage("--ttl: must be longer than 0s"));
    }
    let token = auth::sign_dev_token(
        secret,
        &config.auth.issuer,
        &config.auth.audience,
        &config.auth.tenant_claim,
        school,
        ttl,
    )
    .map_err(|err| Failure::runtime(format!("signing the token failed: {err}")))?;
    println!("{token}");
    Ok(())
}
