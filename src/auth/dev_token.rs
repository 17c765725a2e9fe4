//! Development tokens: HS256 tokens signed with `auth.hs256_secret`, for local runs and
//! tests without an identity provider.
//!
//! Owns only the signing. It must not be reachable from the request path (the server
//! never mints tokens for a client) and must not weaken verification: these tokens pass
//! the same checks as any other, and only when the configuration lists `HS256`.

use std::time::Duration;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{Map, Value};

use crate::config::Secret;

/// The display-name claim the front end reads (API.md); the server never needs it.
pub const SCHOOL_NAME_CLAIM: &str = "https://school-lunch/school_name";

/// Signs an HS256 token carrying `iss`, `aud`, `iat`, `exp` (now + `ttl`), `sub` "dev",
/// the tenant claim and the school-name claim, both set to `school_database`.
pub fn sign_dev_token(
    secret: &Secret,
    issuer: &str,
    audience: &str,
    tenant_claim: &str,
    school_database: &str,
    ttl: Duration,
) -> Result<String, jsonwebtoken::errors::Error> {
    // On a host whose clock reads before 1970 this issues a token "at 0": harmless.
    let now = super::unix_now();
    let mut claims = Map::new();
    claims.insert("iss".into(), issuer.into());
    claims.insert("aud".into(), audience.into());
    claims.insert("sub".into(), "dev".into());
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), now.saturating_add(ttl.as_secs()).into());
    claims.insert(SCHOOL_NAME_CLAIM.into(), school_database.into());
    // Inserted last so a tenant claim configured with the school-name key still carries
    // the database name, which is what the server routes on.
    claims.insert(tenant_claim.into(), school_database.into());
    encode(
        &Header::new(Algorithm::HS256),
        &Value::Object(claims),
        &EncodingKey::from_secret(secret.expose().as_bytes()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, DecodingKey, Validation};

    #[test]
    fn dev_tokens_carry_the_documented_claims() {
        let secret = Secret::new("0123456789abcdef0123456789abcdef");
        let token = sign_dev_token(
            &secret,
            "https://issuer/",
            "school-lunch",
            "https://school-lunch/school_database",
            "pinewood_elementary",
            Duration::from_secs(600),
        )
        .unwrap();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&["https://issuer/"]);
        validation.set_audience(&["school-lunch"]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = decode::<Map<String, Value>>(
            &token,
            &DecodingKey::from_secret(secret.expose().as_bytes()),
            &validation,
        )
        .unwrap();
        let claims = data.claims;
        assert_eq!(claims["sub"], "dev");
        assert_eq!(
            claims["https://school-lunch/school_database"],
            "pinewood_elementary"
        );
        assert_eq!(claims[SCHOOL_NAME_CLAIM], "pinewood_elementary");
        let (iat, exp) = (
            claims["iat"].as_u64().unwrap(),
            claims["exp"].as_u64().unwrap(),
        );
        assert_eq!(exp - iat, 600);
    }
}
