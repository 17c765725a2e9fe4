//! The tenant-edge binary: everything lives in the library (see `tenant_edge::cli`).

fn main() -> std::process::ExitCode {
    tenant_edge::cli::main()
}
