//! The school-lunch API of shared/spec/API.md, end to end over HTTP against the real
//! server and real PostgreSQL.

use std::time::{Duration, Instant};

use http::Method;
use serde_json::{json, Value};

use crate::server::*;
use crate::support::*;

#[tokio::test]
async fn every_endpoint_for_two_schools() {
    let server = TestServer::start("").await;
    let a = server.scratch.db("alpha");
    let b = server.scratch.db("beta");
    server.add_schools(&[&a, &b]).await;
    let (ta, tb) = (token_for(&a), token_for(&b));

    // Empty lists at first.
    assert_eq!(
        server.call(&ta, Method::GET, "/api/lunch-week", None).await,
        (200, json!([]))
    );

    // POST a week: the id comes from the database, never the body.
    let (status, body) = server
        .call(
            &ta,
            Method::POST,
            "/api/lunch-week",
            Some(json!({"weekOf": "2020-11-16", "isPublished": false, "lunchWeekId": 999})),
        )
        .await;
    assert_eq!(status, 200);
    let week_id = body["lunchWeekId"].as_i64().unwrap();
    assert_ne!(week_id, 999);
    assert_eq!(body, json!({ "lunchWeekId": week_id }));
    let (_, later) = server
        .call(
            &ta,
            Method::POST,
            "/api/lunch-week",
            Some(json!({"weekOf": "2020-11-09", "isPublished": true})),
        )
        .await;
    let earlier_id = later["lunchWeekId"].as_i64().unwrap();

    // The list is ordered by weekOf.
    let (status, list) = server.call(&ta, Method::GET, "/api/lunch-week", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        list,
        json!([
            {"lunchWeekId": earlier_id, "weekOf": "2020-11-09", "isPublished": true},
            {"lunchWeekId": week_id, "weekOf": "2020-11-16", "isPublished": false},
        ])
    );

    // Days: POST (id from the path), list ordered by day, GET week with nested days.
    let day_path = format!("/api/lunch-week/{week_id}/lunch-day");
    let (status, d2) = server
        .call(
            &ta,
            Method::POST,
            &day_path,
            Some(json!({"lunchWeekId": week_id, "day": "2020-11-17", "menuDetails": "Tacos"})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, d1) = server
        .call(
            &ta,
            Method::POST,
            &day_path,
            Some(json!({"day": "2020-11-16", "menuDetails": null})),
        )
        .await;
    let (d1, d2) = (
        d1["lunchDayId"].as_i64().unwrap(),
        d2["lunchDayId"].as_i64().unwrap(),
    );
    let expected_days = json!([
        {"lunchDayId": d1, "lunchWeekId": week_id, "day": "2020-11-16", "menuDetails": null},
        {"lunchDayId": d2, "lunchWeekId": week_id, "day": "2020-11-17", "menuDetails": "Tacos"},
    ]);
    assert_eq!(
        server.call(&ta, Method::GET, &day_path, None).await,
        (200, expected_days.clone())
    );
    let week_path = format!("/api/lunch-week/{week_id}");
    assert_eq!(
        server.call(&ta, Method::GET, &week_path, None).await,
        (
            200,
            json!({"lunchWeekId": week_id, "weekOf": "2020-11-16", "isPublished": false, "lunchDays": expected_days})
        )
    );
    // A week without days has an empty lunchDays.
    let (_, empty_week) = server
        .call(
            &ta,
            Method::GET,
            &format!("/api/lunch-week/{earlier_id}"),
            None,
        )
        .await;
    assert_eq!(empty_week["lunchDays"], json!([]));

    // PUT week: 200 empty; ids must match.
    let (status, body) = server
        .call(&ta, Method::PUT, &week_path, Some(json!({"lunchWeekId": week_id, "weekOf": "2020-11-16", "isPublished": true, "lunchDays": []})))
        .await;
    assert_eq!((status, body), (200, Value::Null));
    let (status, body) = server
        .call(
            &ta,
            Method::PUT,
            &week_path,
            Some(json!({"lunchWeekId": week_id + 1, "weekOf": "2020-11-16", "isPublished": true})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["message"], "Bad request, IDs do not match");
    assert_eq!(body["code"], "ids_do_not_match");
    assert!(body["requestId"].is_string());

    // PUT day; ids must match.
    let one_day = format!("{day_path}/{d2}");
    let (status, _) = server
        .call(&ta, Method::PUT, &one_day, Some(json!({"lunchDayId": d2, "lunchWeekId": week_id, "day": "2020-11-18", "menuDetails": "Soup"})))
        .await;
    assert_eq!(status, 200);
    let (status, body) = server
        .call(
            &ta,
            Method::PUT,
            &one_day,
            Some(json!({"lunchDayId": d1, "lunchWeekId": week_id, "day": "2020-11-18"})),
        )
        .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (400, Some("Bad request, IDs do not match"))
    );
    let (_, days) = server.call(&ta, Method::GET, &day_path, None).await;
    assert_eq!(days[1]["menuDetails"], "Soup");
    assert_eq!(days[1]["day"], "2020-11-18");

    // The public route: published week of that date, with its days.
    let slug = a.replace('_', "-");
    let (status, _, body) = server
        .request(
            Method::GET,
            &format!("/api/lunch-week-public/{slug}/2020-11-16"),
            &[],
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(parse(&body)["lunchDays"].as_array().unwrap().len(), 2);

    // School B sees none of it.
    assert_eq!(
        server.call(&tb, Method::GET, "/api/lunch-week", None).await,
        (200, json!([]))
    );
    let (status, body) = server.call(&tb, Method::GET, &week_path, None).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (
            404,
            Some(format!("Lunch Week Id {week_id} not found").as_str())
        )
    );
    let slug_b = b.replace('_', "-");
    let (status, _, body) = server
        .request(
            Method::GET,
            &format!("/api/lunch-week-public/{slug_b}/2020-11-16"),
            &[],
            None,
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        parse(&body)["message"],
        "No menu has been published for the week of 2020-11-16"
    );

    // DELETE day and week (200 empty, also for a missing id); days go with their week.
    assert_eq!(
        server.call(&ta, Method::DELETE, &one_day, None).await,
        (200, Value::Null)
    );
    assert_eq!(
        server.call(&ta, Method::DELETE, &one_day, None).await,
        (200, Value::Null)
    );
    assert_eq!(
        server.call(&ta, Method::DELETE, &week_path, None).await,
        (200, Value::Null)
    );
    assert_eq!(
        server
            .call(&ta, Method::DELETE, "/api/lunch-week/987654", None)
            .await,
        (200, Value::Null)
    );
    assert_eq!(
        server.call(&ta, Method::GET, &day_path, None).await,
        (200, json!([]))
    );

    // A day posted for a week that does not exist is a 404, not a 500.
    let (status, body) = server
        .call(
            &ta,
            Method::POST,
            "/api/lunch-week/987654/lunch-day",
            Some(json!({"day": "2020-11-16"})),
        )
        .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (404, Some("Lunch Week Id 987654 not found"))
    );

    // HEAD works on GET routes; ETag revalidation answers 304.
    let auth = format!("Bearer {ta}");
    let (status, headers, body) = server
        .request(
            Method::GET,
            "/api/lunch-week",
            &[("authorization", &auth)],
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json; charset=utf-8");
    let etag = headers["etag"].to_str().unwrap().to_string();
    assert!(etag.starts_with("W/\""), "{etag}");
    let (status, head_headers, head_body) = server
        .request(
            Method::HEAD,
            "/api/lunch-week",
            &[("authorization", &auth)],
            None,
        )
        .await;
    assert_eq!((status, head_body.len()), (200, 0));
    assert_eq!(
        head_headers["content-length"].to_str().unwrap(),
        body.len().to_string()
    );
    let (status, _, body) = server
        .request(
            Method::GET,
            "/api/lunch-week",
            &[("authorization", &auth), ("if-none-match", &etag)],
            None,
        )
        .await;
    assert_eq!((status, body.len()), (304, 0));
    // The scheme is matched case-insensitively.
    let lower = format!("bearer {ta}");
    let (status, _, _) = server
        .request(
            Method::GET,
            "/api/lunch-week",
            &[("authorization", &lower)],
            None,
        )
        .await;
    assert_eq!(status, 200);

    server.stop().await;
}

#[tokio::test]
async fn schools_never_see_each_others_rows_under_concurrency() {
    let server = TestServer::start("").await;
    let a = server.scratch.db("iso_a");
    let b = server.scratch.db("iso_b");
    server.add_schools(&[&a, &b]).await;
    let (ta, tb) = (token_for(&a), token_for(&b));
    // School A's weeks are all in 2020, school B's in 2021.
    for i in 0..5 {
        let week = |year: i32| json!({"weekOf": format!("{year}-03-{:02}", 2 + i * 7), "isPublished": true});
        assert_eq!(
            server
                .call(&ta, Method::POST, "/api/lunch-week", Some(week(2020)))
                .await
                .0,
            200
        );
        assert_eq!(
            server
                .call(&tb, Method::POST, "/api/lunch-week", Some(week(2021)))
                .await
                .0,
            200
        );
    }
    let mut requests = Vec::new();
    for i in 0..400 {
        let (token, year) = if i % 2 == 0 {
            (ta.clone(), "2020")
        } else {
            (tb.clone(), "2021")
        };
        let server = &server;
        requests.push(async move {
            let (status, body) = server
                .call(&token, Method::GET, "/api/lunch-week", None)
                .await;
            assert_eq!(status, 200);
            let weeks = body.as_array().unwrap();
            assert_eq!(weeks.len(), 5);
            for week in weeks {
                assert!(
                    week["weekOf"].as_str().unwrap().starts_with(year),
                    "{i}: leaked row {week}"
                );
            }
        });
    }
    // 32 at a time, interleaved.
    use futures_util::StreamExt;
    futures_util::stream::iter(requests)
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    server.stop().await;
}

#[tokio::test]
async fn authentication_rejections() {
    let server = TestServer::start("").await;
    let school = server.scratch.db("auth");
    let suspended = server.scratch.db("susp");
    server.add_schools(&[&school, &suspended]).await;
    connect(&server.scratch.catalog())
        .await
        .execute(
            "update schools set status = 'suspended' where school_database = $1",
            &[&suspended],
        )
        .await
        .unwrap();
    server.running().refresh().await.unwrap();

    let valid = token_for(&school);
    assert_eq!(server.weeks_status(&valid).await, 200);
    let hs = hs256(&claims(&school));
    assert_eq!(server.weeks_status(&hs).await, 200, "HS256 for development");

    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims(&school);
        f(&mut c);
        token_for_claims(&c)
    };
    fn token_for_claims(c: &Value) -> String {
        rs256("key-a", "rsa_a.pem", c)
    }
    // alg none, and HS256 signed with the RSA public key as the HMAC secret.
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims(&school).to_string().as_bytes())
    );
    let public_pem = std::fs::read(fixture("rsa_a.pub.pem")).unwrap();
    let confused = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims(&school),
        &jsonwebtoken::EncodingKey::from_secret(&public_pem),
    )
    .unwrap();
    let oversized = with(&|c| c["padding"] = json!("x".repeat(9000)));
    let unauthorized: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("wrong scheme", Some(format!("Basic {valid}"))),
        ("garbage", Some("Bearer not.a.token".into())),
        ("alg none", Some(format!("Bearer {none}"))),
        (
            "HS256 with the RSA public key",
            Some(format!("Bearer {confused}")),
        ),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                with(&|c| c["exp"] = json!(now() - 3600))
            )),
        ),
        (
            "not yet valid",
            Some(format!(
                "Bearer {}",
                with(&|c| c["nbf"] = json!(now() + 3600))
            )),
        ),
        (
            "wrong issuer",
            Some(format!(
                "Bearer {}",
                with(&|c| c["iss"] = json!("https://evil.example/"))
            )),
        ),
        (
            "missing issuer",
            Some(format!(
                "Bearer {}",
                with(&|c| {
                    c.as_object_mut().unwrap().remove("iss");
                })
            )),
        ),
        (
            "wrong audience",
            Some(format!(
                "Bearer {}",
                with(&|c| c["aud"] = json!("https://other/api"))
            )),
        ),
        (
            "missing audience",
            Some(format!(
                "Bearer {}",
                with(&|c| {
                    c.as_object_mut().unwrap().remove("aud");
                })
            )),
        ),
        (
            "numeric audience",
            Some(format!("Bearer {}", with(&|c| c["aud"] = json!(5)))),
        ),
        (
            "unknown kid",
            Some(format!(
                "Bearer {}",
                rs256("key-b", "rsa_b.pem", &claims(&school))
            )),
        ),
        ("oversized", Some(format!("Bearer {oversized}"))),
    ];
    for (case, header) in unauthorized {
        let headers: Vec<(&str, &str)> = header
            .iter()
            .map(|h| ("authorization", h.as_str()))
            .collect();
        let (status, response_headers, body) = server
            .request(Method::GET, "/api/lunch-week", &headers, None)
            .await;
        assert_eq!(status, 401, "{case}");
        assert_eq!(response_headers["www-authenticate"], "Bearer", "{case}");
        let body = parse(&body);
        assert_eq!(body["message"], "Unauthorized", "{case}");
        assert!(
            !body.to_string().to_lowercase().contains("jwt"),
            "{case}: library text leaked: {body}"
        );
    }
    let forbidden = [
        (
            "school not in the catalog",
            with(&|c| c[CLAIM] = json!("no_such_school")),
        ),
        (
            "suspended school",
            with(&|c| c[CLAIM] = json!(suspended.clone())),
        ),
        (
            "no school claim",
            with(&|c| {
                c.as_object_mut().unwrap().remove(CLAIM);
            }),
        ),
        (
            "postgres is not a school",
            with(&|c| c[CLAIM] = json!("postgres")),
        ),
    ];
    for (case, token) in forbidden {
        let (status, body) = server
            .call(&token, Method::GET, "/api/lunch-week", None)
            .await;
        assert_eq!(status, 403, "{case}: {body}");
    }
    server.stop().await;
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn the_public_route_resolves_slugs_through_the_catalog_only() {
    let server = TestServer::start("").await;
    let school = server.scratch.db("pub");
    server.add_schools(&[&school]).await;
    let token = token_for(&school);
    let (_, published) = server
        .call(
            &token,
            Method::POST,
            "/api/lunch-week",
            Some(json!({"weekOf": "2020-01-06", "isPublished": true})),
        )
        .await;
    server
        .call(
            &token,
            Method::POST,
            "/api/lunch-week",
            Some(json!({"weekOf": "2020-01-13", "isPublished": false})),
        )
        .await;
    let id = published["lunchWeekId"].as_i64().unwrap();
    server
        .call(
            &token,
            Method::POST,
            &format!("/api/lunch-week/{id}/lunch-day"),
            Some(json!({"day": "2020-01-06", "menuDetails": "Pizza"})),
        )
        .await;
    let slug = school.replace('_', "-");
    let get = |path: String| {
        let server = &server;
        async move {
            let (status, _, body) = server.request(Method::GET, &path, &[], None).await;
            (status, parse(&body))
        }
    };
    let (status, body) = get(format!("/api/lunch-week-public/{slug}/2020-01-06")).await;
    assert_eq!(status, 200);
    assert_eq!(body["lunchDays"][0]["menuDetails"], "Pizza");
    assert_eq!(body["isPublished"], true);
    let (status, body) = get(format!("/api/lunch-week-public/{slug}/2020-01-13")).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (
            404,
            Some("No menu has been published for the week of 2020-01-13")
        )
    );
    let catalog_slug = server.scratch.catalog().replace('_', "-");
    let not_schools = [
        "unknown-school".to_string(),
        "postgres".into(),
        "template1".into(),
        catalog_slug,
        school.clone(), // the database name itself is not the slug
        "..".into(),
        "%2F".into(),
        format!("{slug}%2F.."),
        "a".repeat(300),
        slug.to_uppercase(),
    ];
    for bad in not_schools {
        let (status, body) = get(format!("/api/lunch-week-public/{bad}/2020-01-06")).await;
        assert_eq!(
            (status, body["message"].as_str()),
            (404, Some("School not found")),
            "{bad}"
        );
    }
    let (status, _) = get(format!("/api/lunch-week-public/{slug}/../../lunch-week")).await;
    assert_eq!(status, 404);
    let (status, _) = get(format!("/api/lunch-week-public/{slug}/2020-13-01")).await;
    assert_eq!(status, 400);
    server.stop().await;
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx() {
    let server = TestServer::start("[server]\nmax_body_bytes = 1024\n").await;
    let school = server.scratch.db("bad");
    server.add_schools(&[&school]).await;
    let token = token_for(&school);
    let auth = format!("Bearer {token}");
    let cases: Vec<(Method, &str, Option<String>, u16, &str)> = vec![
        (Method::GET, "/api/lunch-week/abc", None, 400, "invalid_id"),
        (
            Method::GET,
            "/api/lunch-week/99999999999",
            None,
            400,
            "invalid_id",
        ),
        (Method::GET, "/api/lunch-week/-1", None, 400, "invalid_id"),
        (
            Method::GET,
            "/api/lunch-week/1/lunch-day/x",
            None,
            405,
            "method_not_allowed",
        ),
        (
            Method::PUT,
            "/api/lunch-week/1/lunch-day/x",
            Some("{}".into()),
            400,
            "invalid_id",
        ),
        (
            Method::POST,
            "/api/lunch-week",
            Some("{not json".into()),
            400,
            "malformed_json",
        ),
        (
            Method::POST,
            "/api/lunch-week",
            Some(r#"{"weekOf":"2020-02-30","isPublished":true}"#.into()),
            400,
            "invalid_field",
        ),
        (
            Method::POST,
            "/api/lunch-week",
            Some(r#"{"weekOf":"2020-01-06","isPublished":"yes"}"#.into()),
            400,
            "invalid_field",
        ),
        (
            Method::POST,
            "/api/lunch-week",
            Some(r#"{"isPublished":true}"#.into()),
            400,
            "missing_field",
        ),
        (
            Method::POST,
            "/api/lunch-week",
            Some("[]".into()),
            400,
            "body_not_object",
        ),
        (
            Method::POST,
            "/api/lunch-week/1/lunch-day",
            Some(format!(
                r#"{{"day":"2020-01-06","menuDetails":"{}"}}"#,
                "x".repeat(1001)
            )),
            413,
            "payload_too_large",
        ),
        (
            Method::POST,
            "/api/lunch-week",
            Some(format!(
                r#"{{"weekOf":"2020-01-06","isPublished":true,"pad":"{}"}}"#,
                "x".repeat(2000)
            )),
            413,
            "payload_too_large",
        ),
        (
            Method::PATCH,
            "/api/lunch-week",
            None,
            405,
            "method_not_allowed",
        ),
        (Method::GET, "/api/nope", None, 404, "not_found"),
    ];
    for (method, path, body, status, code) in cases {
        let (got, headers, bytes) = server
            .request(
                method.clone(),
                path,
                &[("authorization", &auth)],
                body.as_deref(),
            )
            .await;
        let json = parse(&bytes);
        assert_eq!(
            (got, json["code"].as_str()),
            (status, Some(code)),
            "{method} {path}: {json}"
        );
        assert!(json["message"].is_string() && json["requestId"].is_string());
        if status == 405 {
            assert!(headers.contains_key("allow"), "{method} {path}");
        }
    }
    // menuDetails over 1000 characters within the body limit.
    let server2 = TestServer::start("").await;
    let school2 = server2.scratch.db("long");
    server2.add_schools(&[&school2]).await;
    let t2 = token_for(&school2);
    let (_, week) = server2
        .call(
            &t2,
            Method::POST,
            "/api/lunch-week",
            Some(json!({"weekOf": "2020-01-06", "isPublished": true})),
        )
        .await;
    let path = format!("/api/lunch-week/{}/lunch-day", week["lunchWeekId"]);
    let (status, body) = server2
        .call(
            &t2,
            Method::POST,
            &path,
            Some(json!({"day": "2020-01-06", "menuDetails": "x".repeat(1001)})),
        )
        .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (
            400,
            Some("Field menuDetails must be at most 1000 characters")
        )
    );
    let (status, _) = server2
        .call(
            &t2,
            Method::POST,
            &path,
            Some(json!({"day": "2020-01-06", "menuDetails": "é".repeat(1000)})),
        )
        .await;
    assert_eq!(status, 200, "1000 characters are fine even as 2000 bytes");
    server2.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn an_unreachable_school_database_is_a_fast_503_for_that_school_only() {
    let server = TestServer::start("").await; // acquire_timeout is 1s in test servers
    let up = server.scratch.db("up");
    let down = server.scratch.db("down");
    server.add_schools(&[&up, &down]).await;
    // The down school's database refuses connections from now on.
    let admin = connect("postgres").await;
    admin
        .batch_execute(&format!("alter database {down} allow_connections false"))
        .await
        .unwrap();
    admin
        .execute(
            "select pg_terminate_backend(pid) from pg_stat_activity where datname = $1",
            &[&down],
        )
        .await
        .unwrap();
    let (tu, td) = (token_for(&up), token_for(&down));
    let started = Instant::now();
    let auth = format!("Bearer {td}");
    let (status, headers, body) = server
        .request(
            Method::GET,
            "/api/lunch-week",
            &[("authorization", &auth)],
            None,
        )
        .await;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    assert!(headers.contains_key("retry-after"));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered within acquire_timeout"
    );
    // The client learns what failed, not how: no driver text, no database name.
    let text = String::from_utf8_lossy(&body).into_owned();
    let body = parse(&body);
    assert_eq!(body["code"], "database_unavailable", "{body}");
    assert_eq!(
        body["message"], "The school's database is unavailable; try again shortly",
        "{body}"
    );
    assert!(!text.contains(&down) && !text.contains("te_"), "{text}");
    assert_eq!(server.weeks_status(&tu).await, 200);
    server.stop().await;
}

/// A JWKS endpoint served by the test, whose key set the test can change.
struct JwksEndpoint {
    url: String,
    body: std::sync::Arc<std::sync::Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksEndpoint {
    async fn start(body: String) -> Self {
        use hyper_util::rt::TokioIo;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let body = std::sync::Arc::new(std::sync::Mutex::new(body));
        let served = body.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let served = served.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_| {
                        let text = served.lock().unwrap().clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from(text)),
                            ))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { url, body, task }
    }
}

impl Drop for JwksEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn rs256_through_a_jwks_url_with_key_rotation() {
    let jwks = JwksEndpoint::start(std::fs::read_to_string(fixture("jwks_a.json")).unwrap()).await;
    let extra = format!(
        "[auth]\njwks_url = \"{}\"\njwks_refetch_cooldown = \"0s\"\n",
        jwks.url
    );
    let server = TestServer::start(&extra).await; // ready only once the key set is fetched
    let school = server.scratch.db("jwks");
    server.add_schools(&[&school]).await;
    assert_eq!(server.weeks_status(&token_for(&school)).await, 200);
    let rotated = rs256("key-b", "rsa_b.pem", &claims(&school));
    assert_eq!(
        server.weeks_status(&rotated).await,
        401,
        "key-b not published yet"
    );
    // The identity provider publishes the next key beside the current one.
    *jwks.body.lock().unwrap() = std::fs::read_to_string(fixture("jwks_ab.json")).unwrap();
    assert_eq!(
        server.weeks_status(&rotated).await,
        200,
        "unknown kid refetches the set"
    );
    assert_eq!(server.weeks_status(&token_for(&school)).await, 200);
    server.stop().await;
}

#[tokio::test]
async fn http2_with_prior_knowledge_is_served() {
    use http_body_util::BodyExt;
    let server = TestServer::start("").await;
    let school = server.scratch.db("h2");
    server.add_schools(&[&school]).await;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let request = http::Request::builder()
        .uri(format!("{}/api/lunch-week", server.base))
        .header("authorization", format!("Bearer {}", token_for(&school)))
        .body(http_body_util::Full::default())
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"[]");
    server.stop().await;
}

