//! The tenant-edge binary: everything lives in the library (see `tenant_edge::cli`).

// mimalloc instead of glibc malloc: the week list's 52 rows outlive glibc's per-thread
// cache, which made malloc a large share of the CPU per request. Built with `no_thp`, so
// mimalloc does not ask for transparent huge pages, which would nearly triple the peak
// RSS. The measurements are in BENCHMARKS.md, Findings.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tenant_edge::cli::main()
}
