//! Embeds `catalog_sql/` and `app_sql/` into the binary, so it runs from any directory with
//! no SQL files beside it. Each file `NNNN_name.sql` becomes one migration, version NNNN.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let mut out = String::new();
    for (constant, dir) in [("CATALOG", "catalog_sql"), ("APP", "app_sql")] {
        println!("cargo:rerun-if-changed={dir}");
        let mut files: Vec<String> = std::fs::read_dir(Path::new(&manifest).join(dir))
            .unwrap_or_else(|err| panic!("cannot read {dir}/: {err}"))
            .map(|entry| {
                entry
                    .expect("readable directory entry")
                    .file_name()
                    .into_string()
                    .expect("UTF-8 file name")
            })
            .filter(|name| name.ends_with(".sql"))
            .collect();
        files.sort();
        writeln!(out, "pub const {constant}: &[EmbeddedMigration] = &[").unwrap();
        for name in files {
            let (digits, rest) = name
                .split_once('_')
                .unwrap_or_else(|| panic!("{dir}/{name}: expected NNNN_name.sql"));
            let version: i32 = digits
                .parse()
                .unwrap_or_else(|_| panic!("{dir}/{name}: expected NNNN_name.sql"));
            let path = format!("{manifest}/{dir}/{name}");
            println!("cargo:rerun-if-changed={path}");
            writeln!(
                out,
                "    EmbeddedMigration {{ version: {version}, name: {:?}, file: {:?}, sql: include_str!({path:?}) }},",
                rest.trim_end_matches(".sql"),
                format!("{dir}/{name}"),
            )
            .unwrap();
        }
        writeln!(out, "];").unwrap();
    }
    let dest =
        Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("embedded_sql.rs");
    std::fs::write(dest, out).expect("write embedded_sql.rs");
}
