//! The tenant-edge binary: everything lives in the library (see `tenant_edge::cli`).

// mimalloc instead of glibc malloc: see the allocator note in BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tenant_edge::cli::main()
}
