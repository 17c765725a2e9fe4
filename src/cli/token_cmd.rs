//! `tenant-edge token --school <database>`: a development token signed with
//! `[auth] hs256_secret`, so a first run needs no identity provider.

use std::time::Duration;

use super::Failure;
use crate::auth;
use crate::config::{is_hmac, Config};
use crate::domain::names;

pub fn run(config: &Config, school: &str, ttl: Duration) -> Result<(), Failure> {
    let secret = config.auth.hs256_secret.as_ref().ok_or_else(|| {
        Failure::usage(format!(
            "{}: key `auth.hs256_secret`: required by `tenant-edge token` (development tokens are HS256)",
            config.source.display()
        ))
    })?;
    names::validate_database_name(school)
        .map_err(|err| Failure::usage(format!("--school: {err}")))?;
    if ttl.is_zero() {
        return Err(Failure::usage("--ttl: must be longer than 0s"));
    }
    if !config.auth.algorithms.iter().any(|a| is_hmac(*a)) {
        eprintln!(
            "warning: [auth] algorithms does not list HS256, so this server will reject the token"
        );
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