#[tokio::test]
async fn a_row_the_api_cannot_decode_is_a_500_internal_error_without_details() {
    let server = TestServer::start("").await;
    let school = server.scratch.db("altered");
    server.add_schools(&[&school]).await;
    let token = token_for(&school);
    // A column changes type (one the statements still prepare against) before the
    // server's first connection to the school: the handlers decode every column with
    // try_get, so the row is an error, never a panic.
    let database = connect(&school).await;
    database
        .batch_execute(
            "insert into lunch_week (week_of, is_published) values ('2021-03-01', true);
             alter table lunch_week alter column week_of type text using week_of::text",
        )
        .await
        .unwrap();
    let admin = connect("postgres").await;
    let opened: i64 = admin
        .query_one(
            "select count(*) from pg_stat_activity where datname = $1 and application_name = 'tenant-edge'",
            &[&school],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(opened, 0, "the server has no connection to the school yet");
    let auth = format!("Bearer {token}");
    let (status, headers, body) = server
        .request(
            Method::GET,
            "/api/lunch-week",
            &[("authorization", &auth)],
            None,
        )
        .await;
    let text = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 500, "{text}");
    assert!(!headers.contains_key("retry-after"), "a 500 is not retried");
    let body = parse(&body);
    assert_eq!(body["code"], "internal_error", "{body}");
    assert_eq!(body["message"], "Internal server error", "{body}");
    for detail in [school.as_str(), "week_of", "date", "text", "lunch_week"] {
        assert!(!text.contains(detail), "{detail} leaks: {text}");
    }
    // The server keeps serving: the public health check and other routes still answer.
    assert_eq!(
        server.request(Method::GET, "/healthz", &[], None).await.0,
        200
    );
    server.stop().await;
}
