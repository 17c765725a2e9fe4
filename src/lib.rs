//! tenant-edge: an edge proxy that serves the school-lunch API from each school's own
//! PostgreSQL database. See ARCHITECTURE.md for the code map and the invariants.
//!
//! Data path (per request): `http::server` -> `http::service` (router, `auth`,
//! `catalog::snapshot`, `pools`, `api::handlers`) -> `http::error` for every failure.
//! Control path (background): `control` (refresh, LISTEN, SIGHUP, provisioning via
//! `provision` and `migrate`), `admin`, and the `cli` commands.

pub mod admin;
pub mod api;
pub mod app;
pub mod auth;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod control;
pub mod demo;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod migrate;
pub mod pg;
pub mod pools;
pub mod provision;
pub mod serve;
