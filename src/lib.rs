//! tenant-edge: an edge proxy that serves the school-lunch API from each school's own
//! PostgreSQL database. See ARCHITECTURE.md for the code map and the invariants.
//!
//! Dependencies between the top-level modules point one way, from the commands down to
//! pure types: domain <- pg <- config <- pool <- lunch <- tenancy <- auth <- telemetry <-
//! state <- edge <- admin <- control <- serve <- cli (`tests/layering.rs` checks it).
//!
//! Data path (per request): `edge::server` -> `edge::service` (`lunch::router`, `auth`,
//! `tenancy::snapshot`, `pool`, `lunch::handlers`) -> `edge::error` for every failure.
//! Control path (background): `control` (refresh, LISTEN, SIGHUP, provisioning through
//! `tenancy`), `admin`, and the `cli` commands.

pub mod admin;
pub mod auth;
pub mod cli;
pub mod config;
pub mod control;
pub mod domain;
pub mod edge;
pub mod lunch;
pub mod pg;
pub mod pool;
pub mod serve;
pub mod state;
pub mod telemetry;
pub mod tenancy;
