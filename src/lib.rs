//! tenant-edge: an edge proxy that serves the school-lunch API from each school's own
//! PostgreSQL database. See ARCHITECTURE.md for the code map and the invariants.

pub mod auth;
pub mod config;
pub mod pg;
