//! What the process tells its operators: Prometheus [`metrics`] and the [`logging`] setup.

pub mod logging;
pub mod metrics;
