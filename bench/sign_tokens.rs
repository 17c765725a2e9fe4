//! Signs RS256 bearer tokens for the load tests, one per school named on the command line,
//! one token per output line (in the order given).
//!
//!     cargo run --release --example bench-tokens -- \
//!         --key tests/fixtures/rsa_a.pem --kid key-a school_a school_b ...
//!
//! The claims are the ones tenant-edge checks (`iss`, `aud`, `exp`, the tenant claim);
//! the defaults match the committed `proxy.toml`. This is a benchmark helper only: it
//! signs with a test key from `tests/fixtures`, never with anything real.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{Map, Value};

struct Args {
    key: String,
    kid: String,
    issuer: String,
    audience: String,
    claim: String,
    ttl_secs: u64,
    schools: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        key: "tests/fixtures/rsa_a.pem".into(),
        kid: "key-a".into(),
        issuer: "https://school-lunch.example/".into(),
        audience: "https://school-lunch/api".into(),
        claim: "https://school-lunch/school_database".into(),
        ttl_secs: 4 * 3600,
        schools: Vec::new(),
    };
    let mut raw = std::env::args().skip(1);
    while let Some(arg) = raw.next() {
        let mut value = |name: &str| raw.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--key" => args.key = value("--key")?,
            "--kid" => args.kid = value("--kid")?,
            "--issuer" => args.issuer = value("--issuer")?,
            "--audience" => args.audience = value("--audience")?,
            "--claim" => args.claim = value("--claim")?,
            "--ttl-secs" => {
                args.ttl_secs = value("--ttl-secs")?
                    .parse()
                    .map_err(|_| "--ttl-secs must be a number of seconds")?
            }
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            school => args.schools.push(school.to_string()),
        }
    }
    if args.schools.is_empty() {
        return Err("name at least one school database".into());
    }
    Ok(args)
}

fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("bench-tokens: {message}");
            return std::process::ExitCode::from(2);
        }
    };
    let pem = match std::fs::read(&args.key) {
        Ok(pem) => pem,
        Err(err) => {
            eprintln!("bench-tokens: {}: {err}", args.key);
            return std::process::ExitCode::from(2);
        }
    };
    let key = match EncodingKey::from_rsa_pem(&pem) {
        Ok(key) => key,
        Err(err) => {
            eprintln!("bench-tokens: {}: not an RSA private key: {err}", args.key);
            return std::process::ExitCode::from(2);
        }
    };
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(args.kid.clone());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for school in &args.schools {
        let mut claims = Map::new();
        claims.insert("iss".into(), args.issuer.as_str().into());
        claims.insert("aud".into(), args.audience.as_str().into());
        claims.insert("sub".into(), "bench".into());
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), (now + args.ttl_secs).into());
        claims.insert(args.claim.clone(), school.as_str().into());
        match encode(&header, &Value::Object(claims), &key) {
            Ok(token) => println!("{token}"),
            Err(err) => {
                eprintln!("bench-tokens: signing for {school}: {err}");
                return std::process::ExitCode::from(1);
            }
        }
    }
    std::process::ExitCode::SUCCESS
}
