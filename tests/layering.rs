//! The direction of dependencies between the crate's top-level modules.
//!
//! Each module may use only the modules listed before it in [`LAYERS`]: pure types at the
//! bottom, the binary's commands at the top. A lower module that needs something from
//! above takes it as a parameter or a trait it defines (the pool prepares the statements
//! the API hands it; the snapshot takes a counter factory rather than the metrics). This
//! test reads every `crate::` path under `src/` and fails on any that points upward, and
//! on any top-level module missing from the list.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The top-level modules, lowest first.
const LAYERS: &[&str] = &[
    "domain",    // dates, slugs, database names, statuses: pure
    "pg",        // PostgreSQL plumbing: targets, quoting, connect with a timeout
    "config",    // proxy.toml: parse, then validate
    "pool",      // per-school connections, the budget, pipelining lanes
    "lunch",     // the school-lunch API: routes, models, SQL, handlers
    "tenancy",   // catalog store, snapshot, provisioning, migrations
    "auth",      // JWT and JWKS
    "telemetry", // metrics and logging
    "state",     // the ArcSwaps shared by both paths, and the control handle
    "edge",      // the accept loop, the request service, the one error map
    "admin",     // the admin listener's API
    "control",   // the control loop: refresh, reload, provisioning
    "serve",     // process assembly and shutdown order
    "cli",       // the commands
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`None` for lib.rs and main.rs).
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

/// Every top-level module a file names through `crate::`, including inside
/// `use crate::{a, b::c}` groups.
fn referenced_modules(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        // `tenant_edge::crate::` cannot occur; skip `$crate::` of macros.
        let preceded_by_dollar = at > 0 && rest.as_bytes()[at - 1] == b'$';
        if let Some(group) = after.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name = ident(item.trim());
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        } else if !preceded_by_dollar {
            let name = ident(after);
            if !name.is_empty() {
                found.insert(name);
            }
        }
        rest = after;
    }
    found
}

#[test]
fn modules_depend_only_on_modules_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let rank = |name: &str| LAYERS.iter().position(|layer| *layer == name);
    let mut problems = Vec::new();
    for file in &files {
        let Some(module) = top_module(&src, file) else {
            continue;
        };
        let Some(own_rank) = rank(&module) else {
            problems.push(format!(
                "{}: top-level module `{module}` is not in LAYERS",
                file.display()
            ));
            continue;
        };
        let text = fs::read_to_string(file).expect("read source");
        for target in referenced_modules(&text) {
            if target == module {
                continue;
            }
            match rank(&target) {
                Some(target_rank) if target_rank < own_rank => {}
                Some(_) => problems.push(format!(
                    "{}: `{module}` uses `crate::{target}`, which is not below it",
                    file.display()
                )),
                None => problems.push(format!(
                    "{}: uses `crate::{target}`, not a layer in LAYERS",
                    file.display()
                )),
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn the_reader_finds_plain_and_grouped_paths() {
    let text = "use crate::pool::Budget;\nuse crate::{config, domain::date::Date};\nlet x = crate::edge::server::serve;";
    let found: Vec<String> = referenced_modules(text).into_iter().collect();
    assert_eq!(found, ["config", "domain", "edge", "pool"]);
}
