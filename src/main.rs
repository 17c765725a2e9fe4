//! The tenant-edge binary: everything lives in the library (see `tenant_edge::cli`).

// mimalloc instead of glibc malloc: on the week list glibc's malloc was 13% of our CPU
// (52 rows outlive its per-thread cache); with mimalloc tenant-edge spent 15-17% less
// CPU per request. Built with `no_thp`: otherwise mimalloc asks for transparent huge
// pages and the peak RSS rose from ~15 to 42 MiB. Measurements: BENCHMARKS.md, session 4.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tenant_edge::cli::main()
}
