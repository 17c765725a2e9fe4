//! End-to-end tests: the real binary or the real server, real PostgreSQL, real HTTP.
//! One test binary (faster to build); each test owns its databases (see `support`).

mod api;
mod control;
mod edge;
mod identity;
mod menu_cache;
mod migrate;
mod pipelining;
mod process;
mod resilience;
mod robustness;
mod server;
mod support;
