//! `tenant-edge migrate`, `tenants` and configuration errors, through the real binary.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

/// What `migrate` printed for one school: the text after its name.
fn outcome(out: &str, database: &str) -> String {
    out.lines()
        .find_map(|line| {
            let rest = line.strip_prefix(database)?;
            rest.starts_with("  ").then(|| rest.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no line for {database} in:\n{out}"))
}

async fn history(database: &str) -> Vec<(i32, String, String)> {
    let client = connect(database).await;
    client
        .query(
            "select version, checksum, applied_at::text from tenant_edge_migrations order by version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test]
async fn fresh_catalog_and_three_schools_then_up_to_date() {
    let scratch = Scratch::new();
    let config = scratch.write_config("");
    let first = scratch.run(&config, &["migrate"]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(scratch.databases().await, vec![scratch.catalog()]);

    let schools: Vec<String> = ["a", "b", "c"].iter().map(|s| scratch.db(s)).collect();
    let rows: Vec<(&str, &str)> = schools.iter().map(|d| ("School", d.as_str())).collect();
    scratch.insert_schools(&rows).await;

    let second = scratch.run(&config, &["migrate"]);
    assert!(second.status.success(), "{}", stderr(&second));
    let out = stdout(&second);
    for school in &schools {
        assert!(
            outcome(&out, school).starts_with("applied 1 (now at version 1)"),
            "{out}"
        );
        assert_eq!(
            tables(school).await,
            ["lunch_day", "lunch_week", "tenant_edge_migrations"]
        );
    }
    let mut expected = schools.clone();
    expected.push(scratch.catalog());
    expected.sort();
    assert_eq!(scratch.databases().await, expected);
    assert!(tables(&scratch.catalog())
        .await
        .contains(&"schools".to_string()));

    // Every school is now active at version 1, with a derived slug.
    let catalog = connect(&scratch.catalog()).await;
    let rows = catalog
        .query(
            "select status, db_version, slug from schools order by school_id",
            &[],
        )
        .await
        .unwrap();
    for (row, school) in rows.iter().zip(&schools) {
        assert_eq!(row.get::<_, String>(0), "active");
        assert_eq!(row.get::<_, i32>(1), 1);
        assert_eq!(row.get::<_, String>(2), school.replace('_', "-"));
    }

    let before: Vec<_> = futures_join(&schools).await;
    let third = scratch.run(&config, &["migrate"]);
    assert!(third.status.success(), "{}", stderr(&third));
    let out = stdout(&third);
    for school in &schools {
        assert!(
            outcome(&out, school).starts_with("up to date (version 1)"),
            "{out}"
        );
    }
    assert_eq!(
        futures_join(&schools).await,
        before,
        "a second run changes nothing"
    );
}

async fn futures_join(schools: &[String]) -> Vec<Vec<(i32, String, String)>> {
    let mut all = Vec::new();
    for school in schools {
        all.push(history(school).await);
    }
    all
}

#[tokio::test]
async fn four_processes_migrate_ten_new_schools_at_once() {
    let scratch = Scratch::new();
    let config = scratch.write_config("[tenants]\nprovision_concurrency = 2\n");
    let init = scratch.run(&config, &["migrate"]);
    assert!(init.status.success(), "{}", stderr(&init));
    let schools: Vec<String> = (0..10).map(|i| scratch.db(&format!("s{i}"))).collect();
    let rows: Vec<(&str, &str)> = schools.iter().map(|d| ("School", d.as_str())).collect();
    scratch.insert_schools(&rows).await;

    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(BIN)
                .arg("--config")
                .arg(&config)
                .arg("migrate")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut applied_total = 0;
    for child in children {
        let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "{}{}",
            stdout(&output),
            stderr(&output)
        );
        applied_total += stdout(&output).matches("applied 1").count();
    }
    assert_eq!(
        applied_total, 10,
        "each school's migration was applied by exactly one process"
    );
    for school in &schools {
        assert_eq!(history(school).await.len(), 1, "{school}: one history row");
        assert_eq!(
            tables(school).await,
            ["lunch_day", "lunch_week", "tenant_edge_migrations"]
        );
    }
    assert_eq!(scratch.databases().await.len(), 11);
}

#[tokio::test]
async fn invalid_database_names_are_reported_and_skipped() {
    let scratch = Scratch::new();
    let config = scratch.write_config("");
    assert!(scratch.run(&config, &["migrate"]).status.success());
    let good = scratch.db("good");
    // 64 bytes, starting with this test's prefix, so a truncated creation would be visible.
    let long = format!(
        "{}{}",
        scratch.prefix,
        "x".repeat(64 - scratch.prefix.len())
    );
    assert_eq!(long.len(), 64);
    let bad_names = ["Bad-Name", long.as_str(), "x\"; drop"];
    let mut rows = vec![("Good", good.as_str())];
    rows.extend(bad_names.iter().map(|n| ("Bad", *n)));
    scratch.insert_schools(&rows).await;

    let output = scratch.run(&config, &["migrate"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let out = stdout(&output);
    assert!(outcome(&out, &good).starts_with("applied 1"), "{out}");
    for name in bad_names {
        let line = outcome(&out, name);
        assert!(line.starts_with("failed: skipped: database name"), "{line}");
    }
    assert_eq!(
        scratch.databases().await,
        vec![scratch.catalog(), good.clone()],
        "no database with a truncated or rewritten name exists"
    );
    // The failure is recorded for the operator.
    let catalog = connect(&scratch.catalog()).await;
    let errors: Vec<Option<String>> = catalog
        .query(
            "select last_error from schools where school_database <> $1",
            &[&good],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(errors
        .iter()
        .all(|e| e.as_deref().is_some_and(|e| e.contains("database name"))));
}

#[tokio::test]
async fn a_changed_applied_migration_is_refused_by_name() {
    let scratch = Scratch::new();
    let config = scratch.write_config("");
    assert!(scratch.run(&config, &["migrate"]).status.success());
    let school = scratch.db("changed");
    scratch.insert_schools(&[("Changed", &school)]).await;
    assert!(scratch.run(&config, &["migrate"]).status.success());
    // Simulate the file having changed after it was applied.
    connect(&school)
        .await
        .execute(
            "update tenant_edge_migrations set checksum = 'different' where version = 1",
            &[],
        )
        .await
        .unwrap();
    let output = scratch.run(&config, &["migrate"]);
    assert_eq!(output.status.code(), Some(1));
    let out = stdout(&output);
    assert!(
        outcome(&out, &school)
            .starts_with("failed: app_sql/0001_lunch.sql has changed since it was applied"),
        "{out}"
    );
}

#[tokio::test]
async fn a_migrator_killed_midway_leaves_nothing_half_applied() {
    let scratch = Scratch::new();
    let config = scratch.write_config("");
    assert!(scratch.run(&config, &["migrate"]).status.success());
    let school = scratch.db("killed");
    // Prepare the school's database with an empty history table, and hold a SHARE lock
    // on it: the migration's DDL runs, then its history insert waits on our lock.
    connect("postgres")
        .await
        .batch_execute(&format!("create database {school} template template0"))
        .await
        .unwrap();
    let mut blocker = connect(&school).await;
    blocker
        .batch_execute(
            "create table tenant_edge_migrations (version integer primary key, name text not null,
             checksum text not null, applied_at timestamptz not null default now())",
        )
        .await
        .unwrap();
    let blocker_pid: i32 = blocker
        .query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let lock = blocker.transaction().await.unwrap();
    lock.batch_execute("lock table tenant_edge_migrations in share mode")
        .await
        .unwrap();
    scratch.insert_schools(&[("Killed", &school)]).await;

    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .arg("migrate")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let observer = connect("postgres").await;
    wait_for("the migrator to wait on the history insert", Duration::from_secs(20), || {
        let observer = &observer;
        let school = school.clone();
        async move {
            let waiting: i64 = observer
                .query_one(
                    "select count(*) from pg_stat_activity where datname = $1 and wait_event_type = 'Lock' and query like 'insert into tenant_edge_migrations%'",
                    &[&school],
                )
                .await
                .unwrap()
                .get(0);
            (waiting == 1).then_some(())
        }
    })
    .await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    lock.rollback().await.unwrap();

    // The killed session's transaction never committed: wait until its backend is gone.
    wait_for(
        "the killed migrator's session to end",
        Duration::from_secs(20),
        || {
            let observer = &observer;
            let school = school.clone();
            async move {
                let others: i64 = observer
                    .query_one(
                        "select count(*) from pg_stat_activity where datname = $1 and pid <> $2",
                        &[&school, &blocker_pid],
                    )
                    .await
                    .unwrap()
                    .get(0);
                (others == 0).then_some(())
            }
        },
    )
    .await;
    assert_eq!(
        tables(&school).await,
        ["tenant_edge_migrations"],
        "no half-applied migration"
    );
    assert!(history(&school).await.is_empty());
    drop(blocker);

    let output = scratch.run(&config, &["migrate"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(outcome(&stdout(&output), &school).starts_with("applied 1"));
    assert_eq!(
        tables(&school).await,
        ["lunch_day", "lunch_week", "tenant_edge_migrations"]
    );
}

#[tokio::test]
async fn configuration_errors_exit_2_naming_file_key_and_problem() {
    let scratch = Scratch::new();
    let cases = [
        (
            "[server]\nlisten = \"127.0.0.1:1\"\nlistne = \"x\"\n",
            "proxy.toml:3: key `server.listne`: unknown field `listne`",
        ),
        (
            "[tenants]\nacquire_timeout = \"2 seconds\"\n",
            "key `tenants.acquire_timeout`: invalid duration \"2 seconds\"",
        ),
    ];
    for (extra, expected) in cases {
        let config = scratch.dir.join("proxy.toml");
        std::fs::write(&config, extra).unwrap();
        for command in [&["check-config"][..], &["migrate"], &["serve"]] {
            let output = scratch.run(&config, command);
            assert_eq!(
                output.status.code(),
                Some(2),
                "{command:?} {}",
                stderr(&output)
            );
            assert!(stderr(&output).contains(expected), "{}", stderr(&output));
        }
    }
    let missing = scratch.dir.join("missing.toml");
    let output = scratch.run(&missing, &["check-config"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("missing.toml: cannot read the configuration file"));

    // TENANT_EDGE_CONFIG names the file too.
    let output = Command::new(BIN)
        .arg("check-config")
        .env("TENANT_EDGE_CONFIG", &missing)
        .current_dir(&scratch.dir)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("missing.toml"));
}

#[tokio::test]
async fn unreachable_postgres_is_a_clear_message() {
    let scratch = Scratch::new();
    let config = scratch.dir.join("proxy.toml");
    std::fs::write(
        &config,
        "[catalog]\nurl = \"postgres://postgres@127.0.0.1:1/catalog\"\n",
    )
    .unwrap();
    let output = scratch.run(&config, &["migrate"]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("cannot reach the catalog") && err.contains("127.0.0.1:1"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[tokio::test]
async fn tenants_add_list_suspend_resume_remove() {
    let scratch = Scratch::new();
    let config = scratch.write_config("");
    let name = format!(
        "{} Pinewood Elementary",
        scratch.prefix.trim_end_matches('_')
    );
    let database = format!("{}pinewood_elementary", scratch.prefix);
    let output = scratch.run(&config, &["tenants", "add", "--name", &name]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains(&format!("{database}: active (version 1)")));
    assert!(tables(&database).await.contains(&"lunch_week".to_string()));

    let duplicate = scratch.run(&config, &["tenants", "add", "--name", &name]);
    assert_eq!(duplicate.status.code(), Some(1));
    assert!(
        stderr(&duplicate).contains("already exists"),
        "{}",
        stderr(&duplicate)
    );

    let bad = scratch.run(
        &config,
        &["tenants", "add", "--name", "X", "--database", "Bad-Name"],
    );
    assert_eq!(bad.status.code(), Some(2));

    let list = stdout(&scratch.run(&config, &["tenants", "list"]));
    let line = list.lines().find(|l| l.contains(&database)).unwrap();
    assert!(
        line.contains("active") && line.contains(&database.replace('_', "-")),
        "{line}"
    );

    assert!(scratch
        .run(&config, &["tenants", "suspend", &database])
        .status
        .success());
    let list = stdout(&scratch.run(&config, &["tenants", "list"]));
    assert!(
        list.lines()
            .any(|l| l.contains(&database) && l.contains("suspended")),
        "{list}"
    );
    assert!(scratch
        .run(&config, &["tenants", "resume", &database])
        .status
        .success());

    let missing = scratch.run(&config, &["tenants", "suspend", "no_such_school"]);
    assert_eq!(missing.status.code(), Some(1));

    let removed = scratch.run(&config, &["tenants", "remove", &database]);
    assert!(removed.status.success());
    assert!(
        scratch.databases().await.contains(&database),
        "kept without --drop-database"
    );

    let other = scratch.db("other");
    assert!(scratch
        .run(
            &config,
            &["tenants", "add", "--name", "Other", "--database", &other]
        )
        .status
        .success());
    let dropped = scratch.run(&config, &["tenants", "remove", &other, "--drop-database"]);
    assert!(dropped.status.success(), "{}", stderr(&dropped));
    assert!(!scratch.databases().await.contains(&other));
}
