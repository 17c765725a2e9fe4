//! tenant-edge: an edge proxy that serves the school-lunch API from each school's own
//! PostgreSQL database. See ARCHITECTURE.md for the code map and the invariants.

pub mod api;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod http;
pub mod metrics;
pub mod migrate;
pub mod pg;
pub mod provision;
